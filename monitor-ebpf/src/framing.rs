//! HTTP/1.x framed in the kernel: `monitor-framing` run on each socket read and write of a
//! connection that starts like HTTP, with one `REQUEST_EVENTS` record per completed request.
//! No payload byte leaves the kernel, and a body is skipped by count, never copied.
//!
//! Called by `socket_io` instead of `payload::capture` from the `_framed` programs. A turn
//! of a read/write and a run of a window's bytes (`Conn::step_run`) are each a global BPF
//! function (`mon_frame_turn`, `mon_frame_byte`), which the verifier checks once, on its
//! own, instead of walking every byte of an unrolled window from every caller: the 6.18
//! verifier gave up on that past a million instructions. Global functions (5.6+) take scalars only before 5.12, so they
//! find everything in this CPU's `FRAME_SCRATCH` value, the connection's state included
//! (copied there from `HTTP_CONNS` and back). A verifier that refuses the programs anyway
//! gets the copying ones instead, with the parsing in user space.
//!
//! A socket is judged on its first reads/writes (`monitor_framing::starts_request`), with
//! the same per-socket verdicts as payload capture: a few that start no request, and it
//! costs one hash lookup per call from then on; so does one that leaves HTTP (an upgrade,
//! a tunnel), whose framing state is dropped.
use aya_ebpf::{Global, bindings::BPF_ANY};
use monitor_common::{Counter, Owner, RequestEvent, capacity::REQUEST_TEXT};
use monitor_framing::{
    Conn, Cursor, Io, MAX_TURNS, Outcome, Pending, Step, Turn, WINDOW, Wire, resp, verdict,
};

use crate::{
    copied,
    maps::{
        FRAME_SCRATCH, FrameScratch, HTTP_CONNS, PAYLOAD_SOCKS, REQUEST_EVENTS, Scratch,
        batched_wakeup, bump, copy_words,
    },
    payload::{self, UserBuffer},
    sock::{local_port, now_ns, remote},
};

const _: () = assert!(monitor_framing::TEXT_CAP == REQUEST_TEXT);

/// `global::DATABASES`: whether database connections are copied (set at load).
#[unsafe(no_mangle)]
static DATABASES: Global<u32> = Global::new(0);

/// `global::REDIS`: whether Redis connections are framed (set at load).
#[unsafe(no_mangle)]
static REDIS: Global<u32> = Global::new(0);

/// `global::POSTGRES`: whether PostgreSQL connections are framed (set at load).
#[unsafe(no_mangle)]
static POSTGRES: Global<u32> = Global::new(0);

/// `global::HTTP2`: whether HTTP/2 connections are copied (set at load).
#[unsafe(no_mangle)]
static HTTP2: Global<u32> = Global::new(0);

/// About 500 requests per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 64 * 1024;

const STEP_NEXT: u8 = 0;
const STEP_SKIP: u8 = 1;
const STEP_DONE: u8 = 2;
const TURN_AGAIN: u8 = 0;
const TURN_STOP: u8 = 1;
const TURN_DONE: u8 = 2;

/// The framing's side of one read/write: this CPU's `FRAME_SCRATCH` value, which holds
/// where the read/write's bytes are and whose they are (`Scratch`).
struct KernelWire {
    scratch: *mut FrameScratch,
}

impl KernelWire {
    #[inline(always)]
    fn here() -> Option<Self> {
        FRAME_SCRATCH
            .get_ptr_mut(0)
            .map(|scratch| KernelWire { scratch })
    }

    #[inline(always)]
    fn state(&mut self) -> &mut Scratch {
        // SAFETY: this CPU's scratch value (see `frame`).
        unsafe { &mut (*self.scratch).state }
    }
}

impl Wire for KernelWire {
    fn read(&mut self, offset: u32, len: u32, window: &mut [u8; WINDOW]) -> u32 {
        let mut size = u64::from(len);
        let buffer = self.state().buffer;
        // SAFETY: `window` holds WINDOW bytes; the helper checks the user address and fails
        // instead of faulting.
        let failed = unsafe {
            payload::copy_prefix::<WINDOW>(
                window.as_mut_ptr(),
                &mut size,
                buffer + u64::from(offset),
            )
        };
        if failed != 0 { 0 } else { size as u32 }
    }

    fn now_ns(&mut self) -> u64 {
        let state = self.state();
        if state.now == 0 {
            state.now = now_ns();
        }
        state.now
    }

