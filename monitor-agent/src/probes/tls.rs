//! TLS libraries found and instrumented. A process's memory map is read soon after it calls
//! exec (the pipeline announces it), and every process's every 10 s (those older than the
//! agent, those that load libssl late); each OpenSSL `libssl` file not seen before (the
//! host's, a container's own copy: told apart by device and inode) gets the `SSL_read`/`SSL_write` uprobes
//! (`monitor-ebpf/src/tls.rs`), once per file, through `/proc/PID/root`, so a container's
//! file is reached in its own mount namespace. A uprobe is on the file, not on a process:
//! every process that maps the file later is covered from its first call. The host's own
//! libssl is instrumented at start-up, before any process is seen using it.
//!
//! Processes whose TLS the probes cannot see are counted by reason
//! (`monitor_tls_uninstrumented_processes`): Go programs (`crypto/tls` is compiled in),
//! GnuTLS and NSS users with no libssl, and users of a libssl the kernel refused probes on.
//!
//! The scans run on a thread of their own, which owns the loaded object (attaching needs
//! its programs): stopping the thread detaches everything.
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{UProbe, uprobe::UProbeScope},
};
use log::{debug, info, warn};
use monitor_common::program;

/// How often every process's maps are read: for new libraries in processes older than the
/// agent or that load libssl late, and to count who goes unseen.
pub const FULL_SCAN_EVERY: Duration = Duration::from_secs(10);
/// When a process that called exec is looked at: once the dynamic loader has mapped its
/// libraries, and again once a program that loads libssl on demand (Python's `import ssl`)
/// has likely done so.
const LOOK_AFTER_EXEC: [Duration; 2] = [Duration::from_millis(100), Duration::from_secs(1)];

/// Where Debian, Ubuntu, RHEL and Alpine keep the system's libssl.
const SYSTEM_LIBRARIES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/usr/lib64/libssl.so.3",
    "/usr/lib64/libssl.so.1.1",
    "/lib/libssl.so.3",
    "/usr/lib/libssl.so.3",
];

/// Why a process's TLS goes unseen (`reason` label values).
pub mod reason {
    /// A Go program: `crypto/tls` is compiled into it, no library call to probe.
    pub const GO: &str = "go";
    /// It maps GnuTLS and no libssl.
    pub const GNUTLS: &str = "gnutls";
    /// It maps NSS (`libnss3`) and no libssl.
    pub const NSS: &str = "nss";
    /// Its libssl could not be instrumented (the kernel refused the uprobes).
    pub const ATTACH_FAILED: &str = "attach_failed";
    pub const ALL: [&str; 4] = [GO, GNUTLS, NSS, ATTACH_FAILED];
}

/// What the scans found, for the `tls` room to publish.
#[derive(Clone, Debug, Default)]
pub struct TlsStatus {
    /// Library files with their uprobes attached.
    pub libraries: u64,
    /// Live processes per `reason`.
    pub uninstrumented: BTreeMap<&'static str, u64>,
    /// Whether the scans run at all (the programs loaded).
    pub enabled: bool,
}

pub type SharedStatus = Arc<Mutex<TlsStatus>>;

/// A mapped file, as `/proc/PID/maps` names it: (device, inode) and the path in the
/// process's mount namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub file: (String, u64),
    pub path: String,
}

/// What kind of TLS library a mapped file is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    OpenSsl,
    GnuTls,
    Nss,
}

impl Library {
    fn of(path: &str) -> Option<Self> {
        let name = path.rsplit('/').next().unwrap_or(path);
        if name.starts_with("libssl.so") {
            Some(Self::OpenSsl)
        } else if name.starts_with("libgnutls.so") {
            Some(Self::GnuTls)
        } else if name.starts_with("libnss3.so") {
            Some(Self::Nss)
        } else {
            None
        }
    }
}

/// The TLS libraries one `/proc/PID/maps` text maps (each file once).
pub fn tls_libraries(maps: &str) -> Vec<(Library, Mapped)> {
    let mut found: Vec<(Library, Mapped)> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let mut fields = line.split_ascii_whitespace();
        let (Some(dev), Some(inode)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        let path = fields.collect::<Vec<_>>().join(" ");
        // A file replaced since it was mapped: its path names another one now.
        if !path.starts_with('/') || path.ends_with("(deleted)") {
            continue;
        }
        let (Some(library), Ok(inode)) = (Library::of(&path), inode.parse::<u64>()) else {
            continue;
        };
        let file = (dev.to_owned(), inode);
        if !found.iter().any(|(_, seen)| seen.file == file) {
            found.push((library, Mapped { file, path }));
        }
    }
    found
}

