#!/usr/bin/env python3
"""Client moves exactly X bytes each way with a chosen syscall family; server mirrors."""
import ctypes, os, socket, sys, tempfile
def set_comm(n): ctypes.CDLL(None).prctl(15, n.encode(), 0, 0, 0)
mode, host, port, X, how = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
def rx(s, n, how):
    got = 0
    if how == 'splice':
        r, w = os.pipe()
        while got < n:
            k = os.splice(s.fileno(), w, min(65536, n - got)); got += k; os.read(r, k)
        return got
    while got < n:
        if how == 'read': b = os.read(s.fileno(), min(65536, n - got))
        elif how == 'peek':
            s.recv(min(4096, n - got), socket.MSG_PEEK); b = s.recv(min(65536, n - got))
        else: b = s.recv(min(65536, n - got))
        if not b: break
        got += len(b)
    return got
def tx(s, n, how):
    if how == 'sendfile':
        f = tempfile.TemporaryFile(); f.write(b'z' * n); f.flush()
        off = 0
        while off < n: off += os.sendfile(s.fileno(), f.fileno(), off, n - off)
        return off
    if how == 'write':
        buf = memoryview(b'w' * n); off = 0
        while off < n: off += os.write(s.fileno(), buf[off:off + 65536])
        return off
    if how == 'splice':
        r, w = os.pipe(); off = 0
        while off < n:
            k = min(65536, n - off); os.write(w, b'p' * k)
            while k: d = os.splice(r, s.fileno(), k); k -= d; off += d
        return off
    s.sendall(b'y' * n); return n
if mode == 'srv':
    set_comm('spk_bsrv')
    l = socket.socket(fam); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind((host, port)); l.listen(8)
    print('listening', flush=True)
    c, _ = l.accept(); got = rx(c, X, 'recv'); c.sendall(b'x' * X); c.recv(1); c.close(); print('srv got', got, flush=True)
else:
    set_comm('spk_bcli')
    s = socket.socket(fam); s.connect((host, port))
    sent = tx(s, X, how); got = rx(s, X, how)
    s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
    print(f'cli how={how} sent={sent} got={got}', flush=True)