    fn completed(&mut self, request: &Pending, role: u8, status: u16, end_ns: u64) {
        bump(Counter::RequestEventsProduced);
        let Some(mut entry) = REQUEST_EVENTS.reserve::<RequestEvent>(0) else {
            bump(Counter::RequestEventsDropped);
            return;
        };
        let state = self.state();
        let (owner, sk, family) = (state.owner, state.sk, state.family);
        let event = entry.as_mut_ptr();
        // SAFETY: `event` points to a reserved ring-buffer record of the right size; every
        // field is written before it is submitted.
        unsafe {
            (*event).owner = owner;
            (*event).sk = sk;
            (*event).start_ns = request.start_ns;
            (*event).end_ns = end_ns;
            (*event).remote = remote(sk, family);
            (*event).local_port = local_port(sk);
            (*event).status = status;
            (*event).role = role;
            (*event).method = request.method;
            (*event).flags = request.flags;
            (*event).text_len = request.text_len;
            (*event)._pad = [0; 4];
            (*event).text = request.text;
        }
        entry.submit(batched_wakeup(&REQUEST_EVENTS, WAKEUP_BATCH_BYTES));
    }

    fn turns(
        &mut self,
        conn: &mut Conn,
        side: usize,
        _io: &Io,
        cursor: &mut Cursor,
        _window: &mut [u8; WINDOW],
    ) -> Turn {
        let state = self.state();
        state.cursor = *cursor;
        state.side = side as u64;
        state.turn = TURN_AGAIN;
        changed_elsewhere(conn);
        repeat(MAX_TURNS, MAX_TURNS, mon_frame_turn);
        let state = self.state();
        *cursor = state.cursor;
        match state.turn {
            TURN_DONE => Turn::Done,
            TURN_STOP => Turn::Stop,
            _ => Turn::Again,
        }
    }

    fn scan(
        &mut self,
        conn: &mut Conn,
        _side: usize,
        _window: &[u8; WINDOW],
        got: u32,
    ) -> (u32, Step) {
        let state = self.state();
        state.step = STEP_NEXT;
        state.at = 0;
        state.got = got;
        changed_elsewhere(conn);
        // Each call uses at least one byte, so `got` calls are enough.
        repeat(got, WINDOW as u32, mon_frame_byte);
        let state = self.state();
        match state.step {
            STEP_DONE => (state.used, Step::Done),
            STEP_SKIP => (state.used, Step::Skip),
            _ => (got, Step::Next),
        }
    }
}

/// `conn` is this CPU's working copy (`FrameScratch::conn`), which the global functions
/// reach through the map, not through this reference: without this the compiler could
/// keep its fields in registers across their calls.
#[inline(always)]
fn changed_elsewhere(conn: &mut Conn) {
    core::hint::black_box(conn as *mut Conn);
}

/// Calls `step` with 0, 1, … until it returns non-zero, `count` times at most (and never
/// more than the constant `bound`, which the verifier walks).
#[inline(always)]
fn repeat(count: u32, bound: u32, step: extern "C" fn(u64) -> i64) {
    let mut index = 0;
    while index < bound && index < count {
        if step(u64::from(index)) != 0 {
            break;
        }
        index += 1;
    }
}

// The two global BPF functions (exported by the linker, see build.rs): a verifier checks a
// global function once, on its own, for every argument value and every state of the
// caller, instead of again at each call. Arguments are scalars only, as 5.10's verifier
// requires; everything they work on is in this CPU's `FRAME_SCRATCH` value, where it knows
// no value either.

/// One turn of a read/write (`Conn::turn`): 0 to go on, 1 when it is done with.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_frame_turn(_index: u64) -> i64 {
    let Some(mut wire) = KernelWire::here() else {
        return 1;
    };
    let scratch = wire.scratch;
    // SAFETY: disjoint fields of this CPU's scratch value; `wire` touches only `state`.
    let (conn, window, state) = unsafe {
        (
            &mut (*scratch).conn.conn,
            &mut (*scratch).window,
            &mut (*scratch).state,
        )
    };
    let side = state.side as usize;
    let code = match conn.turn(side, &state.io, &mut state.cursor, window, &mut wire) {
        Turn::Again => return 0,
        Turn::Stop => TURN_STOP,
        Turn::Done => TURN_DONE,
    };
    wire.state().turn = code;
    1
}