/// What a probed function's return does.
#[derive(Clone, Copy)]
enum Returns {
    /// Plaintext read, or written (`Attacher::returns`).
    Read,
    Written,
    /// The handshake: the connection's socket is noted.
    Handshake,
}

/// The functions probed, each with its entry program and what its return does.
const FUNCTIONS: [(&str, &str, Returns); 5] = [
    ("SSL_read", program::SSL_CALL, Returns::Read),
    ("SSL_write", program::SSL_CALL, Returns::Written),
    ("SSL_read_ex", program::SSL_CALL_EX, Returns::Read),
    ("SSL_write_ex", program::SSL_CALL_EX, Returns::Written),
    ("SSL_do_handshake", program::SSL_CALL, Returns::Handshake),
];

/// What the scan thread is told.
pub enum Notice {
    /// A process called exec: its libraries are looked at soon.
    Exec(u32),
    Stop,
}

/// Notices waiting at most; exec notices past it are dropped (the full scan finds those
/// processes later).
const NOTICES: usize = 4096;

/// The agent's side of the TLS scans, made before the scan thread starts: what the scans
/// find (for the `tls` room), and where new processes are announced (by the pipeline).
pub struct TlsLink {
    pub status: SharedStatus,
    pub notices: mpsc::SyncSender<Notice>,
    inbox: mpsc::Receiver<Notice>,
}

impl TlsLink {
    pub fn new() -> Self {
        let (notices, inbox) = mpsc::sync_channel(NOTICES);
        Self {
            status: SharedStatus::default(),
            notices,
            inbox,
        }
    }
}

impl Default for TlsLink {
    fn default() -> Self {
        Self::new()
    }
}

/// Tells the scan thread of a process that called exec; never blocks (a full queue drops
/// the notice).
pub fn announce_exec(notices: &mpsc::SyncSender<Notice>, pid: u32) {
    let _ = notices.try_send(Notice::Exec(pid));
}

/// The thread that scans and attaches; `stop` ends it, detaching every uprobe.
pub struct Running {
    stop: mpsc::SyncSender<Notice>,
    thread: thread::JoinHandle<()>,
}

impl Running {
    pub fn stop(self) {
        let _ = self.stop.send(Notice::Stop);
        if self.thread.join().is_err() {
            warn!("the TLS scan thread panicked");
        }
    }
}

struct Attacher {
    ebpf: Ebpf,
    /// The return programs: (reads, writes).
    returns: (&'static str, &'static str),
    /// Library files tried, by device and inode as the agent sees them through the process's
    /// root, and whether their probes are attached.
    files: HashMap<(u64, u64), bool>,
    /// Executables (device, inode) known to be Go programs with `crypto/tls`.
    go: HashMap<(u64, u64), bool>,
    status: SharedStatus,
}

/// Starts the thread that holds the loaded object for the agent's life (every probe stays
/// attached while it runs) and, when the uprobe programs load, scans and attaches. `framed`
/// picks the return programs that frame HTTP in the kernel (as the socket I/O programs do)
/// over those that copy; `None` (`--probes.tls=false`) loads none. Programs the kernel
/// refuses are logged: HTTPS goes unseen, the rest of the agent runs.
pub fn spawn(mut ebpf: Ebpf, framed: Option<bool>, link: TlsLink) -> anyhow::Result<Running> {
    let returns = if framed == Some(true) {
        (program::SSL_READ_RET_FRAMED, program::SSL_WRITE_RET_FRAMED)
    } else {
        (program::SSL_READ_RET, program::SSL_WRITE_RET)
    };
    let loaded = match framed {
        None => {
            info!("TLS: --probes.tls=false: HTTPS goes unseen");
            Err(anyhow::anyhow!("off"))
        }
        Some(_) => loaded_programs(returns)
            .into_iter()
            .try_for_each(|name| load(&mut ebpf, name).with_context(|| format!("program {name}")))
            .inspect_err(|err| warn!("TLS: {err:#}; HTTPS goes unseen")),
    };
    link.status.lock().expect("TLS status").enabled = loaded.is_ok();
    let TlsLink {
        status,
        notices,
        inbox,
    } = link;
    let mut attacher = Attacher {
        ebpf,
        returns,
        files: HashMap::new(),
        go: HashMap::new(),
        status,
    };
    let scans = loaded.is_ok();
    if scans {
        // Before the agent serves: a process started once it does is seen from its first call.
        attacher.system_libraries();
    }
    let thread = thread::Builder::new()
        .name("tls-scan".into())
        .spawn(move || attacher.run(scans, &inbox))
        .context("starting the TLS scan thread")?;
    Ok(Running {
        stop: notices,
        thread,
    })
}

