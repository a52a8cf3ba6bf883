//! Block I/O against known ground truth: a process that writes N blocks of a file with
//! direct I/O (no page cache: each write is one request to the device, issued by the writer)
//! is reported with exactly N write operations under its name; its `fdatasync` adds at most
//! one write (the filesystem's commit block) and one flush.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::Stdio,
    time::Duration,
};

use tests::{
    Agent, PYTHON_DIRECT_WRITER, TempDir, eventually, python3, spawn_named_with, unique_comm,
};

/// Block size of the writes, and their count.
const BLOCK: usize = 4096;
const WRITES: usize = 64;

fn count(agent: &Agent, comm: &str, operation: &str) -> Option<f64> {
    agent.scrape().value(
        "monitor_block_io_duration_seconds_count",
        &[("comm", comm), ("operation", operation)],
    )
}

/// Writes the machine's dirty pages back and waits (up to 60 s) until none are in flight:
/// a device busy with writeback (a fresh build's gigabytes, in CI) queues the test's requests
/// and the kernel's block workers issue them, under their own names, not the writer's.
fn settle_writeback() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let in_flight = || {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("Writeback:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually(Duration::from_secs(60), "writeback to settle", || {
        (in_flight() == 0).then_some(())
    });
}

/// Every block series the agent reports, for a failure's message.
fn block_series(agent: &Agent) -> String {
    agent
        .scrape()
        .text
        .lines()
        .filter(|line| line.starts_with("monitor_block_io_duration_seconds_count"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn direct_writes_are_one_write_operation_each_under_the_writer() {
    settle_writeback();
    let agent = Agent::start(&[]);
    // On the disk under the test's temporary directory; written and synced first, so the
    // direct writes overwrite allocated blocks and need no metadata (a journal write would
    // come from the filesystem's own thread, not the writer).
    let dir = TempDir::new("block-io");
    let path = dir.path().join("data");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&vec![b'p'; WRITES * BLOCK]).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let comm = unique_comm("direct");
    let mut writer = spawn_named_with(&comm, &python3(), |command| {
        command
            .args(["-c", PYTHON_DIRECT_WRITER, path.to_str().unwrap()])
            .args([WRITES.to_string(), BLOCK.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
    });
    let mut line = String::new();
    BufReader::new(writer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "written\n");
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(Duration::from_secs(10), "the direct writes", || {
            count(&agent, &comm, "write").filter(|&writes| writes >= WRITES as f64)
        })
    }));
    let writes = waited.unwrap_or_else(|_| {
        panic!(
            "{WRITES} direct writes of {comm} not all counted; the block series:\n{}",
            block_series(&agent)
        )
    });
    // Nothing comes late: exactly one request per write.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(writes, WRITES as f64);
    assert_eq!(count(&agent, &comm, "write"), Some(WRITES as f64));
    // fdatasync: the filesystem may write one commit block from the writer (ext4's fast
    // commit or journal record), and a disk with a write-back cache gets a flush (on its own,
    // or carried by that write).
    writeln!(writer.stdin.take().unwrap()).unwrap();
    assert!(writer.wait().unwrap().success());
    std::thread::sleep(Duration::from_secs(2));
    let after = count(&agent, &comm, "write").unwrap();
    let flushes = count(&agent, &comm, "flush").unwrap_or(0.0);
    eprintln!(
        "{comm}: {WRITES} direct writes counted exactly; fdatasync added {} writes and {flushes} flushes",
        after - writes
    );
    assert!(
        after - writes <= 1.0 && flushes <= 1.0,
        "{after} writes, {flushes} flushes"
    );
}