/// A run of a window's bytes from the next one (`Conn::step_run`): 0 to go on,
/// 1 to stop (the window is used up, the side skips by count now, or the connection left
/// HTTP).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_frame_byte(_index: u64) -> i64 {
    let Some(mut wire) = KernelWire::here() else {
        return 1;
    };
    let scratch = wire.scratch;
    // SAFETY: disjoint fields of this CPU's scratch value; `wire` touches only `state`.
    let (conn, window) = unsafe { (&mut (*scratch).conn.conn, &(*scratch).window) };
    let state = wire.state();
    let (at, got, side) = (state.at, state.got, state.side as usize);
    if at >= got {
        return 1;
    }
    let (next, step) = conn.step_run(side, window, at, got, &mut wire);
    let code = match step {
        Step::Next => STEP_NEXT,
        Step::Skip => STEP_SKIP,
        Step::Done => STEP_DONE,
    };
    let state = wire.state();
    if code != STEP_NEXT {
        state.used = next;
        state.step = code;
        return 1;
    }
    state.at = next;
    0
}

/// The verdict on a socket from the first bytes of a read/write (`loaded` of them, in this
/// CPU's `FRAME_SCRATCH` window), given its verdict so far: `verdict::HTTP` to frame it from
/// this read/write, else the socket's next verdict. A global BPF function, checked once on
/// its own: inside the framing programs, its branches took the 6.18 verifier past its limit.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_judge(judged: u64, loaded: u64) -> i64 {
    let Some(scratch) = FRAME_SCRATCH.get_ptr(0) else {
        return i64::from(verdict::IGNORE);
    };
    // SAFETY: this CPU's scratch value, whose window the caller just filled.
    let window = unsafe { &(*scratch).window };
    let (judged, loaded) = (judged as u32, loaded as u32);
    let http2 = HTTP2.load() != 0;
    let next = if http2 && monitor_framing::starts_http2(window, loaded) {
        verdict::HTTP2
    } else if judged >= verdict::UPGRADED {
        // Only HTTP/2's prefaces are looked for after an upgrade, twice at most: the
        // server may write its own before it reads the client's.
        if monitor_framing::starts_server_settings(window, loaded) {
            verdict::HTTP2
        } else if judged == verdict::UPGRADED {
            verdict::UPGRADED + 1
        } else {
            verdict::IGNORE
        }
    } else if monitor_framing::starts_request(window, loaded) {
        verdict::HTTP
    } else if REDIS.load() != 0
        && (resp::starts_command(window, loaded) || resp::starts_inline(window, loaded))
    {
        verdict::REDIS
    } else if POSTGRES.load() != 0 && monitor_framing::starts_postgres(window, loaded) {
        verdict::POSTGRES
    } else if DATABASES.load() != 0 && monitor_framing::starts_database(window, loaded) {
        verdict::DATABASE
    } else if http2 && judged == 0 && monitor_framing::looks_like_http2_frame(window, loaded) {
        bump(Counter::Http2Unparseable);
        verdict::IGNORE
    } else {
        verdict::after_miss(judged)
    };
    i64::from(next)
}