/// Takes the notices waiting: exec'd processes go to `execs`, to be looked at after each of
/// `LOOK_AFTER_EXEC`; false on a stop.
fn take_notices(inbox: &mpsc::Receiver<Notice>, execs: &mut Vec<(Instant, u32)>) -> bool {
    loop {
        match inbox.try_recv() {
            Ok(notice) => {
                if !note(notice, execs) {
                    return false;
                }
            }
            Err(mpsc::TryRecvError::Empty) => return true,
            Err(mpsc::TryRecvError::Disconnected) => return false,
        }
    }
}

/// Files a notice; false on a stop.
fn note(notice: Notice, execs: &mut Vec<(Instant, u32)>) -> bool {
    match notice {
        Notice::Stop => false,
        Notice::Exec(pid) => {
            let now = Instant::now();
            execs.extend(LOOK_AFTER_EXEC.iter().map(|after| (now + *after, pid)));
            true
        }
    }
}

/// The programs loaded when the uprobes may run: the entries, the handshake's return, and
/// the read and write returns of one kind (`returns`).
fn loaded_programs(returns: (&'static str, &'static str)) -> [&'static str; LOADED_PROGRAMS] {
    [
        program::SSL_CALL,
        program::SSL_CALL_EX,
        program::SSL_HANDSHAKE_RET,
        returns.0,
        returns.1,
    ]
}

/// How many programs the agent holds for TLS, besides `PROBES`' (unless `--probes.tls=false`).
pub const LOADED_PROGRAMS: usize = 5;

fn load(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<()> {
    let program: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow::anyhow!("missing from the object"))?
        .try_into()?;
    program.load()?;
    Ok(())
}

