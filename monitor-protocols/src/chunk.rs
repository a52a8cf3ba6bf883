//! What the probes captured of a connection: chunks, which way each went, and which end of
//! the connection the monitored process is. The bottom of the crate: every protocol's
//! exchange names the process's [`Role`], and the protocol contract takes chunks.

/// Which way the bytes of a chunk went, from the monitored process's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The process wrote them (`write`, `send`, …).
    Egress,
    /// The process read them (`read`, `recv`, …).
    Ingress,
}

impl Direction {
    /// The direction as the probes' framing names it (`monitor_framing::direction`), for
    /// the kernel twins.
    pub(crate) fn framing_way(self) -> u8 {
        match self {
            Direction::Egress => monitor_framing::direction::EGRESS,
            Direction::Ingress => monitor_framing::direction::INGRESS,
        }
    }
}

/// Which end of the connection the monitored process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// It reads requests and writes responses.
    Server,
    /// It writes requests and reads responses.
    Client,
}

impl Role {
    /// The direction in which this end sees requests.
    pub fn request_direction(self) -> Direction {
        match self {
            Role::Server => Direction::Ingress,
            Role::Client => Direction::Egress,
        }
    }
}

/// One captured read or write.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    pub direction: Direction,
    /// Bytes the syscall transferred; `data` is a prefix of them.
    pub total_len: u64,
    /// The captured prefix.
    pub data: &'a [u8],
    /// When the syscall happened (ns, any monotonic clock: only differences are used). For
    /// latencies closest to what the process sees, reads are best stamped at their exit and
    /// writes at their entry.
    pub timestamp_ns: u64,
}

impl Chunk<'_> {
    /// Bytes of the syscall that were not captured. A `total_len` shorter than the captured
    /// prefix (which the kernel side should never produce) counts as fully captured.
    pub fn uncaptured(&self) -> u64 {
        self.total_len.saturating_sub(self.data.len() as u64)
    }

    pub fn is_fully_captured(&self) -> bool {
        self.uncaptured() == 0
    }

    /// The bytes moved and those the probes can read, as the kernel twins hand them to the
    /// framing: a total shorter than what was captured counts as fully captured.
    pub(crate) fn framed_sizes(&self) -> (u32, u32) {
        let length = self.total_len.max(self.data.len() as u64);
        (
            u32::try_from(length).unwrap_or(u32::MAX),
            u32::try_from(self.data.len()).unwrap_or(u32::MAX),
        )
    }

    /// Copies up to `len` captured bytes from `offset` to the start of `window`, as the
    /// probes copy a window of a read/write for the framing (the kernel twins' `read`): how
    /// many were there.
    pub(crate) fn copy_window(&self, offset: u32, len: u32, window: &mut [u8]) -> u32 {
        let start = (offset as usize).min(self.data.len());
        let end = (start + len as usize)
            .min(self.data.len())
            .min(start + window.len());
        window[..end - start].copy_from_slice(&self.data[start..end]);
        (end - start) as u32
    }
}
