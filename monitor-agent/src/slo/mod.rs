//! `monitor-agent slo FILE`: an SLO file in, Prometheus recording rules and multi-window,
//! multi-burn-rate alerts out. Part of the shipped binary so that an operator with only the
//! binary (or the image) can make the rules; it loads no probe, needs no privilege and exits.
//!
//! The SLIs count the agent's own families (`series::families`) at the agent's own histogram
//! bounds (`monitor_common::hist`), so a rule cannot name a series or a bucket the agent does
//! not export. The schema and the rules are in `rules`, the bounds in `bounds`.
mod bounds;
mod rules;

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

pub use rules::{Generated, generate};

/// The subcommand's arguments (`settings::cli` puts them under `slo`).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The SLO file (YAML): a list `slos`, each with a name, an optional service, an
    /// objective in percent, a window (default 30d) and an SLI (kind and selector). See
    /// deploy/slo/example.yaml.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Rule file to write (replaced whole: written beside it, then renamed, so Prometheus
    /// never reads half a file); stdout when absent.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Why no rules were written, and so the exit status.
#[derive(Debug)]
pub enum Error {
    /// The SLO file is unreadable or wrong: bad input, like a bad flag.
    Input(anyhow::Error),
    /// The rules could not be written.
    Output(anyhow::Error),
}

/// Reads the SLO file and writes its rules; then notes (snapped thresholds) go to `notes`.
pub fn run(args: &Args, notes: &mut dyn FnMut(&str)) -> Result<(), Error> {
    let input = &args.file;
    let text = fs::read_to_string(input)
        .with_context(|| format!("cannot read SLO file {}", input.display()))
        .map_err(Error::Input)?;
    let generated = generate(&text, &input.display().to_string())
        .with_context(|| format!("SLO file {}", input.display()))
        .map_err(Error::Input)?;
    match &args.output {
        Some(path) => write_replacing(path, &generated.rules)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(Error::Output)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(generated.rules.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write the rules to stdout")
                .map_err(Error::Output)?
        }
    }
    // About rules that exist: a failure is the one line the operator reads.
    for note in &generated.notes {
        notes(note);
    }
    Ok(())
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`.
fn write_replacing(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path.file_name().context("not a file name")?;
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let written = fs::write(&temporary, text).and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    Ok(written?)
}

#[cfg(test)]
mod tests;
