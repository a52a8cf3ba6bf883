//! The one logging setup: the agent's own logs and the probes' (`aya-log`) go through `log`.
use std::io::Write as _;

pub use log::LevelFilter;

pub fn init(level: LevelFilter) {
    env_logger::Builder::new()
        .filter_level(level)
        // RUST_LOG still narrows or widens per module, e.g. `monitor_agent::aggregate=debug`.
        .parse_env("RUST_LOG")
        .format(|buf, record| {
            writeln!(
                buf,
                "{} {:<5} {}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )
        })
        .init();
}
