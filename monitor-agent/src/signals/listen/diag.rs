//! The kernel's own view of the listening TCP sockets, through `sock_diag` (netlink, the
//! interface `ss` uses): for each, its port, accept queue now and at most (`sk_ack_backlog`,
//! `sk_max_ack_backlog`), and the connection attempts it dropped (`sk_drops`: the accept
//! queue was full, or the SYN could not be answered). Encoding and parsing are pure; the
//! socket calls are the only `unsafe`.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const IPPROTO_TCP: u8 = 6;
/// The `INET_DIAG_SKMEMINFO` attribute (asked for by bit `1 << (7 - 1)` of `idiag_ext`).
const INET_DIAG_SKMEMINFO: u16 = 7;
/// Index of `SK_MEMINFO_DROPS` in the `INET_DIAG_SKMEMINFO` array of u32.
const SK_MEMINFO_DROPS: usize = 8;
const NLMSG_HEADER: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retrans, a 48-byte `inet_diag_sockid`, then
/// expires, rqueue, wqueue, uid, inode.
const INET_DIAG_MSG: usize = 72;

/// One listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub inode: u32,
    /// Connections waiting to be accepted.
    pub queued: u32,
    /// The queue's limit (the backlog given to `listen()`, capped by `somaxconn`).
    pub max: u32,
    /// Connection attempts dropped since the socket was made, if the kernel said.
    pub drops: Option<u32>,
}

/// The dump request for the listening TCP sockets of `family` (`AF_INET` or `AF_INET6`).
pub fn request(family: u8, sequence: u32) -> Vec<u8> {
    let length = NLMSG_HEADER + 56;
    let mut bytes = Vec::with_capacity(length);
    bytes.extend_from_slice(&(length as u32).to_ne_bytes());
    bytes.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    bytes.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    bytes.extend_from_slice(&sequence.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel's
    // struct inet_diag_req_v2: family, protocol, extensions, pad, states, then the
    // inet_diag_sockid to match (all zero: any).
    bytes.extend_from_slice(&[family, IPPROTO_TCP, 1 << (INET_DIAG_SKMEMINFO - 1), 0]);
    bytes.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    bytes.resize(length, 0);
    bytes
}

/// What one `recv` of the dump held: the sockets, and whether the dump is over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub listeners: Vec<Listener>,
    pub done: bool,
}

