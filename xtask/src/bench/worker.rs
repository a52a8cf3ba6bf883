//! `cargo xtask bench-net-worker`: the network workloads the benchmark times, run as a child
//! of the benchmark (the xtask binary re-executed) so each run starts from a fresh process.
//! Prints one number on stdout and nothing else; `cargo xtask bench` parses it.
//!
//! Both ends are in this one process, pinned to the last CPU: the time measured is then all
//! the CPU work of a connection or a write, both ends and the loopback softirq included,
//! and nothing the probes add can hide in the other CPU's idle time.
//! As in `syscall-loop`, the work is split into batches and the fastest batch is reported:
//! on a virtual machine steal time lands on some batches and not others.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    thread,
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Subcommand;

/// The hidden subcommand that runs one workload, as `cargo xtask bench` re-executes it.
pub const WORKER_COMMAND: &str = "bench-net-worker";
const BATCHES: u64 = 20;

#[derive(Subcommand, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Open and close N loopback connections one after the other; prints µs per connection.
    Conn {
        /// Connections timed (after a warm-up of a tenth as many).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
    },
    /// Stream B bytes over one loopback connection in writes (and reads) of C bytes; prints
    /// ns per write.
    Bulk {
        /// Bytes timed (after a warm-up of a tenth as many).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        bytes: u64,
        /// Bytes per write and per read.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=(1 << 24)))]
        chunk: u64,
    },
}

impl Workload {
    /// What the worker's one number counts.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Conn { .. } => "µs per connection",
            Workload::Bulk { .. } => "ns per write",
        }
    }

    /// The worker's arguments after `bench-net-worker`.
    pub fn args(self) -> Vec<String> {
        match self {
            Workload::Conn { count } => vec!["conn".into(), "--count".into(), count.to_string()],
            Workload::Bulk { bytes, chunk } => vec![
                "bulk".into(),
                "--bytes".into(),
                bytes.to_string(),
                "--chunk".into(),
                chunk.to_string(),
            ],
        }
    }
}

pub fn run(workload: Workload) -> Result<()> {
    pin_to_last_cpu();
    match workload {
        Workload::Conn { count } => println!("{:.2}", connections(count)?),
        Workload::Bulk { bytes, chunk } => println!("{:.1}", bulk(bytes, chunk)?),
    }
    Ok(())
}

/// Units per timed batch and the untimed warm-up, so that every batch is the same size.
fn split(units: u64) -> (u64, u64) {
    let per_batch = (units / BATCHES).max(1);
    (per_batch, units / 10)
}

/// µs per connection of the fastest batch. Each connection: connect, accept, the server end
/// closes, the client reads the EOF and closes. The server closing first leaves the
/// TIME_WAIT socket on the server side, so the client's ephemeral ports are free again at
/// once and no run exhausts them for the next.
fn connections(count: u64) -> Result<f64> {
    let (per_batch, warm_up) = split(count);
    if warm_up > 0 {
        connection_batch(warm_up).context("warm-up")?;
    }
    let mut fastest = f64::INFINITY;
    for batch in 1..=BATCHES {
        let micros = connection_batch(per_batch).with_context(|| format!("batch {batch}"))?;
        fastest = fastest.min(micros / per_batch as f64);
    }
    Ok(fastest)
}

/// Both ends in one thread: over loopback the handshake completes inside `connect` (the
/// listener's backlog holds the connection until `accept`), so no thread switch adds
/// scheduler noise to what is the same kernel work, state changes and probe hits as a
/// client and server thread would cause.
///
/// A listener per batch: the kernel hands out client ports in sequence per destination, and
/// with a fresh destination port a batch never reuses a 4-tuple still in the server's
/// TIME_WAIT (that SYN takes a different path and would make late batches dearer).
fn connection_batch(count: u64) -> Result<f64> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a listener")?;
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    let start = Instant::now();
    for _ in 0..count {
        one_connection(&listener, addr)?;
    }
    Ok(start.elapsed().as_nanos() as f64 / 1e3)
}

fn one_connection(listener: &TcpListener, addr: SocketAddr) -> Result<()> {
    let mut client = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let (server, _) = listener.accept().context("accept")?;
    drop(server);
    let mut byte = [0u8; 1];
    let read = client.read(&mut byte).context("reading the server's EOF")?;
    ensure!(read == 0, "the server end sent data instead of closing");
    Ok(())
}

