//! monitor-agent: eBPF probes in, Prometheus metrics out.
//!
//! Data flow, one module per step:
//! `probes` (load and attach the kernel programs, read their maps and ring buffer)
//! → `decode` (ring-buffer bytes → typed events)
//! → `process_names` (who a (TGID, generation) is)
//! → `aggregate` (one owner of series state: live + retired values, TTL), with `network`
//!   folding TCP events and byte counts into its tables (peer cap), and `requests` feeding
//!   captured socket payloads to the protocol parsers (`monitor-protocols`, route cap)
//! → `metrics` (every family defined once, built at scrape time)
//! → `server` (`/metrics`, `/healthz`).
//! `app` wires them together; `config` is the command line.
pub mod aggregate;
pub mod app;
pub mod config;
pub mod config_file;
pub mod decode;
pub mod identity;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod names;
pub mod network;
pub mod privileges;
pub mod probes;
pub mod process_names;
pub mod requests;
pub mod server;
pub mod web_config;
