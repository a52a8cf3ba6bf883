use std::process::ExitCode;

use clap::Parser as _;
use monitor_agent::{app, config::Config, logging};

fn main() -> ExitCode {
    // Usage errors exit 2 from here, before anything else happens.
    let config = Config::parse();
    logging::init(config.log_level);
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