/// ns per write of the fastest batch, timed where the bytes arrive: a write only queues
/// bytes, so the reader's clock is the one that sees the whole path.
fn bulk(bytes: u64, chunk: u64) -> Result<f64> {
    let (per_batch, warm_up) = split(bytes.div_ceil(chunk));
    let total_writes = warm_up + per_batch * BATCHES;
    let chunk_len = usize::try_from(chunk).context("chunk size")?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a listener")?;
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    // Connected before the sender thread starts, so neither side can be left waiting for a
    // peer that failed to turn up.
    let mut sending = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let (mut receiving, _) = listener.accept().context("accept")?;
    let sender = thread::spawn(move || -> Result<()> {
        let buffer = vec![0x5a_u8; chunk_len];
        for _ in 0..total_writes {
            sending.write_all(&buffer).context("write")?;
        }
        Ok(())
    });
    let received = receive(&mut receiving, chunk_len, warm_up, per_batch);
    // Closing our end makes a sender blocked on a full buffer fail instead of hang.
    drop(receiving);
    let sent = sender.join().expect("sender thread panicked");
    match (received, sent) {
        (Ok(ns), Ok(())) => Ok(ns),
        (Err(err), Ok(())) | (Ok(_), Err(err)) => Err(err),
        // Either may have caused the other (a dead sender is a short read, a dead receiver
        // a failed write): keep both.
        (Err(receiving), Err(sending)) => {
            Err(receiving.context(format!("the sender failed too: {sending:#}")))
        }
    }
}

fn receive(stream: &mut TcpStream, chunk: usize, warm_up: u64, per_batch: u64) -> Result<f64> {
    let mut buffer = vec![0u8; chunk];
    let chunk_bytes = chunk as u64;
    drain(stream, &mut buffer, warm_up * chunk_bytes).context("warm-up")?;
    let mut fastest = f64::INFINITY;
    for batch in 1..=BATCHES {
        let start = Instant::now();
        drain(stream, &mut buffer, per_batch * chunk_bytes)
            .with_context(|| format!("batch {batch}"))?;
        let ns = start.elapsed().as_nanos() as f64;
        fastest = fastest.min(ns / per_batch as f64);
    }
    Ok(fastest)
}

/// Reads exactly `bytes`, at most a buffer (one chunk) per read, so reads match writes.
fn drain(stream: &mut TcpStream, buffer: &mut [u8], mut bytes: u64) -> Result<()> {
    while bytes > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(bytes).unwrap_or(usize::MAX));
        let read = stream.read(&mut buffer[..want]).context("read")?;
        if read == 0 {
            bail!("the sender closed with {bytes} bytes still expected");
        }
        bytes -= read as u64;
    }
    Ok(())
}

/// Best effort: an unpinned run is still a valid, noisier measurement. Threads spawned
/// later inherit the mask, which is what puts client and server on the same CPU.
fn pin_to_last_cpu() {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it for cpus < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus - 1, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Worker {
        #[command(subcommand)]
        workload: Workload,
    }

    #[test]
    fn args_parse_back_to_the_same_workload() {
        for workload in [
            Workload::Conn { count: 20_000 },
            Workload::Bulk {
                bytes: 1_000_000_000,
                chunk: 65_536,
            },
        ] {
            let args = std::iter::once("worker".to_owned()).chain(workload.args());
            assert_eq!(Worker::try_parse_from(args).unwrap().workload, workload);
        }
    }

    #[test]
    fn rejects_zero_sizes() {
        assert!(Worker::try_parse_from(["w", "conn", "--count", "0"]).is_err());
        assert!(Worker::try_parse_from(["w", "bulk", "--bytes", "1", "--chunk", "0"]).is_err());
    }

    #[test]
    fn split_keeps_batches_equal_and_non_empty() {
        assert_eq!(split(20_000), (1_000, 2_000));
        assert_eq!(split(5), (1, 0));
    }

    // Small real runs over loopback: the workloads must complete and report a plausible
    // figure. No timing is asserted.
    #[test]
    fn connection_and_bulk_workloads_complete() {
        let micros = connections(40).unwrap();
        assert!(micros.is_finite() && micros > 0.0);
        let ns = bulk(200_000, 1024).unwrap();
        assert!(ns.is_finite() && ns > 0.0);
    }
}
