//! HTTP/1.x framed in the kernel: `monitor-framing` run on each socket read and write of a
//! connection that starts like HTTP, with one `REQUEST_EVENTS` record per completed request.
//! No payload byte leaves the kernel, and a body is skipped by count, never copied.
//!
//! Called by `socket_io` instead of `payload::capture` from the `_framed` programs, which
//! need `bpf_loop` (5.17+): the turns of a read/write and the bytes of each window are
//! `bpf_loop` callbacks (`turn`, `scan_byte`), so the verifier checks a turn and a byte's
//! step once each instead of walking every byte of an unrolled window. A verifier without
//! `bpf_loop` refuses the programs and the agent attaches the copying ones instead, with the
//! parsing in user space.
//!
//! A socket is judged on its first reads/writes (`monitor_framing::starts_request`), with
//! the same per-socket verdicts as payload capture: a few that start no request, and it
//! costs one hash lookup per call from then on; so does one that leaves HTTP (an upgrade,
//! a tunnel), whose framing state is dropped.
use core::ffi::c_void;

use aya_ebpf::{bindings::BPF_ANY, helpers::generated::bpf_loop};
use monitor_common::{Counter, Owner, RequestEvent, capacity::REQUEST_TEXT};
use monitor_framing::{
    Conn, Cursor, Io, MAX_TURNS, Outcome, Pending, Step, Turn, WINDOW, Wire, verdict,
};

use crate::{
    maps::{
        FRAME_SCRATCH, FrameScratch, HTTP_CONNS, PAYLOAD_SOCKS, REQUEST_EVENTS, Scratch,
        batched_wakeup, bump,
    },
    payload,
    sock::{local_port, now_ns, remote},
};

const _: () = assert!(monitor_framing::TEXT_CAP == REQUEST_TEXT);

/// About 500 requests per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 64 * 1024;

const STEP_NEXT: u8 = 0;
const STEP_SKIP: u8 = 1;
const STEP_DONE: u8 = 2;
const TURN_AGAIN: u8 = 0;
const TURN_STOP: u8 = 1;
const TURN_DONE: u8 = 2;

/// The framing's side of one read/write: where its bytes are, and whose they are.
struct KernelWire {
    /// The caller's buffer (user memory).
    buffer: u64,
    owner: Owner,
    sk: u64,
    /// This CPU's `FRAME_SCRATCH` value.
    scratch: *mut FrameScratch,
}

impl KernelWire {
    fn state(&mut self) -> &mut Scratch {
        // SAFETY: this CPU's scratch value (see `frame`).
        unsafe { &mut (*self.scratch).state }
    }
}

