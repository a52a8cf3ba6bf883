//! One room per signal. A signal owns its kernel maps and ring buffers (taken from the loaded
//! object), decodes its kernel keys, keeps its series tables, and publishes its families. The
//! pipeline knows signals only through the `Signal` trait: adding one is its kernel file in
//! `monitor-ebpf`, its wire types in `monitor-common`, its room here, and one line in `all`.
use crate::probes::Loaded;

pub mod block;
pub mod connections;
pub mod db;
pub mod dns;
pub mod fds;
pub mod http;
pub mod listen;
pub mod oom;
pub mod sched;
pub mod signal;
pub mod syscalls;
pub mod tcp;
pub mod throttle;
pub mod tls;

pub use signal::{Context, Settings, Signal};

/// Every signal, in the order their families are published. The one place to register one.
pub fn all(loaded: &mut Loaded, settings: &Settings) -> anyhow::Result<Vec<Box<dyn Signal>>> {
    Ok(vec![
        Box::new(syscalls::Syscalls::take(loaded, settings)?),
        Box::new(tcp::Tcp::take(loaded, settings)?),
        Box::new(listen::Listen::new()),
        Box::new(http::Http::take(loaded, settings)?),
        Box::new(db::Db::take(loaded, settings)?),
        Box::new(dns::Dns::take(loaded, settings)?),
        Box::new(tls::Tls::take(loaded)),
        Box::new(sched::Sched::take(loaded)?),
        Box::new(oom::Oom::take(loaded)?),
        Box::new(block::Block::take(loaded)?),
        Box::new(fds::Fds::new()),
        Box::new(throttle::Throttle::new()),
    ])
}
