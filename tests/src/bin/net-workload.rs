//! Network ground-truth workload: TCP servers, clients and trickles whose outcome is known
//! exactly, each checked here, so a test knows what the agent must report. It exits non-zero
//! when the kernel did something else (a connect that should time out was refused, fewer
//! bytes arrived), so a wrong expectation fails on this side, not as a puzzling metric.
//!
//! usage: net-workload [--netns NAME] serve ADDR [--accept N] [--recv-bytes X] [--peek]
//!                                          [--send-bytes X] [--linger0 | --expect-reset]
//!        net-workload [--netns NAME] connect ADDR[,ADDR…] [--count N] [--parallel]
//!                                          [--user-timeout-ms MS] [--expect ok|refused|timeout]
//!                                          [--send-bytes X] [--recv-bytes X] [--peek]
//!                                          [--linger0 | --expect-reset]
//!        net-workload [--netns NAME] trickle ADDR --ms MS [--chunk BYTES] [--every-ms MS]
//!
//! A server prints `ready <port>` once it listens and `done …` at the end; a trickle prints
//! `ready` once connected and `sent <bytes>` at the end. A connection a server accepted
//! ends, unless told otherwise, when the client closes it (the server reads to EOF), so
//! nothing is left unread and no close sends a reset the test did not ask for.
use std::{
    ffi::CString,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _},
    time::{Duration, Instant},
};

const USAGE: &str = "usage: net-workload [--netns NAME] serve|connect|trickle ADDR [options] \
                     (see the source header)";

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--netns") {
        let name = args.get(1).cloned().unwrap_or_else(|| fail(USAGE));
        enter_netns(&name);
        args.drain(..2);
    }
    let Some((command, rest)) = args.split_first() else {
        fail(USAGE)
    };
    let options = Options::parse(rest);
    match command.as_str() {
        "serve" => serve(&options),
        "connect" => connect(&options),
        "trickle" => trickle(&options),
        _ => fail(USAGE),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Ok,
    Refused,
    Timeout,
}

/// How a connection ends after its reads and writes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// Wait for the peer's FIN (server) or close gracefully (client).
    Graceful,
    /// SO_LINGER {on, 0}, then close: the kernel sends a RST instead of a FIN.
    Abort,
    /// Block in read until the peer's RST arrives: ECONNRESET, not data, not EOF.
    AwaitReset,
}

