//! The one logging setup: the agent's own logs and the probes' (`aya-log`) go through `log`.
//! Three formats (`--log.format`): `text` for people, `logfmt` and `json` for log pipelines
//! (one record per line: a multi-line message, such as a verifier log at debug level, is
//! escaped rather than split).
use std::io::Write as _;

pub use log::LevelFilter;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-04T21:50:46.122Z WARN  monitor_agent::probes: message`.
    #[default]
    Text,
    /// `ts=… level=warn target=monitor_agent::probes msg="message"`, as Prometheus logs.
    Logfmt,
    /// `{"ts":"…","level":"warn","target":"monitor_agent::probes","msg":"message"}`.
    Json,
}

pub fn init(level: LevelFilter, format: Format) {
    env_logger::Builder::new()
        .filter_level(level)
        // RUST_LOG still narrows or widens per module, e.g. `monitor_agent::aggregate=debug`.
        .parse_env("RUST_LOG")
        .format(move |buf, record| {
            let ts = buf.timestamp_millis().to_string();
            let message = record.args().to_string();
            let line = render(format, &ts, record.level(), record.target(), &message);
            writeln!(buf, "{line}")
        })
        .init();
}

/// One log record in `format`, without its line end.
pub fn render(format: Format, ts: &str, level: log::Level, target: &str, msg: &str) -> String {
    match format {
        Format::Text => format!("{ts} {level:<5} {target}: {msg}"),
        Format::Logfmt => {
            let level = level.as_str().to_ascii_lowercase();
            format!(
                "ts={ts} level={level} target={} msg={}",
                logfmt_value(target),
                logfmt_value(msg)
            )
        }
        Format::Json => serde_json::json!({
            "ts": ts,
            "level": level.as_str().to_ascii_lowercase(),
            "target": target,
            "msg": msg,
        })
        .to_string(),
    }
}

/// A logfmt value: bare when it can be, else quoted with `\\`, `"` and control characters
/// escaped, so that one record stays one line.
fn logfmt_value(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=');
    if bare {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => quoted.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use log::Level;

    use super::*;

    const TS: &str = "2026-12-04T21:50:46.122Z";

    #[test]
    fn text_is_the_format_people_read() {
        assert_eq!(
            render(
                Format::Text,
                TS,
                Level::Warn,
                "monitor_agent::probes",
                "probe x refused"
            ),
            "2026-12-04T21:50:46.122Z WARN  monitor_agent::probes: probe x refused"
        );
    }

    #[test]
    fn logfmt_quotes_and_escapes_so_a_record_is_one_line() {
        assert_eq!(
            render(Format::Logfmt, TS, Level::Info, "monitor_agent::app", "bye"),
            "ts=2026-12-04T21:50:46.122Z level=info target=monitor_agent::app msg=bye"
        );
        let line = render(
            Format::Logfmt,
            TS,
            Level::Debug,
            "monitor_agent::probes",
            "the kernel said:\n0: (bf) r6 = r1\n\"quoted\" a=b \\",
        );
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.ends_with(r#"msg="the kernel said:\n0: (bf) r6 = r1\n\"quoted\" a=b \\""#),
            "{line}"
        );
    }

    #[test]
    fn json_is_one_object_per_line_that_parses_back() {
        let message = "line one\nline \"two\"";
        let line = render(
            Format::Json,
            TS,
            Level::Error,
            "monitor_agent::server",
            message,
        );
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["ts"], TS);
        assert_eq!(value["level"], "error");
        assert_eq!(value["target"], "monitor_agent::server");
        assert_eq!(value["msg"], message);
    }
}
