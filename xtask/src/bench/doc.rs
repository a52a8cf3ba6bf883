//! `docs/benchmarks.md` as sections between markers, so `--only` can rewrite one section
//! and keep the other's figures (and the command that produced them) as they were.

/// A part of the benchmark, and a section of its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// Per-syscall overhead (getppid loop).
    Syscalls,
    /// Prometheus series per scrape: an idle machine, and after 80 short-lived programs.
    Series,
    /// Connection rate and loopback throughput.
    Network,
    /// redis-benchmark and pgbench.
    Databases,
    /// nginx requests/s under wrk.
    Http,
    /// nginx requests/s under wrk over TLS: the cost of the agent's OpenSSL uprobes.
    Https,
    /// nginx requests/s under h2load over cleartext HTTP/2: the cost of following HTTP/2.
    Http2,
}

impl Suite {
    /// Also the order of the report's sections (`appendix` follows the last one's).
    pub const ALL: [Suite; 7] = [
        Suite::Syscalls,
        Suite::Series,
        Suite::Network,
        Suite::Databases,
        Suite::Http,
        Suite::Https,
        Suite::Http2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Syscalls => "syscalls",
            Suite::Series => "series",
            Suite::Network => "network",
            Suite::Databases => "databases",
            Suite::Http => "http",
            Suite::Https => "https",
            Suite::Http2 => "http2",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Suite::Syscalls => "Syscall overhead",
            Suite::Series => "Series per scrape",
            Suite::Network => "Network overhead",
            Suite::Databases => "Databases (redis-benchmark, pgbench)",
            Suite::Http => "HTTP overhead (nginx and wrk)",
            Suite::Https => "HTTPS overhead (nginx and wrk over TLS)",
            Suite::Http2 => "HTTP/2 overhead (nginx and h2load, cleartext)",
        }
    }
}

const HEADER: &str = "# Benchmarks\n\n\
    Written by `cargo xtask bench` (as root). Each section names the command that produced \
    its figures; `--only syscalls`, `--only series`, `--only network`, `--only databases`, \
    `--only http`, `--only https` or `--only http2` rewrites that section and keeps the \
    others.\n";

fn begin(suite: Suite) -> String {
    format!("<!-- bench:{} -->", suite.name())
}

fn end(suite: Suite) -> String {
    format!("<!-- /bench:{} -->", suite.name())
}

/// The text of a suite's section in a document written by `compose`.
fn section(document: &str, suite: Suite) -> Option<&str> {
    let begin = begin(suite);
    let start = document.find(&begin)? + begin.len();
    let length = document[start..].find(&end(suite))?;
    Some(document[start..start + length].trim())
}

fn placeholder(suite: Suite) -> String {
    format!(
        "## {}\n\nNot measured yet: run `cargo xtask bench --only {}` as root.",
        suite.title(),
        suite.name()
    )
}

/// Hand-written text after the last generated section (figures from other commands, each
/// with its own provenance): kept as it is by every run. The last section the document
/// has, not the last suite: a document written before a suite was added lacks its markers.
fn appendix(document: &str) -> Option<&str> {
    let after = Suite::ALL
        .into_iter()
        .filter_map(|suite| {
            let end = end(suite);
            document.rfind(&end).map(|at| at + end.len())
        })
        .max()?;
    let after = document[after..].trim();
    (!after.is_empty()).then_some(after)
}

/// The whole document: `fresh` sections as given, the others from `previous` when it has
/// them, else a placeholder saying how to fill them in; then `previous`'s appendix.
pub fn compose(fresh: &[(Suite, String)], previous: Option<&str>) -> String {
    let mut out = String::from(HEADER);
    for suite in Suite::ALL {
        let text = match fresh.iter().find(|(s, _)| *s == suite) {
            Some((_, text)) => text.trim().to_owned(),
            None => previous
                .and_then(|doc| section(doc, suite))
                .map_or_else(|| placeholder(suite), str::to_owned),
        };
        out.push_str(&format!("\n{}\n\n{text}\n\n{}\n", begin(suite), end(suite)));
    }
    if let Some(appendix) = previous.and_then(appendix) {
        out.push_str(&format!("\n{appendix}\n"));
    }
    out
}

