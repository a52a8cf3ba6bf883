//! Listening sockets that existed before the agent started.
//!
//! The kernel learns a listener's owner when it calls `listen()`; a server started before the
//! agent never does so again, and its inbound connections would stay unattributed. At start-up
//! the agent therefore finds every TCP listener in every network namespace (`/proc/<pid>/net/
//! tcp{,6}` of one process per namespace), its owner (the process holding the socket's fd), and
//! writes them into `TCP_LISTENERS`. Racing `listen()` calls are fine: both write the same.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use log::{debug, info};
use monitor_common::{ListenerKey, Owner};

use crate::proc_access::{self, What};

/// `TCP_LISTEN` in the `st` column of `/proc/net/tcp`.
const LISTEN_STATE: &str = "0A";

/// One `LISTEN` row: the local port and the socket's inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenRow {
    pub port: u16,
    pub inode: u64,
}

/// Parses `/proc/net/tcp` or `/proc/net/tcp6`, keeping the listening sockets.
pub fn parse_proc_net_tcp(text: &str) -> Vec<ListenRow> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.get(3) != Some(&LISTEN_STATE) {
                return None;
            }
            let (_, port) = fields.get(1)?.rsplit_once(':')?;
            Some(ListenRow {
                port: u16::from_str_radix(port, 16).ok()?,
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// `socket:[12345]` or `net:[4026531840]` → the number.
pub fn bracketed_inode(link: &str, kind: &str) -> Option<u64> {
    link.strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The target of the link at `path`; a refusal is counted as `what`.
fn link(what: What, path: &Path) -> Option<String> {
    Some(
        proc_access::check(what, path, std::fs::read_link(path))
            .ok()?
            .to_str()?
            .to_owned(),
    )
}

/// Every listener on the host: (netns inode, port) → owning TGID.
fn find() -> HashMap<ListenerKey, u32> {
    let pids = pids();
    let mut rows: HashMap<u64, Vec<(u32, u16)>> = HashMap::new(); // socket inode → (netns, port)
    let mut namespaces = HashSet::new();
    for &pid in &pids {
        let Some(netns) = link(What::NsNet, Path::new(&format!("/proc/{pid}/ns/net")))
            .and_then(|link| bracketed_inode(&link, "net"))
        else {
            continue;
        };
        if !namespaces.insert(netns) {
            continue;
        }
        for table in ["tcp", "tcp6"] {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
                continue;
            };
            for row in parse_proc_net_tcp(&text) {
                rows.entry(row.inode)
                    .or_default()
                    .push((netns as u32, row.port));
            }
        }
    }
    let mut owners = HashMap::new();
    if rows.is_empty() {
        return owners;
    }
    for &pid in &pids {
        let path = PathBuf::from(format!("/proc/{pid}/fd"));
        let Ok(fds) = proc_access::check(What::Fd, &path, std::fs::read_dir(&path)) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let Some(inode) =
                link(What::Fd, &fd.path()).and_then(|link| bracketed_inode(&link, "socket"))
            else {
                continue;
            };
            for &(netns, port) in rows.get(&inode).into_iter().flatten() {
                let key = ListenerKey {
                    netns,
                    port,
                    _pad: 0,
                };
                owners.entry(key).or_insert(pid);
            }
        }
    }
    owners
}

/// Writes the listeners found into `TCP_LISTENERS`; `generation` gives each owner's
/// current process generation. Returns how many were written.
pub fn seed(
    map: &mut BpfHashMap<MapData, ListenerKey, Owner>,
    generation: impl Fn(u32) -> Option<u32>,
) -> usize {
    let started = std::time::Instant::now();
    let agent = std::process::id();
    let mut written = 0;
    for (key, tgid) in find() {
        if tgid == agent {
            continue;
        }
        let owner = Owner {
            tgid,
            generation: generation(tgid).unwrap_or(0),
        };
        match map.insert(key, owner, 0) {
            Ok(()) => written += 1,
            Err(err) => debug!("listener {key:?} of {tgid} not recorded: {err}"),
        }
    }
    info!(
        "{written} TCP listeners that predate the agent recorded in {:?}",
        started.elapsed()
    );
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_rows_only() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n\
            1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(
            parse_proc_net_tcp(text),
            [ListenRow {
                port: 8080,
                inode: 31337
            }]
        );
        let v6 = "header\n   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(
            parse_proc_net_tcp(v6),
            [ListenRow {
                port: 80,
                inode: 4242
            }]
        );
    }

    #[test]
    fn inode_links() {
        assert_eq!(bracketed_inode("socket:[12345]", "socket"), Some(12345));
        assert_eq!(bracketed_inode("net:[4026531840]", "net"), Some(4026531840));
        assert_eq!(bracketed_inode("pipe:[1]", "socket"), None);
        assert_eq!(bracketed_inode("/dev/null", "socket"), None);
    }
}