struct Options {
    addrs: Vec<SocketAddr>,
    accept: u64,
    count: u64,
    parallel: bool,
    user_timeout_ms: Option<u32>,
    expect: Outcome,
    send_bytes: u64,
    recv_bytes: u64,
    peek: bool,
    ending: Ending,
    trickle_ms: u64,
    chunk: usize,
    every_ms: u64,
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let Some((addrs, flags)) = args.split_first() else {
            fail(USAGE)
        };
        let mut options = Options {
            addrs: addrs
                .split(',')
                .map(|a| {
                    a.parse()
                        .unwrap_or_else(|_| fail(&format!("bad address {a}")))
                })
                .collect(),
            accept: 1,
            count: 1,
            parallel: false,
            user_timeout_ms: None,
            expect: Outcome::Ok,
            send_bytes: 0,
            recv_bytes: 0,
            peek: false,
            ending: Ending::Graceful,
            trickle_ms: 0,
            chunk: 1000,
            every_ms: 10,
        };
        let mut flags = flags.iter();
        while let Some(flag) = flags.next() {
            let mut value = || -> &String {
                flags
                    .next()
                    .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
            };
            let number = |v: &String| -> u64 {
                v.parse()
                    .unwrap_or_else(|_| fail(&format!("{flag}: not a number: {v}")))
            };
            match flag.as_str() {
                "--accept" => options.accept = number(value()),
                "--count" => options.count = number(value()),
                "--parallel" => options.parallel = true,
                "--user-timeout-ms" => options.user_timeout_ms = Some(number(value()) as u32),
                "--expect" => {
                    options.expect = match value().as_str() {
                        "ok" => Outcome::Ok,
                        "refused" => Outcome::Refused,
                        "timeout" => Outcome::Timeout,
                        other => fail(&format!("--expect ok|refused|timeout, not {other}")),
                    }
                }
                "--send-bytes" => options.send_bytes = number(value()),
                "--recv-bytes" => options.recv_bytes = number(value()),
                "--peek" => options.peek = true,
                "--linger0" => options.ending = Ending::Abort,
                "--expect-reset" => options.ending = Ending::AwaitReset,
                "--ms" => options.trickle_ms = number(value()),
                "--chunk" => options.chunk = number(value()) as usize,
                "--every-ms" => options.every_ms = number(value()),
                other => fail(&format!("unknown option {other}; {USAGE}")),
            }
        }
        options
    }

    fn single_addr(&self) -> SocketAddr {
        match self.addrs.as_slice() {
            [addr] => *addr,
            _ => fail("exactly one address expected"),
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("net-workload: {message}");
    std::process::exit(1)
}

/// Joins the network namespace `ip netns add NAME` made, before any socket exists: simpler
/// for the caller than `ip netns exec`, and the process keeps the comm it was exec'd with.
/// Threads started afterwards inherit the namespace.
fn enter_netns(name: &str) {
    let path = CString::new(format!("/var/run/netns/{name}")).unwrap();
    // SAFETY: a valid NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        fail(&format!(
            "open /var/run/netns/{name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is an open namespace file.
    let ret = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    let err = std::io::Error::last_os_error();
    // SAFETY: our own fd, not used again.
    unsafe { libc::close(fd) };
    if ret != 0 {
        fail(&format!("setns into {name}: {err}"));
    }
}

fn ready(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").unwrap();
    stdout.flush().unwrap();
}

fn serve(options: &Options) {
    let listener = TcpListener::bind(options.single_addr())
        .unwrap_or_else(|e| fail(&format!("bind {}: {e}", options.single_addr())));
    ready(&format!("ready {}", listener.local_addr().unwrap().port()));
    let (mut received, mut sent) = (0, 0);
    for _ in 0..options.accept {
        let (mut stream, peer) = listener
            .accept()
            .unwrap_or_else(|e| fail(&format!("accept: {e}")));
        received += read_exactly(&mut stream, options.recv_bytes, options.peek);
        sent += write_exactly(&mut stream, options.send_bytes);
        match options.ending {
            Ending::Graceful => received += read_to_eof(&mut stream, peer),
            Ending::Abort => abort(stream),
            Ending::AwaitReset => await_reset(&mut stream),
        }
    }
    println!(
        "done accepted={} received={received} sent={sent}",
        options.accept
    );
}

fn connect(options: &Options) {
    let targets: Vec<SocketAddr> = options
        .addrs
        .iter()
        .flat_map(|&addr| (0..options.count).map(move |_| addr))
        .collect();
    let started = Instant::now();
    let outcomes: Vec<(SocketAddr, Result<Outcome, String>)> = if options.parallel {
        // Parallel, so that C timeouts take one timeout in total, not C of them.
        std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .map(|&addr| scope.spawn(move || (addr, one_connection(addr, options))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    } else {
        targets
            .iter()
            .map(|&addr| (addr, one_connection(addr, options)))
            .collect()
    };
    let elapsed_ms = started.elapsed().as_millis();
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.as_ref() != Ok(&options.expect))
        .map(|(addr, outcome)| format!("{addr}: {outcome:?}"))
        .collect();
    println!(
        "connects={} expected={:?} elapsed_ms={elapsed_ms}",
        outcomes.len(),
        options.expect
    );
    if !wrong.is_empty() {
        fail(&format!(
            "expected every connect to be {:?}: {}",
            options.expect,
            wrong.join("; ")
        ));
    }
}

/// One connect, and for an established one the transfer and the ending asked for.
fn one_connection(addr: SocketAddr, options: &Options) -> Result<Outcome, String> {
    let mut stream = match connect_socket(addr, options.user_timeout_ms) {
        Ok(stream) => stream,
        Err(err) => {
            return match err.raw_os_error() {
                Some(libc::ECONNREFUSED) => Ok(Outcome::Refused),
                Some(libc::ETIMEDOUT) => Ok(Outcome::Timeout),
                _ => Err(format!("connect: {err}")),
            };
        }
    };
    write_exactly(&mut stream, options.send_bytes);
    read_exactly(&mut stream, options.recv_bytes, options.peek);
    match options.ending {
        Ending::Graceful => drop(stream),
        Ending::Abort => abort(stream),
        Ending::AwaitReset => await_reset(&mut stream),
    }
    Ok(Outcome::Ok)
}

/// A blocking connect through libc: TCP_USER_TIMEOUT has to be set between socket() and
/// connect() to bound the SYN retries, which std's `TcpStream::connect` leaves no room for.
fn connect_socket(addr: SocketAddr, user_timeout_ms: Option<u32>) -> std::io::Result<TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the fd is owned by the TcpStream below or closed on error.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    if let Some(ms) = user_timeout_ms {
        setsockopt(&stream, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms);
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a sockaddr_in/in6 of length len.
    let ret = unsafe {
        libc::connect(
            fd,
            &storage as *const libc::sockaddr_storage as *const libc::sockaddr,
            len,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn setsockopt<T>(stream: &TcpStream, level: libc::c_int, name: libc::c_int, value: T) {
    // SAFETY: value is a live T of the size passed.
    let ret = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            level,
            name,
            &value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        fail(&format!(
            "setsockopt({level}, {name}): {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// SO_LINGER {on, 0} then close: tcp_disconnect sends exactly one RST from this close().
fn abort(stream: TcpStream) {
    setsockopt(
        &stream,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
    drop(stream);
}

fn await_reset(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(err) if err.raw_os_error() == Some(libc::ECONNRESET) => {}
        other => fail(&format!("expected ECONNRESET from the peer, got {other:?}")),
    }
}

/// Reads exactly `total` bytes. With `peek`, every read is preceded by a MSG_PEEK of the
/// same size, so the kernel hands out each byte twice but only one copy is consumed.
fn read_exactly(stream: &mut TcpStream, total: u64, peek: bool) -> u64 {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < total {
        let want = buffer.len().min((total - got) as usize);
        if peek {
            // SAFETY: buffer has at least `want` writable bytes.
            let peeked = unsafe {
                libc::recv(
                    stream.as_raw_fd(),
                    buffer.as_mut_ptr() as *mut libc::c_void,
                    want,
                    libc::MSG_PEEK,
                )
            };
            if peeked <= 0 {
                fail(&format!(
                    "MSG_PEEK after {got} of {total} bytes: {peeked} ({})",
                    std::io::Error::last_os_error()
                ));
            }
        }
        match stream.read(&mut buffer[..want]) {
            Ok(0) => fail(&format!("EOF after {got} of {total} bytes")),
            Ok(n) => got += n as u64,
            Err(err) => fail(&format!("read after {got} of {total} bytes: {err}")),
        }
    }
    got
}

fn write_exactly(stream: &mut TcpStream, total: u64) -> u64 {
    let buffer = vec![b'x'; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let chunk = buffer.len().min(left as usize);
        stream
            .write_all(&buffer[..chunk])
            .unwrap_or_else(|e| fail(&format!("write after {} bytes: {e}", total - left)));
        left -= chunk as u64;
    }
    total
}

/// Drains until the peer closes; returns how much arrived on the way.
fn read_to_eof(stream: &mut TcpStream, peer: SocketAddr) -> u64 {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut got = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return got,
            Ok(n) => got += n as u64,
            Err(err) => fail(&format!("read from {peer}: {err}")),
        }
    }
}

/// Sends `chunk` bytes every `every_ms` for `ms` on one connection, then closes it: a
/// connection that always has a little data in flight, so dropped packets get retransmitted.
fn trickle(options: &Options) {
    let mut stream = connect_socket(options.single_addr(), None)
        .unwrap_or_else(|e| fail(&format!("connect {}: {e}", options.single_addr())));
    ready("ready");
    let chunk = vec![b't'; options.chunk];
    let deadline = Instant::now() + Duration::from_millis(options.trickle_ms);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        stream
            .write_all(&chunk)
            .unwrap_or_else(|e| fail(&format!("write after {sent} bytes: {e}")));
        sent += chunk.len() as u64;
        std::thread::sleep(Duration::from_millis(options.every_ms));
    }
    drop(stream);
    println!("sent {sent}");
}
