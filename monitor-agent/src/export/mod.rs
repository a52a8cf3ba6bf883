//! Snapshots out: the Prometheus text exposition and the HTTP endpoint that serves it.
pub mod prometheus;
pub mod server;
