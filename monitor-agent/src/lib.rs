//! monitor-agent: eBPF probes in, Prometheus metrics out. See docs/architecture.md.
pub mod app;
pub mod export;
pub mod identity;
pub mod logging;
pub mod pipeline;
pub mod privileges;
pub mod probes;
pub mod proc_access;
pub mod proc_stat;
pub mod process;
pub mod series;
pub mod settings;
pub mod signals;
pub mod slo;
