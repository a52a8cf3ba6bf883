//! monitor-agent: eBPF probes in, Prometheus metrics out. See docs/architecture.md.
pub mod app;
pub mod export;
pub mod identity;
pub mod logging;
pub mod pipeline;
pub mod privileges;
pub mod probes;
pub mod process;
pub mod series;
pub mod settings;
pub mod signals;
