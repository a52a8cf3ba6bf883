//! Snapshots out: the Prometheus text exposition and the HTTP endpoint that serves it, with
//! the agent's own `process_*` figures read at each scrape.
pub mod otlp;
pub mod process;
pub mod prometheus;
pub mod server;
mod write_timeout;
