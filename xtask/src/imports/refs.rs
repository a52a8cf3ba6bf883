//! What one file names in its own crate: the paths of its `use` declarations and the paths
//! written inline in its code, made absolute from the crate root.
use std::collections::BTreeSet;

use super::lex::{Tok, Token};

/// A path from the crate root (`crate::a::B` is `["a", "B"]`; the root itself is empty).
pub type Path = Vec<String>;

#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    pub path: Path,
    pub line: usize,
}

/// Every path in `tokens` (the file of module `module`) that leads into the crate:
/// `crate::`, `self::` and `super::` paths, and those starting with a child module of the
/// current module. `modules` are the crate's file modules, to tell those children apart
/// from other crates and from local names.
pub fn references(tokens: &[Token], module: &[String], modules: &BTreeSet<Path>) -> Vec<Reference> {
    let mut walker = Walker {
        tokens,
        at: 0,
        module,
        inline: Vec::new(),
        depth: 0,
        modules,
        found: Vec::new(),
    };
    walker.walk();
    walker.found
}

struct Walker<'a> {
    tokens: &'a [Token],
    at: usize,
    module: &'a [String],
    /// The `mod name { … }` blocks the walk is inside, each with the brace depth of its body:
    /// `super::` in a file's `mod tests` is the file's own module.
    inline: Vec<(String, usize)>,
    depth: usize,
    modules: &'a BTreeSet<Path>,
    found: Vec<Reference>,
}

