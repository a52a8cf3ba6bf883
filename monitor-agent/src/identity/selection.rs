//! Which processes are monitored (`Selection`) and which service a process is counted under
//! (`ServiceOverride`): rules on the facts of a process, written `KEY=PATTERN`. The command
//! line and the config file only spell them; the resolver applies them, without knowing where
//! they were written.
use std::{fmt, str::FromStr};

/// What a selector or a service override looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorKey {
    /// The process name (the kernel's comm: at most 15 bytes).
    Comm,
    /// The executable's full path.
    Exe,
    /// The container's name (its ID when the name is unknown).
    Container,
    /// The pod's Kubernetes namespace.
    Namespace,
}

impl SelectorKey {
    pub const ALL: [SelectorKey; 4] = [
        SelectorKey::Comm,
        SelectorKey::Exe,
        SelectorKey::Container,
        SelectorKey::Namespace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SelectorKey::Comm => "comm",
            SelectorKey::Exe => "exe",
            SelectorKey::Container => "container",
            SelectorKey::Namespace => "namespace",
        }
    }
}

impl FromStr for SelectorKey {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        SelectorKey::ALL
            .into_iter()
            .find(|key| key.as_str() == text)
            .ok_or_else(|| {
                format!("`{text}` is not a selector key: use comm, exe, container or namespace")
            })
    }
}

/// `KEY=PATTERN`: the process's value for KEY matches the glob PATTERN as a whole (`*` any
/// run of characters, `/` included; `?` one character; nothing else is special).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub key: SelectorKey,
    pub pattern: String,
}

impl Selector {
    pub fn matches(&self, value: &str) -> bool {
        glob_matches(self.pattern.as_bytes(), value.as_bytes())
    }

    /// Whether the process's value for this key (`None`: it has none) matches.
    fn matches_fact(&self, facts: &dyn Fn(SelectorKey) -> Option<String>) -> bool {
        facts(self.key).is_some_and(|value| self.matches(&value))
    }
}

impl FromStr for Selector {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (key, pattern) = text.split_once('=').ok_or_else(|| {
            format!(
                "`{text}` is not a selector: expected KEY=PATTERN, KEY one of comm, exe, \
                 container, namespace"
            )
        })?;
        let key: SelectorKey = key.parse()?;
        check_pattern(key, pattern)?;
        Ok(Selector {
            key,
            pattern: pattern.to_owned(),
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key.as_str(), self.pattern)
    }
}

/// A pattern that can match something: not empty, and for `comm` not longer than the
/// kernel's 15 bytes (a longer one would silently match nothing).
pub(crate) fn check_pattern(key: SelectorKey, pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err(format!(
            "the pattern for `{}` is empty (use `*` for any value)",
            key.as_str()
        ));
    }
    let shortest: usize = pattern
        .chars()
        .map(|c| match c {
            '*' => 0,
            '?' => 1,
            c => c.len_utf8(),
        })
        .sum();
    if key == SelectorKey::Comm && shortest > 15 {
        return Err(format!(
            "`comm` values are at most 15 bytes (the kernel cuts process names), so \
             `{pattern}` never matches: use its first 15 bytes"
        ));
    }
    Ok(())
}

/// Whole-string glob match, byte-wise (`?` is one byte: comm and paths are bytes to the
/// kernel). Backtracks to the last `*` only: linear in practice, never exponential.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                last_star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match last_star {
                // Let the last `*` swallow one more byte and retry from there.
                Some((star, from)) => {
                    last_star = Some((star, from + 1));
                    p = star + 1;
                    t = from + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Which processes are monitored: those that match no exclude selector and, if any include
/// selector is given, at least one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    include: Vec<Selector>,
    exclude: Vec<Selector>,
}

impl Selection {
    pub fn new(include: Vec<Selector>, exclude: Vec<Selector>) -> Selection {
        Selection { include, exclude }
    }

    pub fn include(&self) -> &[Selector] {
        &self.include
    }

    pub fn exclude(&self) -> &[Selector] {
        &self.exclude
    }

    /// One line for the start-up log: an active filter is the first thing to check when a
    /// process's series are missing.
    pub fn describe(&self) -> String {
        let list = |selectors: &[Selector]| {
            let items: Vec<String> = selectors.iter().map(Selector::to_string).collect();
            items.join(", ")
        };
        match (self.include.is_empty(), self.exclude.is_empty()) {
            (true, true) => {
                "every process is monitored (no --select.include/--select.exclude)".into()
            }
            (false, true) => format!(
                "only processes matching one of [{}] are monitored",
                list(&self.include)
            ),
            (true, false) => format!(
                "processes matching any of [{}] are not monitored",
                list(&self.exclude)
            ),
            (false, false) => format!(
                "only processes matching one of [{}] and none of [{}] are monitored",
                list(&self.include),
                list(&self.exclude)
            ),
        }
    }

    /// No selector at all: every process is monitored, no fact needs looking up.
    pub fn admits_all(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether a process is monitored, given its facts (`None`: the process has no such value,
    /// which never matches).
    pub fn admits(&self, facts: &dyn Fn(SelectorKey) -> Option<String>) -> bool {
        !self.exclude.iter().any(|s| s.matches_fact(facts))
            && (self.include.is_empty() || self.include.iter().any(|s| s.matches_fact(facts)))
    }
}

/// A service label rule (file: `service.overrides`): when every matcher matches, the process's
/// service is `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOverride {
    pub matchers: Vec<Selector>,
    pub service: String,
}

impl ServiceOverride {
    /// All matchers match (a missing fact never does).
    pub fn matches(&self, facts: &dyn Fn(SelectorKey) -> Option<String>) -> bool {
        self.matchers.iter().all(|s| s.matches_fact(facts))
    }

