//! Readers of the probes' ring buffers (`PROCESS_EVENTS`, `TCP_EVENTS`): records decoded,
//! counted, and a malformed one skipped, never fatal.
use aya::maps::{MapData, RingBuf};
use log::warn;

use crate::probes::decode::DecodeError;

pub struct EventRing<E> {
    name: &'static str,
    ring: RingBuf<MapData>,
    decode: fn(&[u8]) -> Result<E, DecodeError>,
    read: u64,
    malformed: u64,
}

impl<E> EventRing<E> {
    pub fn take(
        ebpf: &mut aya::Ebpf,
        name: &'static str,
        decode: fn(&[u8]) -> Result<E, DecodeError>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let map = ebpf
            .take_map(name)
            .with_context(|| format!("map {name} missing"))?;
        let ring =
            RingBuf::try_from(map).with_context(|| format!("map {name} is not a ring buffer"))?;
        Ok(Self {
            name,
            ring,
            decode,
            read: 0,
            malformed: 0,
        })
    }

    /// Consumes everything the kernel has submitted so far.
    pub fn drain(&mut self, mut on_event: impl FnMut(E)) {
        while let Some(record) = self.ring.next() {
            self.read += 1;
            match (self.decode)(&record) {
                Ok(event) => on_event(event),
                Err(err) => {
                    self.malformed += 1;
                    warn!("skipping a malformed {} record: {err}", self.name);
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