impl Wire for KernelWire {
    fn read(&mut self, offset: u32, len: u32, window: &mut [u8; WINDOW]) -> u32 {
        let mut size = u64::from(len);
        // SAFETY: `window` holds WINDOW bytes; the helper checks the user address and fails
        // instead of faulting.
        let failed = unsafe {
            payload::copy_prefix::<WINDOW>(
                window.as_mut_ptr(),
                &mut size,
                self.buffer + u64::from(offset),
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
        let family = self.state().family;
        let event = entry.as_mut_ptr();
        // SAFETY: `event` points to a reserved ring-buffer record of the right size; every
        // field is written before it is submitted.
        unsafe {
            (*event).owner = self.owner;
            (*event).sk = self.sk;
            (*event).start_ns = request.start_ns;
            (*event).end_ns = end_ns;
            (*event).remote = remote(self.sk, family);
            (*event).local_port = local_port(self.sk);
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
        window: &mut [u8; WINDOW],
    ) -> Turn {
        let state = self.state();
        state.cursor = *cursor;
        state.side = side as u64;
        state.turn = TURN_AGAIN;
        Loops {
            conn,
            window,
            wire: self,
        }
        .run(MAX_TURNS, turn);
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
        window: &[u8; WINDOW],
        got: u32,
    ) -> (u32, Step) {
        let state = self.state();
        state.step = STEP_NEXT;
        state.at = 0;
        state.got = got;
        Loops {
            conn,
            window: (window as *const [u8; WINDOW]).cast_mut(),
            wire: self,
        }
        .run(got, scan_byte);
        let state = self.state();
        match state.step {
            STEP_DONE => (state.used, Step::Done),
            STEP_SKIP => (state.used, Step::Skip),
            _ => (got, Step::Next),
        }
    }
}

/// What the `bpf_loop` callbacks work on: pointers only (the rest is in `Scratch`), as the
/// verifier passes a callback only this struct's address.
struct Loops {
    conn: *mut Conn,
    window: *mut [u8; WINDOW],
    wire: *mut KernelWire,
}

impl Loops {
    /// Calls `callback` with these pointers, `count` times at most (`bpf_loop`): until it
    /// returns 1.
    #[inline(always)]
    fn run(mut self, count: u32, callback: extern "C" fn(u64, *mut c_void) -> i64) {
        // SAFETY: `callback` has the type bpf_loop calls (inlined here, the verifier sees
        // the function itself), and `self` outlives the call on this stack.
        unsafe {
            bpf_loop(
                count,
                callback as *mut c_void,
                (&mut self as *mut Loops).cast(),
                0,
            )
        };
    }

    /// # Safety
    /// `ctx` is the `Loops` a `bpf_loop` call was given, alive on its caller's stack.
    unsafe fn from<'a>(
        ctx: *mut c_void,
    ) -> (&'a mut Conn, &'a mut [u8; WINDOW], &'a mut KernelWire) {
        // SAFETY: by the caller; its pointers are to map values and a stack local of the
        // program, all alive for the call.
        unsafe {
            let loops = &*ctx.cast::<Loops>();
            (&mut *loops.conn, &mut *loops.window, &mut *loops.wire)
        }
    }
}

/// One turn of a read/write: 0 to go on, 1 when it is done with.
#[inline(never)]
extern "C" fn turn(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `Loops` that `KernelWire::turns` gave it.
    let (conn, window, wire) = unsafe { Loops::from(ctx) };
    // SAFETY: this CPU's scratch value, apart from the window and the connection.
    let state = unsafe { &mut (*wire.scratch).state };
    let side = state.side as usize;
    let io = &state.io;
    let cursor = &mut state.cursor;
    // SAFETY: `io` and `cursor` are fields of the scratch value that `turn` only reads or
    // that no one else touches during the call.
    let (io, cursor) = unsafe { (&*(io as *const Io), &mut *(cursor as *mut Cursor)) };
    let code = match conn.turn(side, io, cursor, window, wire) {
        Turn::Again => return 0,
        Turn::Stop => TURN_STOP,
        Turn::Done => TURN_DONE,
    };
    wire.state().turn = code;
    1
}

/// One byte of a window, and the rest of its line where the state ignores it: 0 to go on,
/// 1 to stop (the window is used up, the side skips by count now, or the connection left
/// HTTP). Each call uses at least one byte, so `got` calls are enough.
#[inline(never)]
extern "C" fn scan_byte(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `Loops` that `KernelWire::scan` gave it.
    let (conn, window, wire) = unsafe { Loops::from(ctx) };
    let state = wire.state();
    let (at, got, side) = (state.at, state.got, state.side as usize);
    if at >= got {
        return 1;
    }
    let byte = window[at as usize & (WINDOW - 1)];
    let code = match conn.step_stored(side, byte, wire) {
        Step::Next => STEP_NEXT,
        Step::Skip => STEP_SKIP,
        Step::Done => STEP_DONE,
    };
    let state = wire.state();
    if code != STEP_NEXT {
        state.used = at + 1;
        state.step = code;
        return 1;
    }
    state.at = if conn.waits_for_line_end(side) {
        monitor_framing::line_end(window, at + 1, got)
    } else {
        at + 1
    };
    0
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
    buffer: impl FnOnce() -> Option<(u64, u64)>,
) {
    // SAFETY: a copy is taken at once; a concurrent update only makes it stale.
    let mut judged = unsafe { PAYLOAD_SOCKS.get(sk) }.copied().unwrap_or(0);
    if judged == verdict::IGNORE {
        return;
    }
    let Some((address, size)) = buffer() else {
        if judged == verdict::HTTP {
            bump(Counter::PayloadUnreadable);
        }
        return;
    };
    let Some(scratch) = FRAME_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch value, a map value the verifier bounds. These programs run
    // in the task's syscall and do not nest; only a fully preemptible kernel (preempt=full)
    // could run another on this CPU meanwhile, garbling this read/write's framing, which
    // then resynchronises at the next message.
    let window = unsafe { &mut (*scratch).window };
    // SAFETY: as above; never written, so all zeroes.
    let blank = unsafe { &(*scratch).blank };
    let readable = size.min(u64::from(length)) as u32;
    let mut wire = KernelWire {
        buffer: address,
        owner,
        sk,
        scratch,
    };
    {
        let state = wire.state();
        state.now = 0;
        state.family = family;
        state.io = Io {
            direction: direction as u8,
            length,
            readable,
            loaded: 0,
        };
    }
    let mut conn = None;
    if judged == verdict::HTTP {
        // SAFETY: a value of HTTP_CONNS, read for its owner only.
        conn = HTTP_CONNS
            .get_ptr_mut(sk)
            .filter(|entry| unsafe { (**entry).tgid } == owner.tgid);
        if conn.is_none() {
            // Evicted, or the address of a closed socket reused by another process's:
            // judged again from this read/write.
            judged = 0;
        }
    }
    let mut loaded = 0;
    let conn = match conn {
        Some(conn) => conn,
        None => {
            let want = readable.min(WINDOW as u32);
            if want > 0 {
                loaded = wire.read(0, want, window);
            }
            if !monitor_framing::starts_request(window, loaded) {
                let _ = PAYLOAD_SOCKS.insert(sk, verdict::after_miss(judged), BPF_ANY.into());
                return;
            }
            if HTTP_CONNS.insert(sk, blank, BPF_ANY.into()).is_err() {
                bump(Counter::HttpConnsFull);
                return;
            }
            let Some(conn) = HTTP_CONNS.get_ptr_mut(sk) else {
                return;
            };
            // SAFETY: a map value just created, all zeroes.
            unsafe {
                (*conn).tgid = owner.tgid;
                (*conn).conn.begin(direction as u8);
            }
            let _ = PAYLOAD_SOCKS.insert(sk, verdict::HTTP, BPF_ANY.into());
            conn
        }
    };
    wire.state().io.loaded = loaded;
    // Read back from the map, so the verifier knows none of its values (see `Scratch`); a
    // volatile read, or the compiler would reuse the values just stored.
    // SAFETY: a plain read of this CPU's scratch value.
    let io = unsafe { core::ptr::read_volatile(&wire.state().io) };
    // SAFETY: a value of HTTP_CONNS; a concurrent read/write of the same socket on another
    // CPU (rare: one thread per connection) can only garble that connection's framing,
    // which resynchronises at its next message.
    let outcome = unsafe { &mut (*conn).conn }.feed(&io, window, &mut wire);
    if outcome == Outcome::Done {
        let _ = PAYLOAD_SOCKS.insert(sk, verdict::IGNORE, BPF_ANY.into());
        let _ = HTTP_CONNS.remove(sk);
    }
}
