//! Rust source as the few tokens the import check reads: identifiers, `::` and punctuation.
//! Comments are dropped and literals kept only as placeholders, so a path in a doc comment
//! or a string is never taken for an import.
use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    /// `r#name`: spelled like a keyword, never one.
    RawIdent(String),
    PathSep,
    Punct(char),
    /// A literal, a lifetime or a macro metavariable: what it says is never a path, but it
    /// stays a token so that what comes before a path is judged right.
    Other,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
}

/// Fails on an unterminated comment or literal rather than skipping to the end of the file:
/// a misread quote would otherwise hide every import after it without a word.
pub fn tokenize(source: &str) -> Result<Vec<Token>> {
    let mut lexer = Lexer {
        chars: source.chars().collect(),
        at: 0,
        line: 1,
    };
    let mut tokens = Vec::new();
    while let Some(c) = lexer.peek(0) {
        let line = lexer.line;
        let tok = match c {
            c if c.is_whitespace() => {
                lexer.bump();
                continue;
            }
            '/' if lexer.peek(1) == Some('/') => {
                while lexer.peek(0).is_some_and(|c| c != '\n') {
                    lexer.bump();
                }
                continue;
            }
            '/' if lexer.peek(1) == Some('*') => {
                lexer.block_comment(line)?;
                continue;
            }
            '"' => {
                lexer.bump();
                lexer.quoted(line)?;
                Tok::Other
            }
            '\'' => {
                lexer.quote_or_lifetime(line)?;
                Tok::Other
            }
            '$' => {
                lexer.bump();
                if lexer.peek(0).is_some_and(is_ident_start) {
                    // `$crate` names the crate the macro is defined in, like `crate`.
                    match lexer.word().as_str() {
                        "crate" => Tok::Ident("crate".into()),
                        _ => Tok::Other,
                    }
                } else {
                    Tok::Punct('$')
                }
            }
            ':' if lexer.peek(1) == Some(':') => {
                lexer.bump();
                lexer.bump();
                Tok::PathSep
            }
            c if c.is_ascii_digit() => {
                lexer.word();
                Tok::Other
            }
            c if is_ident_start(c) => lexer.ident_or_prefixed_literal(line)?,
            c => {
                lexer.bump();
                Tok::Punct(c)
            }
        };
        tokens.push(Token { tok, line });
    }
    Ok(tokens)
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: usize,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn word(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek(0).filter(|c| is_ident_continue(*c)) {
            word.push(c);
            self.bump();
        }
        word
    }

    fn block_comment(&mut self, line: usize) -> Result<()> {
        // Block comments nest: `/* a /* b */ c */` is one comment.
        let mut depth = 0;
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some('/'), Some('*')) => {
                    self.bump();
                    self.bump();
                    depth += 1;
                }
                (Some('*'), Some('/')) => {
                    self.bump();
                    self.bump();
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => {
                    self.bump();
                }
                (None, _) => bail!("line {line}: unterminated block comment"),
            }
        }
    }

    /// The rest of a string after its opening quote.
    fn quoted(&mut self, line: usize) -> Result<()> {
        loop {
            match self.bump() {
                Some('\\') => {
                    self.bump();
                }
                Some('"') => return Ok(()),
                Some(_) => {}
                None => bail!("line {line}: unterminated string"),
            }
        }
    }

    /// A raw string from its first `#` or quote: `#"…"#` ends at a quote and as many `#`.
    fn raw_string(&mut self, line: usize) -> Result<()> {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            self.bump();
            hashes += 1;
        }
        if self.bump() != Some('"') {
            bail!("line {line}: malformed raw string");
        }
        loop {
            match self.bump() {
                Some('"') if (0..hashes).all(|ahead| self.peek(ahead) == Some('#')) => {
                    for _ in 0..hashes {
                        self.bump();
                    }
                    return Ok(());
                }
                Some(_) => {}
                None => bail!("line {line}: unterminated raw string"),
            }
        }
    }

    /// From a `'`: a character literal (`'x'`, `'\n'`, `'\u{1F600}'`, `'"'`) or a lifetime
    /// or label (`'a`, `'static`), which has no closing quote.
    fn quote_or_lifetime(&mut self, line: usize) -> Result<()> {
        self.bump();
        match (self.peek(0), self.peek(1)) {
            (Some('\\'), _) => {
                self.bump();
                self.bump();
                loop {
                    match self.bump() {
                        Some('\'') => return Ok(()),
                        Some('\n') | None => bail!("line {line}: unterminated character literal"),
                        Some(_) => {}
                    }
                }
            }
            (Some(_), Some('\'')) => {
                self.bump();
                self.bump();
                Ok(())
            }
            (Some(c), _) if is_ident_start(c) => {
                self.word();
                Ok(())
            }
            _ => bail!("line {line}: stray quote"),
        }
    }

    /// An identifier, or a literal whose prefix looks like one: `r#ident`, `r"…"`, `r#"…"#`,
    /// `br"…"`, `cr#"…"#`, `b"…"`, `c"…"`, `b'x'`.
    fn ident_or_prefixed_literal(&mut self, line: usize) -> Result<Tok> {
        let (c0, c1, c2) = (self.peek(0), self.peek(1), self.peek(2));
        match (c0, c1, c2) {
            (Some('r'), Some('#'), Some(c)) if is_ident_start(c) => {
                self.bump();
                self.bump();
                return Ok(Tok::RawIdent(self.word()));
            }
            (Some('r'), Some('"' | '#'), _) => {
                self.bump();
                self.raw_string(line)?;
                return Ok(Tok::Other);
            }
            (Some('b' | 'c'), Some('r'), Some('"' | '#')) => {
                self.bump();
                self.bump();
                self.raw_string(line)?;
                return Ok(Tok::Other);
            }
            (Some('b' | 'c'), Some('"'), _) => {
                self.bump();
                self.bump();
                self.quoted(line)?;
                return Ok(Tok::Other);
            }
            (Some('b'), Some('\''), _) => {
                self.bump();
                self.quote_or_lifetime(line)?;
                return Ok(Tok::Other);
            }
            _ => {}
        }
        Ok(Tok::Ident(self.word()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(source: &str) -> Vec<String> {
        tokenize(source)
            .unwrap()
            .into_iter()
            .map(|token| match token.tok {
                Tok::Ident(word) => word,
                Tok::RawIdent(word) => format!("r#{word}"),
                Tok::PathSep => "::".into(),
                Tok::Punct(c) => c.to_string(),
                Tok::Other => "_lit".into(),
            })
            .collect()
    }

    #[test]
    fn comments_and_literals_hide_their_contents() {
        let source = r###"
            a // crate::x
            /* crate::x /* nested */ crate::x */ b
            "crate::x \" crate::x" r#"crate::x " still"# c
            b"crate::x" br##"crate::x"## c"x" cr"x"
            '"' '\'' '\\' b'\'' '\u{1F600}'
        "###;
        assert_eq!(
            words(source),
            [
                "a", "b", "_lit", "_lit", "c", "_lit", "_lit", "_lit", "_lit", "_lit", "_lit",
                "_lit", "_lit", "_lit"
            ]
        );
    }

    #[test]
    fn lifetimes_are_not_character_literals() {
        assert_eq!(
            words("fn f<'a>(x: &'a str) -> &'static str { 'outer: loop {} }"),
            [
                "fn", "f", "<", "_lit", ">", "(", "x", ":", "&", "_lit", "str", ")", "-", ">", "&",
                "_lit", "str", "{", "_lit", ":", "loop", "{", "}", "}"
            ]
        );
    }

    #[test]
    fn paths_raw_identifiers_and_metavariables() {
        assert_eq!(
            words("$crate::a::r#type $name::b ::c"),
            [
                "crate", "::", "a", "::", "r#type", "_lit", "::", "b", "::", "c"
            ]
        );
    }

    #[test]
    fn lines_count_newlines_inside_comments_and_strings() {
        let tokens = tokenize("/*\n*/ \"\n\" r#\"\n\"#\nx").unwrap();
        assert_eq!(tokens.last().map(|token| token.line), Some(5));
    }

    #[test]
    fn an_unterminated_literal_is_an_error() {
        let err = tokenize("a\n\"open").unwrap_err();
        assert_eq!(err.to_string(), "line 2: unterminated string");
        assert!(tokenize("/* /* */").is_err());
    }
}
