//! Why the kernel refused a program, said in one line. A verifier log runs to hundreds of
//! lines (the instructions it walked, then its verdict, then statistics); the log line an
//! operator reads at 3 a.m. needs only the verdict. The whole log goes to debug level.
use aya::programs::ProgramError;

/// One refusal: `summary` for the one-line warning, `detail` for debug level.
#[derive(Debug)]
pub struct Refusal {
    pub summary: String,
    pub detail: String,
}

/// Trailing verifier lines that are statistics, not the reason (older kernels print the
/// time and stack depth after the verdict, newer ones before it).
const STATISTICS: [&str; 4] = [
    "processed ",
    "verification time",
    "stack depth",
    "-- END PROG LOAD LOG --",
];

impl Refusal {
    pub fn plain(what: &str) -> Self {
        Self {
            summary: what.to_owned(),
            detail: what.to_owned(),
        }
    }

    pub fn of_load(err: &ProgramError) -> Self {
        match err {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => Self::of_verifier(io_error, verifier_log.to_string()),
            other => Self::plain(&format!("loading failed: {}", chain(other))),
        }
    }

    fn of_verifier(io_error: &std::io::Error, log: String) -> Self {
        let summary = match verdict(&log) {
            Some(line) => format!("the verifier refused it ({io_error}): {line}"),
            None => format!("the kernel refused to load it ({io_error})"),
        };
        Self {
            summary,
            detail: log,
        }
    }

    pub fn of_attach(err: &ProgramError) -> Self {
        let mut summary = format!("attach failed: {}", chain(err));
        // The two ways a raw tracepoint attach fails across kernels, named for the reader.
        match raw_os_error(err) {
            Some(libc::ENOENT) => summary.push_str(" (no such tracepoint in this kernel)"),
            Some(libc::EINVAL) => summary
                .push_str(" (the program reads more tracepoint arguments than this kernel passes)"),
            _ => {}
        }
        Self::plain(&summary)
    }
}

/// The verifier's reason: the last line of its log that is not a statistic.
pub fn verdict(log: &str) -> Option<&str> {
    log.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .rev()
        .find(|line| !STATISTICS.iter().any(|prefix| line.starts_with(prefix)))
}

fn chain(err: &ProgramError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn raw_os_error(err: &ProgramError) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start and end of the 5.10 (Debian bullseye) verifier log of `mon_sock_send`,
    /// which calls `bpf_get_current_task_btf` (helper 158, new in 5.11): the map warning at
    /// the top is not why it was refused.
    const UNKNOWN_HELPER: &str = "\
trace type programs with run-time allocated hash maps are unsafe. Switch to preallocated hash maps.
arg#0 type is not a struct
Unrecognized arg#0 type PTR
132: (7b) *(u64 *)(r10 -208) = r1
; fun()
133: (85) call unknown#158
invalid func unknown#158
verification time 5402 usec
stack depth 208+0
processed 197 insns (limit 1000000) max_states_per_insn 1 total_states 14 peak_states 14 mark_read 10
";

    #[test]
    fn the_verdict_is_the_last_line_that_is_not_a_statistic() {
        assert_eq!(verdict(UNKNOWN_HELPER), Some("invalid func unknown#158"));
        let with_stats = "\
R1 invalid mem access 'inv'
processed 12 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1
verification time 25 usec
stack depth 0

";
        assert_eq!(verdict(with_stats), Some("R1 invalid mem access 'inv'"));
    }

    #[test]
    fn an_empty_log_has_no_verdict() {
        assert_eq!(verdict(""), None);
        assert_eq!(verdict("processed 0 insns\n\n"), None);
    }

    #[test]
    fn a_refused_load_is_one_line_and_keeps_the_whole_log_for_debug() {
        let io_error = std::io::Error::from_raw_os_error(libc::EINVAL);
        let refusal = Refusal::of_verifier(&io_error, UNKNOWN_HELPER.to_owned());
        assert!(!refusal.summary.contains('\n'), "{}", refusal.summary);
        assert!(
            refusal.summary.ends_with(": invalid func unknown#158"),
            "{}",
            refusal.summary
        );
        assert_eq!(refusal.detail, UNKNOWN_HELPER);
    }
}