/// Frames one socket read or write of `length` bytes, unless the socket was judged not to
/// carry HTTP. `buffer` finds the caller's buffer (address, size); it is asked only for
/// sockets still being framed or judged.
#[inline(always)]
pub fn frame(
    sk: u64,
    owner: Owner,
    family: u16,
    length: u32,
    direction: u32,
    buffer: impl FnOnce() -> Option<UserBuffer>,
) {
    // SAFETY: a copy is taken at once; a concurrent update only makes it stale.
    let mut judged = unsafe { PAYLOAD_SOCKS.get(sk) }.copied().unwrap_or(0);
    if judged == verdict::IGNORE {
        return;
    }
    let who = (sk, owner);
    let Some(user) = buffer() else {
        if judged == verdict::HTTP || judged == verdict::HTTP2 {
            bump(Counter::PayloadUnreadable);
        }
        if judged == verdict::HTTP2 {
            // Bytes moved with no buffer to read (`sendfile`): counted, so that the agent
            // skips them instead of taking what follows for them.
            let nothing = UserBuffer::plain(0, 0);
            copied::capture(true, false, who, (family, direction), length, nothing);
        }
        return;
    };
    if verdict::is_copied(judged) {
        let http2 = judged == verdict::HTTP2;
        copied::capture(http2, false, who, (family, direction), length, user);
        return;
    }
    let (address, size) = (user.address, user.size);
    let readable = size.min(u64::from(length)) as u32;
    let Some(mut wire) = KernelWire::here() else {
        return;
    };
    let scratch = wire.scratch;
    // SAFETY: this CPU's scratch value, a map value the verifier bounds. These programs run
    // in the task's syscall and do not nest; only a fully preemptible kernel (preempt=full)
    // could run another on this CPU meanwhile, garbling this read/write's framing, which
    // then resynchronises at the next message.
    let (window, work) = unsafe { (&mut (*scratch).window, &mut (*scratch).conn) };
    {
        let state = wire.state();
        state.now = 0;
        state.family = family;
        state.sk = sk;
        state.owner = owner;
        state.buffer = address;
        state.vector = user.vector;
        state.pieces = user.pieces;
        state.io = Io {
            direction: direction as u8,
            length,
            readable,
            loaded: 0,
        };
    }
    let mut stored = None;
    if judged == verdict::HTTP {
        // SAFETY: a value of HTTP_CONNS, read for its owner only.
        stored = HTTP_CONNS
            .get_ptr_mut(sk)
            .filter(|entry| unsafe { (**entry).tgid } == owner.tgid);
        if stored.is_none() {
            // Evicted, or the address of a closed socket reused by another process's:
            // judged again from this read/write.
            judged = 0;
        }
    }
    let mut loaded = 0;
    match stored {
        // SAFETY: a value of HTTP_CONNS; a concurrent read/write of the same socket on
        // another CPU (rare: one thread per connection) can only garble that connection's
        // framing, which resynchronises at its next message.
        Some(entry) => unsafe { copy_words(work, entry) },
        None => {
            let want = readable.min(WINDOW as u32);
            if want > 0 {
                loaded = wire.read(0, want, window);
            }
            let next = mon_judge(u64::from(judged), u64::from(loaded)) as u32;
            if next != verdict::HTTP {
                let _ = PAYLOAD_SOCKS.insert(sk, next, BPF_ANY.into());
                if verdict::is_copied(next) {
                    let http2 = next == verdict::HTTP2;
                    // SAFETY: plain reads of this CPU's scratch value, from memory: the
                    // pieces' place was not kept on the stack across the calls above.
                    let user = unsafe {
                        let state = &(*scratch).state;
                        UserBuffer {
                            address,
                            size,
                            vector: core::ptr::read_volatile(&state.vector),
                            pieces: core::ptr::read_volatile(&state.pieces),
                        }
                    };
                    copied::capture(http2, true, who, (family, direction), length, user);
                }
                return;
            }
            // SAFETY: as above; `blank` is never written, so all zeroes.
            unsafe { copy_words(work, &(*scratch).blank) };
            work.tgid = owner.tgid;
            work.conn.begin(direction as u8);
        }
    }
    wire.state().io.loaded = loaded;
    // Read back from the map, so the verifier knows none of its values (see `Scratch`); a
    // volatile read, or the compiler would reuse the values just stored.
    // SAFETY: a plain read of this CPU's scratch value.
    let io = unsafe { core::ptr::read_volatile(&wire.state().io) };
    let (outcome, at) = work.conn.feed(&io, window, &mut wire);
    if outcome == Outcome::Done {
        // An upgrade may be to HTTP/2 (`h2c`): its prefaces come next, the server's maybe
        // in the same read/write as the `101`.
        let mut next = verdict::IGNORE;
        if HTTP2.load() != 0 {
            next = verdict::UPGRADED;
            if at > 0 && at < readable && upgraded_to_http2(&mut wire, window, at) {
                next = verdict::HTTP2;
                let rest = UserBuffer::plain(address + u64::from(at), size - u64::from(at));
                copied::capture(true, true, who, (family, direction), length - at, rest);
            }
        }
        let _ = PAYLOAD_SOCKS.insert(sk, next, BPF_ANY.into());
        if stored.is_some() {
            let _ = HTTP_CONNS.remove(sk);
        }
        return;
    }
    match stored {
        // SAFETY: as above.
        Some(entry) => unsafe { copy_words(entry, work) },
        None => {
            if HTTP_CONNS.insert(sk, work, BPF_ANY.into()).is_err() {
                bump(Counter::HttpConnsFull);
                return;
            }
            let _ = PAYLOAD_SOCKS.insert(sk, verdict::HTTP, BPF_ANY.into());
        }
    }
}

/// Whether the bytes at `at` of a read/write (of its first piece, if vectored), after the
/// `101` that ended its HTTP/1.x, are the server's HTTP/2 preface.
#[inline(always)]
fn upgraded_to_http2(wire: &mut KernelWire, window: &mut [u8; WINDOW], at: u32) -> bool {
    let got = wire.read(at, 9, window);
    monitor_framing::starts_server_settings(window, got)
}