impl Attacher {
    /// The scan thread: a full scan every `FULL_SCAN_EVERY`, and a look at each process
    /// the pipeline saw exec, soon after, until told to stop (then the object, and every
    /// probe, goes with the thread). Without `scans` (the programs did not load) it only
    /// holds the object.
    fn run(&mut self, scans: bool, inbox: &mpsc::Receiver<Notice>) {
        if !scans {
            // Exec notices still come; only a stop (or the agent gone) matters.
            while let Ok(notice) = inbox.recv() {
                if matches!(notice, Notice::Stop) {
                    return;
                }
            }
            return;
        }
        let mut execs: Vec<(Instant, u32)> = Vec::new();
        let mut next_scan = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_scan {
                if !self.scan(inbox, &mut execs) {
                    return;
                }
                next_scan = Instant::now() + FULL_SCAN_EVERY;
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = execs.drain(..).partition(|(at, _)| *at <= now);
            execs = later;
            for (_, pid) in due {
                self.look_at(pid, false);
            }
            self.publish_libraries();
            let wake = execs
                .iter()
                .map(|(at, _)| *at)
                .chain([next_scan])
                .min()
                .unwrap_or(next_scan);
            match inbox.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(notice) => {
                    if !note(notice, &mut execs) {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// The host's own libssl, before any process is seen with it: a process started later
    /// is then seen from its first call.
    fn system_libraries(&mut self) {
        for path in SYSTEM_LIBRARIES {
            let Ok(meta) = fs::metadata(path) else {
                continue;
            };
            let file = (meta.dev(), meta.ino());
            if !self.files.contains_key(&file) {
                let attached = self.attach(Path::new(path));
                if attached {
                    info!("TLS: {path} instrumented (the host's libssl)");
                }
                self.files.insert(file, attached);
            }
        }
        self.publish_libraries();
    }

    /// Reads every process's maps: attaches new libssl files, counts who goes unseen. Gives
    /// up as soon as a notice says stop (false); exec notices wait for the next look.
    fn scan(&mut self, inbox: &mpsc::Receiver<Notice>, execs: &mut Vec<(Instant, u32)>) -> bool {
        let Ok(entries) = fs::read_dir("/proc") else {
            return true;
        };
        let mut uninstrumented: BTreeMap<&'static str, u64> =
            reason::ALL.iter().map(|&reason| (reason, 0)).collect();
        for entry in entries.flatten() {
            if !take_notices(inbox, execs) {
                return false;
            }
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(reason) = pid.and_then(|pid| self.look_at(pid, true)) {
                *uninstrumented.entry(reason).or_default() += 1;
            }
        }
        self.status.lock().expect("TLS status").uninstrumented = uninstrumented;
        self.publish_libraries();
        true
    }

    /// Reads one process's maps and attaches the libssl files in them not seen before;
    /// with `classify`, why its TLS goes unseen, if it does.
    fn look_at(&mut self, pid: u32, classify: bool) -> Option<&'static str> {
        if pid == std::process::id() {
            return None;
        }
        // Gone since the listing, or a kernel thread (empty): nothing to see.
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let libraries = tls_libraries(&maps);
        let mut openssl = None;
        for (library, mapped) in &libraries {
            if *library == Library::OpenSsl {
                let attached = self.openssl(pid, &mapped.path);
                openssl = Some(openssl.unwrap_or(false) || attached);
            }
        }
        if !classify || maps.is_empty() {
            return None;
        }
        let has = |kind| libraries.iter().any(|(library, _)| *library == kind);
        match openssl {
            Some(true) => None,
            Some(false) => Some(reason::ATTACH_FAILED),
            None if has(Library::GnuTls) => Some(reason::GNUTLS),
            None if has(Library::Nss) => Some(reason::NSS),
            None if self.is_go_with_tls(pid) => Some(reason::GO),
            None => None,
        }
    }

    /// Whether the libssl that process `pid` maps at `path` (in its mount namespace) is
    /// instrumented; attached first if it is a file not seen before. Files are told apart
    /// as the agent sees them through the process's root: the host's libssl is the same
    /// file for every host process, a container's copy is another.
    fn openssl(&mut self, pid: u32, path: &str) -> bool {
        let through_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
        let Ok(meta) = fs::metadata(&through_root) else {
            return false;
        };
        let file = (meta.dev(), meta.ino());
        if let Some(&attached) = self.files.get(&file) {
            return attached;
        }
        let attached = self.attach(&through_root);
        if attached {
            info!("TLS: {path} (pid {pid}) instrumented: SSL_read and SSL_write seen");
        }
        self.files.insert(file, attached);
        attached
    }

    fn publish_libraries(&self) {
        let attached = self.files.values().filter(|&&attached| attached).count();
        self.status.lock().expect("TLS status").libraries = attached as u64;
    }

    /// Attaches every function's entry and return probes to the library at `path`; true
    /// when `SSL_read` and `SSL_write` both are (the `_ex` forms are 1.1.1+).
    fn attach(&mut self, path: &Path) -> bool {
        let mut attached = Vec::new();
        for (function, entry, returns) in FUNCTIONS {
            let ret = match returns {
                Returns::Read => self.returns.0,
                Returns::Written => self.returns.1,
                Returns::Handshake => program::SSL_HANDSHAKE_RET,
            };
            let outcome = [entry, ret].into_iter().try_for_each(|name| {
                let program: &mut UProbe = self
                    .ebpf
                    .program_mut(name)
                    .ok_or_else(|| anyhow::anyhow!("{name} missing"))?
                    .try_into()?;
                program.attach(function, path, UProbeScope::AllProcesses)?;
                anyhow::Ok(())
            });
            match outcome {
                Ok(()) => attached.push(function),
                Err(err) => debug!("TLS: {function} in {}: {err:#}", path.display()),
            }
        }
        let whole = attached.contains(&"SSL_read") && attached.contains(&"SSL_write");
        if whole {
            debug!(
                "TLS: {} instrumented ({})",
                path.display(),
                attached.join(", ")
            );
        } else {
            warn!(
                "TLS: {} NOT instrumented (uprobes on SSL_read/SSL_write refused; run with \
                 --log.level debug for the kernel's reasons): its processes' HTTPS goes unseen",
                path.display()
            );
        }
        whole
    }

    /// Whether process `pid` runs a Go program with `crypto/tls` in it; looked at once per
    /// executable file.
    fn is_go_with_tls(&mut self, pid: u32) -> bool {
        let exe = format!("/proc/{pid}/exe");
        let Ok(meta) = fs::metadata(&exe) else {
            return false;
        };
        *self
            .go
            .entry((meta.dev(), meta.ino()))
            .or_insert_with(|| fs::File::open(&exe).is_ok_and(go_with_tls))
    }
}

/// Whether an executable is a Go program whose function table names `crypto/tls`. Only the
/// section headers and that table are read, never the whole file.
fn go_with_tls(file: fs::File) -> bool {
    use object::{Object as _, ObjectSection as _, read::elf::ElfFile64};
    let cache = object::ReadCache::new(file);
    let Ok(elf) = ElfFile64::<object::Endianness, _>::parse(&cache) else {
        return false;
    };
    if elf.section_by_name(".go.buildinfo").is_none() {
        return false;
    }
    // Position-independent builds keep the table inside `.data.rel.ro`.
    [".gopclntab", ".data.rel.ro.gopclntab", ".data.rel.ro"]
        .into_iter()
        .find_map(|name| elf.section_by_name(name))
        .and_then(|table| table.data().ok())
        .is_some_and(|data| contains(data, GO_TLS))
}

/// The prefix of every `crypto/tls` function's name in a Go program's function table.
const GO_TLS: &[u8] = b"crypto/tls.";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a20000 r--p 00000000 08:01 1311 /usr/sbin/nginx
7f1a2b000000-7f1a2b020000 r--p 00000000 08:01 2622 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1a2b020000-7f1a2b080000 r-xp 00020000 08:01 2622 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1a2c000000-7f1a2c100000 r-xp 00000000 08:01 2700 /usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3
7f1a2d000000-7f1a2d100000 r-xp 00000000 00:2f 99 /opt/app/lib/libssl.so.1.1 (deleted)
7f1a2e000000-7f1a2e100000 r-xp 00000000 00:2f 98 /opt/my app/libssl3.so
7f1a2f000000-7f1a2f001000 rw-p 00000000 00:00 0 [heap]
";

    #[test]
    fn the_tls_libraries_of_a_maps_file_each_once_and_not_the_deleted() {
        let found = tls_libraries(MAPS);
        assert_eq!(
            found,
            [
                (
                    Library::OpenSsl,
                    Mapped {
                        file: ("08:01".into(), 2622),
                        path: "/usr/lib/x86_64-linux-gnu/libssl.so.3".into()
                    }
                ),
                (
                    Library::GnuTls,
                    Mapped {
                        file: ("08:01".into(), 2700),
                        path: "/usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn an_exec_is_looked_at_twice_and_a_stop_ends_the_notices() {
        let (notices, inbox) = mpsc::sync_channel(4);
        announce_exec(&notices, 7);
        announce_exec(&notices, 8);
        let mut execs = Vec::new();
        assert!(take_notices(&inbox, &mut execs));
        let pids: Vec<u32> = execs.iter().map(|(_, pid)| *pid).collect();
        assert_eq!(pids, [7, 7, 8, 8]);
        let gap = execs[1].0 - execs[0].0;
        assert_eq!(gap, LOOK_AFTER_EXEC[1] - LOOK_AFTER_EXEC[0]);
        notices.send(Notice::Stop).unwrap();
        assert!(!take_notices(&inbox, &mut execs));
        // A full queue drops an exec notice rather than block the pipeline.
        for pid in 0..10 {
            announce_exec(&notices, pid);
        }
        drop(notices);
        let mut execs = Vec::new();
        assert!(
            !take_notices(&inbox, &mut execs),
            "disconnected ends it too"
        );
        assert_eq!(execs.len(), 2 * 4);
    }

    #[test]
    fn only_go_programs_with_crypto_tls_count_as_go() {
        // This test binary is an ELF file but no Go program.
        let exe = fs::File::open("/proc/self/exe").unwrap();
        assert!(!go_with_tls(exe));
        assert!(contains(b"xx crypto/tls.(*Conn).Write", GO_TLS));
        assert!(!contains(b"crypto/tl", GO_TLS));
    }
}
