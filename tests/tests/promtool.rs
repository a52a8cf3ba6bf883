//! A live scrape, including a process with a hostile name, passes `promtool check metrics`.
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};

use tests::{Agent, eventually, run_as};

#[test]
fn live_scrape_passes_promtool_check_metrics() {
    let agent = Agent::start(&[]);
    // Quotes, a backslash and a newline in the comm must be escaped, not break the format.
    let hostile = format!("q\"b\\n\nl{}", std::process::id() % 10_000);
    run_as(
        &hostile,
        env!("CARGO_BIN_EXE_gt-workload").as_ref(),
        &["1", "1", "0", "0"].map(String::from),
    );
    // Invalid UTF-8: exported with U+FFFD in place of each bad byte.
    let mut invalid = b"bad\xff\xfe".to_vec();
    invalid.extend_from_slice((std::process::id() % 100_000).to_string().as_bytes());
    let invalid = std::ffi::OsString::from_vec(invalid);
    run_as(
        &invalid,
        env!("CARGO_BIN_EXE_gt-workload").as_ref(),
        &["1", "1", "0", "0"].map(String::from),
    );
    let replaced = String::from_utf8_lossy(invalid.as_bytes()).into_owned();
    let scrape = eventually(
        std::time::Duration::from_secs(10),
        "the hostile comms' series",
        || {
            let scrape = agent.scrape();
            scrape
                .matching(
                    "monitor_syscall_errors_total",
                    &[("comm", hostile.as_str())],
                )
                .next()?;
            scrape
                .matching(
                    "monitor_syscall_errors_total",
                    &[("comm", replaced.as_str())],
                )
                .next()?;
            Some(scrape)
        },
    );

    if let Err(findings) = tests::promtool_check(&scrape.text) {
        panic!("promtool: {findings}");
    }
}
