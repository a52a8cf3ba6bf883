//! Readers of the probes' ring buffers: records decoded, counted, and a malformed one skipped,
//! never fatal.
use aya::maps::{MapData, RingBuf};
use log::warn;
use monitor_common::Counter;

use super::{Loaded, decode::DecodeError};

/// A ring buffer as exported (`ringbuf` label), with the kernel counters of its writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSpec {
    pub map: &'static str,
    pub label: &'static str,
    pub produced: Counter,
    pub dropped: Counter,
}

/// A ring buffer's reader side, for the loss-accounting self-metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingRead {
    pub spec: RingSpec,
    pub read: u64,
    pub malformed: u64,
}

pub struct EventRing<E> {
    spec: RingSpec,
    ring: RingBuf<MapData>,
    decode: fn(&[u8]) -> Result<E, DecodeError>,
    read: u64,
    malformed: u64,
}

impl<E> EventRing<E> {
    pub fn take(
        loaded: &mut Loaded,
        spec: RingSpec,
        decode: fn(&[u8]) -> Result<E, DecodeError>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let name = spec.map;
        let map = loaded
            .ebpf
            .take_map(name)
            .with_context(|| format!("map {name} missing"))?;
        let ring =
            RingBuf::try_from(map).with_context(|| format!("map {name} is not a ring buffer"))?;
        Ok(Self {
            spec,
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
                    warn!("skipping a malformed {} record: {err}", self.spec.map);
                }
            }
        }
    }

    pub fn status(&self) -> RingRead {
        RingRead {
            spec: self.spec,
            read: self.read,
            malformed: self.malformed,
        }
    }

    /// For readiness polling without giving the ring buffer away.
    pub fn fd(&self) -> anyhow::Result<std::os::fd::OwnedFd> {
        use anyhow::Context as _;
        use std::os::fd::AsFd as _;
        self.ring
            .as_fd()
            .try_clone_to_owned()
            .with_context(|| format!("duplicating the fd of ring buffer {}", self.spec.map))
    }
}