/// Whether writing only the `measured` sections over `previous` would drop figures: an
/// unmeasured section that `previous` does not hold between markers (a hand-written file,
/// or one from before the markers) becomes a placeholder.
pub fn loses_figures(measured: &[Suite], previous: Option<&str>) -> bool {
    let Some(previous) = previous.filter(|doc| !doc.trim().is_empty()) else {
        return false;
    };
    Suite::ALL
        .into_iter()
        .any(|suite| !measured.contains(&suite) && section(previous, suite).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_written_appendix_survives_every_run() {
        let first = compose(
            &[(Suite::Syscalls, "## Syscall overhead\n\nold".into())],
            None,
        );
        let with_appendix = format!("{first}\n## By hand\n\nmeasured otherwise\n");
        let second = compose(
            &[(Suite::Syscalls, "## Syscall overhead\n\nnew".into())],
            Some(&with_appendix),
        );
        assert!(
            second.ends_with("\n## By hand\n\nmeasured otherwise\n"),
            "{second}"
        );
        assert_eq!(
            section(&second, Suite::Syscalls),
            Some("## Syscall overhead\n\nnew")
        );
        assert_eq!(second.matches("## By hand").count(), 1);
        assert_eq!(appendix(&first), None);
    }

    #[test]
    fn the_appendix_survives_a_suite_added_after_the_document_was_written() {
        let older = "# Benchmarks\n\n<!-- bench:http -->\n\n## HTTP overhead\n\nold\n\n\
                     <!-- /bench:http -->\n\n## By hand\n\nmeasured otherwise\n";
        let fresh = [(Suite::Https, "## HTTPS overhead\n\nnew".into())];
        let doc = compose(&fresh, Some(older));
        assert_eq!(section(&doc, Suite::Http), Some("## HTTP overhead\n\nold"));
        assert_eq!(
            section(&doc, Suite::Https),
            Some("## HTTPS overhead\n\nnew")
        );
        // After the last suite's section, whichever that is now.
        let last = end(*Suite::ALL.last().unwrap());
        assert!(doc.ends_with(&format!("{last}\n\n## By hand\n\nmeasured otherwise\n")));
        assert_eq!(doc.matches("## By hand").count(), 1);
    }

    #[test]
    fn fresh_sections_replace_and_others_are_kept() {
        let first = compose(
            &[
                (
                    Suite::Syscalls,
                    "## Syscall overhead\n\nold syscalls\n".into(),
                ),
                (Suite::Network, "## Network overhead\n\nold network".into()),
            ],
            None,
        );
        assert!(first.starts_with("# Benchmarks\n"));
        assert_eq!(
            section(&first, Suite::Syscalls),
            Some("## Syscall overhead\n\nold syscalls")
        );
        let fresh = [(Suite::Network, "## Network overhead\n\nnew network".into())];
        assert!(!loses_figures(&[Suite::Network], Some(&first)));
        let second = compose(&fresh, Some(&first));
        assert_eq!(
            section(&second, Suite::Syscalls),
            Some("## Syscall overhead\n\nold syscalls")
        );
        assert_eq!(
            section(&second, Suite::Network),
            Some("## Network overhead\n\nnew network")
        );
        // Composing again from its own output changes nothing.
        assert_eq!(compose(&fresh, Some(&second)), second);
        let syscalls_at = second.find("<!-- bench:syscalls -->").unwrap();
        assert!(syscalls_at < second.find("<!-- bench:network -->").unwrap());
    }

    #[test]
    fn a_missing_section_gets_a_placeholder() {
        let fresh = [(Suite::Network, "## Network overhead\n\nfigures".into())];
        let doc = compose(&fresh, Some("# Syscall overhead benchmark\n\nno markers\n"));
        assert!(doc.contains(
            "## Syscall overhead\n\nNot measured yet: run `cargo xtask bench --only syscalls`"
        ));
        assert!(loses_figures(
            &[Suite::Network],
            Some("# Syscall overhead benchmark\n")
        ));
        assert!(!loses_figures(&[Suite::Network], None));
        assert!(!loses_figures(
            &Suite::ALL,
            Some("# Syscall overhead benchmark\n")
        ));
    }
}