    /// The service of the first rule that matches.
    pub fn first_match<'a>(
        rules: &'a [ServiceOverride],
        facts: &dyn Fn(SelectorKey) -> Option<String>,
    ) -> Option<&'a str> {
        rules
            .iter()
            .find(|rule| rule.matches(facts))
            .map(|rule| rule.service.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(text: &str) -> Selector {
        text.parse().unwrap()
    }

    fn facts<'a>(
        pairs: &'a [(SelectorKey, &'a str)],
    ) -> impl Fn(SelectorKey) -> Option<String> + 'a {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn globs() {
        for (pattern, value) in [
            ("nginx", "nginx"),
            ("ng*", "nginx"),
            ("*", ""),
            ("*", "anything"),
            ("*x", "nginx"),
            ("n?inx", "nginx"),
            ("*in*", "nginx"),
            ("a*b*c", "aXbYbZc"),
            ("/usr/*/python3*", "/usr/bin/python3.11"),
            ("**", "a"),
            ("kworker/*", "kworker/0:1"),
        ] {
            assert!(
                glob_matches(pattern.as_bytes(), value.as_bytes()),
                "{pattern} !~ {value}"
            );
        }
        for (pattern, value) in [
            ("nginx", "nginx2"),
            ("nginx", "ngin"),
            ("ng*", "xnginx"),
            ("?", ""),
            ("n?inx", "nnginx"),
            ("a*b*c", "aXbYbZ"),
            ("", "a"),
        ] {
            assert!(
                !glob_matches(pattern.as_bytes(), value.as_bytes()),
                "{pattern} =~ {value}"
            );
        }
        // No exponential backtracking on a hostile pattern.
        let text = "a".repeat(10_000);
        assert!(!glob_matches(b"*a*a*a*a*a*a*a*b", text.as_bytes()));
    }

    #[test]
    fn selectors_parse() {
        let parsed = selector("comm=java*");
        assert_eq!(parsed.key, SelectorKey::Comm);
        assert_eq!(parsed.pattern, "java*");
        assert!(parsed.matches("java") && parsed.matches("javac") && !parsed.matches("jav"));
        assert_eq!(selector("exe=/usr/bin/a=b").pattern, "/usr/bin/a=b");
        assert_eq!(selector("namespace=shop").to_string(), "namespace=shop");
        for (bad, expected) in [
            ("nginx", "KEY=PATTERN"),
            ("user=root", "`user` is not a selector key"),
            ("comm=", "empty"),
            ("=x", "is not a selector key"),
            ("comm=0123456789abcdefg", "never matches"),
        ] {
            let error = bad.parse::<Selector>().unwrap_err();
            assert!(error.contains(expected), "{bad}: {error}");
        }
        // 15 bytes is the kernel's limit, and a `*` can match nothing.
        selector("comm=0123456789abcde");
        selector("comm=0123456789abcde*");
        selector("exe=/a/very/long/path/to/some/binary");
    }

    #[test]
    fn selection_semantics() {
        use SelectorKey::*;
        let nginx_in_shop = [(Comm, "nginx"), (Namespace, "shop"), (Container, "web")];
        let sshd = [(Comm, "sshd"), (Exe, "/usr/sbin/sshd")];
        let everything = Selection::default();
        assert!(everything.admits_all());
        assert!(everything.admits(&facts(&nginx_in_shop)));
        assert!(everything.admits(&facts(&[])));

        let excluding = Selection::new(vec![], vec![selector("comm=sshd")]);
        assert!(!excluding.admits(&facts(&sshd)));
        assert!(excluding.admits(&facts(&nginx_in_shop)));
        assert!(
            excluding.admits(&facts(&[])),
            "a missing fact never matches"
        );

        let including = Selection::new(
            vec![selector("comm=nginx"), selector("namespace=shop")],
            vec![],
        );
        assert!(including.admits(&facts(&nginx_in_shop)));
        assert!(including.admits(&facts(&[(Comm, "redis"), (Namespace, "shop")])));
        assert!(!including.admits(&facts(&sshd)));
        assert!(
            !including.admits(&facts(&[])),
            "a missing fact never matches"
        );

        let both = Selection::new(
            vec![selector("namespace=shop")],
            vec![selector("container=debug-*")],
        );
        assert!(both.admits(&facts(&nginx_in_shop)));
        assert!(
            !both.admits(&facts(&[(Namespace, "shop"), (Container, "debug-1")])),
            "an exclude wins over an include"
        );
        assert!(!both.admits(&facts(&[(Container, "web")])));
    }

    #[test]
    fn service_overrides_match_on_all_their_keys() {
        use SelectorKey::*;
        let rules = [
            ServiceOverride {
                matchers: vec![selector("comm=java*"), selector("namespace=shop")],
                service: "checkout".into(),
            },
            ServiceOverride {
                matchers: vec![selector("comm=java*")],
                service: "java".into(),
            },
        ];
        let first = |pairs: &[(SelectorKey, &str)]| {
            ServiceOverride::first_match(&rules, &facts(pairs)).map(str::to_owned)
        };
        assert_eq!(
            first(&[(Comm, "java"), (Namespace, "shop")]).as_deref(),
            Some("checkout")
        );
        assert_eq!(first(&[(Comm, "java")]).as_deref(), Some("java"));
        assert_eq!(first(&[(Comm, "python"), (Namespace, "shop")]), None);
    }
}
