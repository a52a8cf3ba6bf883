//! TLS coverage: which libraries carry the uprobes and which processes' TLS goes unseen
//! (`probes::tls` scans and attaches; the plaintext itself is framed as HTTP and lands in
//! the `http` room, `url_scheme="https"`).
use monitor_common::Counter;

use super::signal::{Context, SeriesCount, Signal};
use crate::{
    probes::{
        Loaded,
        tls::{SharedStatus, TlsStatus},
    },
    series::{
        families::{Family, family},
        publish::Published,
    },
};

const FAMILIES: &[Family] = &[
    family::TLS_LIBRARIES,
    family::TLS_UNINSTRUMENTED,
    family::TLS_NO_SOCKET,
];

pub struct Tls {
    status: SharedStatus,
}

impl Tls {
    pub fn take(loaded: &Loaded) -> Self {
        Self {
            status: loaded.tls.status.clone(),
        }
    }
}

impl Signal for Tls {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        let status = self.status.lock().expect("TLS status").clone();
        published(&status, ctx.counter(Counter::TlsNoSocket))
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        Vec::new()
    }
}

/// The TLS families; `no_socket` is the kernel's count of calls tied to no socket.
pub fn published(status: &TlsStatus, no_socket: u64) -> Vec<Published> {
    vec![
        Published::single(family::TLS_LIBRARIES, status.libraries as f64),
        Published::plain(
            family::TLS_UNINSTRUMENTED,
            status
                .uninstrumented
                .iter()
                .map(|(&reason, &count)| (vec![reason], count as f64)),
        ),
        Published::single(family::TLS_NO_SOCKET, no_socket as f64),
    ]
}
