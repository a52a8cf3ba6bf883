use std::process::ExitCode;

use monitor_agent::{
    app, logging,
    settings::{self, LoadError},
};

fn main() -> ExitCode {
    // The command line, the environment and --config.file, all checked before anything else
    // happens: usage errors exit 2 (clap's message), a bad config file is one line and exit 1.
    let config = match settings::load_from(std::env::args_os()) {
        Ok(config) => config,
        Err(LoadError::Usage(err)) => err.exit(),
        Err(LoadError::File(err)) => {
            eprintln!("monitor-agent: {err}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("cannot start the runtime")),
    };
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// One line on stderr, whatever the logger's level: this is what the operator must read.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("monitor-agent: error: {err:#}");
    ExitCode::FAILURE
}