/// Parses the netlink messages of one `recv`.
pub fn parse(mut buf: &[u8]) -> io::Result<Batch> {
    let mut batch = Batch::default();
    while buf.len() >= NLMSG_HEADER {
        let length = u32_at(buf, 0) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if length < NLMSG_HEADER || length > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        let payload = &buf[NLMSG_HEADER..length];
        match kind {
            NLMSG_DONE => {
                batch.done = true;
                return Ok(batch);
            }
            NLMSG_ERROR => {
                let errno = payload
                    .get(..4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY if payload.len() >= INET_DIAG_MSG => {
                batch.listeners.push(listener(payload));
            }
            _ => {}
        }
        buf = &buf[align(length).min(buf.len())..];
    }
    Ok(batch)
}

fn listener(msg: &[u8]) -> Listener {
    let mut drops = None;
    let mut attributes = &msg[INET_DIAG_MSG..];
    // struct rtattr: u16 length (header included), u16 type, then the value.
    while attributes.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([attributes[0], attributes[1]]));
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if length < 4 || length > attributes.len() {
            break;
        }
        let value = &attributes[4..length];
        if kind == INET_DIAG_SKMEMINFO && value.len() >= (SK_MEMINFO_DROPS + 1) * 4 {
            drops = Some(u32_at(value, SK_MEMINFO_DROPS * 4));
        }
        attributes = &attributes[align(length).min(attributes.len())..];
    }
    Listener {
        // inet_diag_sockid starts at byte 4 with the source port, big-endian.
        port: u16::from_be_bytes([msg[4], msg[5]]),
        queued: u32_at(msg, 56),
        max: u32_at(msg, 60),
        inode: u32_at(msg, 68),
        drops,
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn align(length: usize) -> usize {
    (length + 3) & !3
}

/// Every listening TCP socket (IPv4 and IPv6) of a network namespace: the agent's own, or
/// the one `netns` (an open `/proc/<pid>/ns/net`) names.
pub fn listeners(netns: Option<&std::fs::File>) -> io::Result<Vec<Listener>> {
    let socket = match netns {
        None => socket()?,
        Some(netns) => socket_in(netns)?,
    };
    dump(&socket)
}

/// A sock_diag socket, in the calling thread's network namespace.
fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the descriptor is owned (and closed) below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A sock_diag socket in another network namespace: made by a thread that joins it and then
/// ends, so no other thread of the agent ever changes namespace. A socket stays in the
/// namespace it was made in. Joining needs CAP_SYS_ADMIN.
fn socket_in(netns: &std::fs::File) -> io::Result<OwnedFd> {
    let fd = netns.as_raw_fd();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) on a descriptor the caller keeps open for the call; it
                // changes only this short-lived thread's namespace.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                socket()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

fn dump(socket: &OwnedFd) -> io::Result<Vec<Listener>> {
    let fd = socket.as_raw_fd();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    for (sequence, family) in [(1, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        let message = request(family, sequence);
        // SAFETY: sends `message.len()` bytes from a live buffer on our own socket; the
        // kernel is the default destination of a netlink socket.
        let sent = unsafe { libc::send(fd, message.as_ptr().cast(), message.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: receives at most `buf.len()` bytes into a live buffer.
            let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got < 0 {
                return Err(io::Error::last_os_error());
            }
            let batch = parse(&buf[..got as usize])?;
            all.extend(batch.listeners);
            if batch.done || got == 0 {
                break;
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SOCK_DIAG_BY_FAMILY message as the kernel sends it.
    fn message(port: u16, queued: u32, max: u32, inode: u32, drops: Option<u32>) -> Vec<u8> {
        let mut msg = vec![libc::AF_INET as u8, TCP_LISTEN as u8, 0, 0];
        msg.extend_from_slice(&port.to_be_bytes());
        msg.resize(56, 0);
        for word in [queued, max, 0, inode] {
            msg.extend_from_slice(&word.to_ne_bytes());
        }
        if let Some(drops) = drops {
            let mut meminfo = vec![0u32; 9];
            meminfo[SK_MEMINFO_DROPS] = drops;
            msg.extend_from_slice(&(4 + 36u16).to_ne_bytes());
            msg.extend_from_slice(&INET_DIAG_SKMEMINFO.to_ne_bytes());
            for word in meminfo {
                msg.extend_from_slice(&word.to_ne_bytes());
            }
        }
        let mut bytes = ((NLMSG_HEADER + msg.len()) as u32).to_ne_bytes().to_vec();
        bytes.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(&msg);
        bytes
    }

    #[test]
    fn the_request_asks_for_listening_tcp_sockets_with_their_memory_counters() {
        let bytes = request(libc::AF_INET6 as u8, 7);
        assert_eq!(bytes.len(), 72);
        assert_eq!(u32_at(&bytes, 0), 72);
        assert_eq!(&bytes[16..20], &[libc::AF_INET6 as u8, 6, 64, 0]);
        assert_eq!(u32_at(&bytes, 20), 1 << 10);
        assert_eq!(u32_at(&bytes, 8), 7);
    }

    #[test]
    fn sockets_and_the_end_of_the_dump_are_parsed() {
        let mut bytes = message(8080, 2, 1, 4242, Some(11));
        bytes.extend(message(443, 0, 4096, 77, None));
        let mut done = vec![0u8; 20];
        done[..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        bytes.extend(&done);
        let batch = parse(&bytes).unwrap();
        assert!(batch.done);
        assert_eq!(
            batch.listeners,
            [
                Listener {
                    port: 8080,
                    inode: 4242,
                    queued: 2,
                    max: 1,
                    drops: Some(11)
                },
                Listener {
                    port: 443,
                    inode: 77,
                    queued: 0,
                    max: 4096,
                    drops: None
                },
            ]
        );
        let mut error = vec![0u8; 20];
        error[..4].copy_from_slice(&20u32.to_ne_bytes());
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse(&error).unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert!(parse(&bytes[..30]).is_err());
    }
}
