//! Reader of the `PROCESS_EVENTS` ring buffer: exec and exit events, decoded.
use aya::maps::{MapData, RingBuf};
use log::warn;

use crate::decode::{self, ProcessEvent};

pub struct ProcessEvents {
    ring: RingBuf<MapData>,
    read: u64,
    malformed: u64,
}

impl ProcessEvents {
    pub fn take(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let name = monitor_common::map::PROCESS_EVENTS;
        let map = ebpf
            .take_map(name)
            .with_context(|| format!("map {name} missing"))?;
        let ring =
            RingBuf::try_from(map).with_context(|| format!("map {name} is not a ring buffer"))?;
        Ok(Self {
            ring,
            read: 0,
            malformed: 0,
        })
    }

    /// Consumes everything the kernel has submitted so far. A bad record is counted and
    /// logged, never fatal.
    pub fn drain(&mut self, mut on_event: impl FnMut(ProcessEvent)) {
        while let Some(record) = self.ring.next() {
            self.read += 1;
            match decode::process_event(&record) {
                Ok(event) => on_event(event),
                Err(err) => {
                    self.malformed += 1;
                    warn!("skipping a malformed process event: {err}");
                }
            }
        }
    }

    pub fn read(&self) -> u64 {
        self.read
    }

    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// For readiness polling without giving the ring buffer away.
    pub fn fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd as _;
        self.ring.as_fd().try_clone_to_owned()
    }
}