impl<'a> Walker<'a> {
    fn tok(&self, at: usize) -> Option<&'a Tok> {
        self.tokens.get(at).map(|token| &token.tok)
    }

    fn is_word(&self, at: usize, word: &str) -> bool {
        matches!(self.tok(at), Some(Tok::Ident(found)) if found == word)
    }

    fn walk(&mut self) {
        while let Some(tok) = self.tok(self.at) {
            match tok {
                Tok::Punct('{') => self.depth += 1,
                Tok::Punct('}') => {
                    if self
                        .inline
                        .last()
                        .is_some_and(|(_, depth)| *depth == self.depth)
                    {
                        self.inline.pop();
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                Tok::Ident(word) if word == "mod" => {
                    if let (Some(Tok::Ident(name) | Tok::RawIdent(name)), Some(Tok::Punct('{'))) =
                        (self.tok(self.at + 1), self.tok(self.at + 2))
                    {
                        self.depth += 1;
                        self.inline.push((name.clone(), self.depth));
                        self.at += 3;
                        continue;
                    }
                }
                Tok::Ident(word) if word == "use" => {
                    self.at += 1;
                    self.use_declaration();
                    continue;
                }
                Tok::Ident(_) if self.starts_path() => {
                    self.inline_path();
                    continue;
                }
                _ => {}
            }
            self.at += 1;
        }
    }

    /// The module the walk is in, counting inline `mod` blocks.
    fn here(&self) -> Path {
        let mut here = self.module.to_vec();
        here.extend(self.inline.iter().map(|(name, _)| name.clone()));
        here
    }

    /// `crate::…`, `self::…`, `super::…` or `child::…` as a path from the crate root; `None`
    /// for anything else (another crate, a local name, a type's associated item).
    fn resolve(&self, segments: &[String]) -> Option<Path> {
        let (first, rest) = segments.split_first()?;
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" | "super" => {
                let mut base = self.here();
                let mut rest = if first == "self" { rest } else { segments };
                while let Some((_, after)) = rest.split_first().filter(|(s, _)| *s == "super") {
                    base.pop()?;
                    rest = after;
                }
                base.extend_from_slice(rest);
                Some(base)
            }
            name => {
                // Only a module that has file children can name one bare: an inline module's
                // bare names are its own items or imports, already seen where imported.
                let mut child = self.here();
                child.push(name.to_owned());
                if !self.modules.contains(&child) {
                    return None;
                }
                child.extend_from_slice(rest);
                Some(child)
            }
        }
    }

    /// A path begins here in code: a word followed by `::` that does not itself follow `::`
    /// (then it is a later segment), `.` (`x.method::<T>()`) or `pub(in`, whose path is a
    /// visibility, not a use.
    fn starts_path(&self) -> bool {
        if self.tok(self.at + 1) != Some(&Tok::PathSep) {
            return false;
        }
        let Some(before) = self.at.checked_sub(1) else {
            return true;
        };
        let visibility = before >= 2
            && self.is_word(before, "in")
            && self.tok(before - 1) == Some(&Tok::Punct('('))
            && self.is_word(before - 2, "pub");
        !matches!(self.tok(before), Some(Tok::PathSep | Tok::Punct('.'))) && !visibility
    }

    fn inline_path(&mut self) {
        let line = self.tokens[self.at].line;
        let mut segments = Vec::new();
        if let Some(Tok::Ident(first)) = self.tok(self.at) {
            segments.push(first.clone());
        }
        self.at += 1;
        while let (Some(Tok::PathSep), Some(Tok::Ident(next) | Tok::RawIdent(next))) =
            (self.tok(self.at), self.tok(self.at + 1))
        {
            segments.push(next.clone());
            self.at += 2;
        }
        if let Some(path) = self.resolve(&segments) {
            self.found.push(Reference { path, line });
        }
    }

    fn use_declaration(&mut self) {
        let mut leaves = Vec::new();
        self.use_tree(Vec::new(), &mut leaves);
        for (segments, line) in leaves {
            if let Some(path) = self.resolve(&segments) {
                self.found.push(Reference { path, line });
            }
        }
    }

    /// One use tree (`a::b`, `a::{b, c::*}`, `a as b`, `a::{self}`) after `prefix`: each leaf
    /// path with the line of its last word.
    fn use_tree(&mut self, mut path: Vec<String>, leaves: &mut Vec<(Vec<String>, usize)>) {
        if self.tok(self.at) == Some(&Tok::PathSep) {
            // `::name` is always another crate: a first segment no module can have.
            path.push("::".into());
            self.at += 1;
        }
        while let Some(token) = self.tokens.get(self.at) {
            let line = token.line;
            match &token.tok {
                Tok::Ident(name) | Tok::RawIdent(name) => {
                    path.push(name.clone());
                    self.at += 1;
                    if self.tok(self.at) == Some(&Tok::PathSep) {
                        self.at += 1;
                        continue;
                    }
                    if self.is_word(self.at, "as") {
                        self.at += 2;
                    }
                    if path.len() > 1 && path.last().is_some_and(|last| last == "self") {
                        path.pop();
                    }
                    leaves.push((path, line));
                    return;
                }
                Tok::Punct('*') => {
                    self.at += 1;
                    leaves.push((path, line));
                    return;
                }
                Tok::Punct('{') => {
                    self.at += 1;
                    while let Some(tok) = self.tok(self.at) {
                        match tok {
                            Tok::Punct('}') => {
                                self.at += 1;
                                return;
                            }
                            Tok::Punct(',') => self.at += 1,
                            _ => {
                                let before = self.at;
                                self.use_tree(path.clone(), leaves);
                                // Something no use tree holds (a macro's `$x`): step over it
                                // rather than loop on it.
                                if self.at == before {
                                    self.at += 1;
                                }
                            }
                        }
                    }
                    return;
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imports::lex::tokenize;

    fn path(text: &str) -> Path {
        text.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The references of `source` in module `module`, as `line: a::b` lines.
    fn refs(module: &str, modules: &[&str], source: &str) -> Vec<String> {
        let modules = modules.iter().map(|m| path(m)).collect();
        references(&tokenize(source).unwrap(), &path(module), &modules)
            .into_iter()
            .map(|r| format!("{}: {}", r.line, r.path.join("::")))
            .collect()
    }

    #[test]
    fn use_trees_with_braces_self_renames_and_globs() {
        let source = "use crate::{\n    a::{self, X as Y},\n    b::*,\n    c,\n};\nuse std::fmt;";
        assert_eq!(
            refs("z", &["a", "b", "z"], source),
            ["2: a", "2: a::X", "3: b", "4: c"]
        );
    }

    #[test]
    fn super_and_self_from_files_and_inline_modules() {
        let source = "use super::x::Y;\nuse self::inner::Z;\n\
            mod tests {\n    use super::*;\n    use super::super::W;\n    fn f() { super::super::g(); }\n}\n\
            use super::V;";
        assert_eq!(
            refs("net::tcp", &["net", "net::tcp", "net::x"], source),
            [
                "1: net::x::Y",
                "2: net::tcp::inner::Z",
                "4: net::tcp",
                "5: net::W",
                "6: net::g",
                "8: net::V"
            ]
        );
    }

    #[test]
    fn bare_child_modules_count_other_crates_do_not() {
        let source =
            "pub use tcp::Conn;\nuse std::process;\nfn f() { tcp::open(); process::exit(0); }";
        assert_eq!(
            refs("net", &["net", "net::tcp"], source),
            ["1: net::tcp::Conn", "3: net::tcp::open"]
        );
    }

    #[test]
    fn inline_paths_but_not_later_segments_methods_or_visibility() {
        let source = "pub(in crate::a) fn f() -> crate::b::T {\n    \
            std::crate_like::x(); v.iter::<u8>(); Self::new(); crate::c::d::<u8>(); $crate::e\n}";
        assert_eq!(
            refs("", &["a", "b"], source),
            ["1: b::T", "2: c::d", "2: e"]
        );
    }
}
