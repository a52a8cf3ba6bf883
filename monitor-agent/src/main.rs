use std::process::ExitCode;

use monitor_agent::{
    app, logging,
    settings::{self, LoadError, Subcommand, web::WebConfig},
    slo,
};

/// Every error starts with this, whatever found it (clap, a file's parser, the agent).
const PREFIX: &str = "monitor-agent: error: ";

/// Bad input (flags, environment, config file, web config file): nothing was started.
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    // The command line, the environment, --config.file and --web.config.file, all checked
    // before anything else happens. Exit codes: 2 for bad input, 1 when the run fails
    // (privileges, a taken port, a kernel that refuses every probe, ...), 0 otherwise.
    let config = match settings::load_from(std::env::args_os()) {
        Ok(config) => config,
        Err(LoadError::Usage(err)) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                err.exit();
            }
            // clap's message starts with "error: ", its usage and hint follow.
            let rendered = err.render().to_string();
            eprint!(
                "{PREFIX}{}",
                rendered.strip_prefix("error: ").unwrap_or(&rendered)
            );
            return ExitCode::from(BAD_INPUT);
        }
        Err(LoadError::File(err)) => {
            eprintln!("{PREFIX}{err}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    if let Some(Subcommand::Slo(args)) = &config.command {
        return run_slo(args);
    }
    let web = match &config.web_config_file {
        Some(path) => match WebConfig::load(path) {
            Ok(web) => web,
            Err(err) => {
                eprintln!("{PREFIX}{err:#}");
                return ExitCode::from(BAD_INPUT);
            }
        },
        None => WebConfig::none(),
    };
    logging::init(config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("cannot start the runtime")),
    };
    match runtime.block_on(app::run(config, web)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// `monitor-agent slo`: no logger, no runtime, no probe; the rules on stdout or in a file.
fn run_slo(args: &slo::Args) -> ExitCode {
    let mut note = |note: &str| eprintln!("monitor-agent: note: {note}");
    match slo::run(args, &mut note) {
        Ok(()) => ExitCode::SUCCESS,
        Err(slo::Error::Input(err)) => {
            eprintln!("{PREFIX}{}", one_line(&err));
            ExitCode::from(BAD_INPUT)
        }
        Err(slo::Error::Output(err)) => fail(&err),
    }
}

/// An error chain on one line, even where a parser's message spans several.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line on stderr, whatever the logger's level: this is what the operator must read.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("{PREFIX}{err:#}");
    ExitCode::FAILURE
}
