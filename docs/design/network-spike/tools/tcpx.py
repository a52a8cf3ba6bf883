#!/usr/bin/env python3
"""Spike workload: tiny TCP server/client with exact byte counts and optional RST close."""
import ctypes, socket, struct, sys, time, argparse, os

def set_comm(name):
    ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)

def fam(host):
    return socket.AF_INET6 if ':' in host else socket.AF_INET

def linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))

def recv_exact(s, n):
    got = 0
    while got < n:
        b = s.recv(min(65536, n - got))
        if not b: break
        got += len(b)
    return got

def server(a):
    s = socket.socket(fam(a.host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.host, a.port)); s.listen(512)
    print('listening', flush=True)
    n = 0
    while a.count == 0 or n < a.count:
        c, _ = s.accept(); n += 1
        got = recv_exact(c, a.recv) if a.recv else 0
        if a.send: c.sendall(b'x' * a.send)
        if a.recv_all:
            while c.recv(65536): pass
        if a.linger0: linger0(c)
        c.close()
    print('server done', n, flush=True)

def client(a):
    ok = err = 0
    errs = {}
    t0 = time.perf_counter()
    for _ in range(a.count):
        s = socket.socket(fam(a.host), socket.SOCK_STREAM)
        if a.timeout: s.settimeout(a.timeout)
        if a.user_timeout: s.setsockopt(socket.IPPROTO_TCP, 18, a.user_timeout)  # TCP_USER_TIMEOUT ms
        try:
            s.connect((a.host, a.port))
            ok += 1
            if a.send: s.sendall(b'y' * a.send)
            if a.recv: recv_exact(s, a.recv)
            if a.linger0: linger0(s)
        except OSError as e:
            err += 1; errs[e.errno] = errs.get(e.errno, 0) + 1
        s.close()
    dt = time.perf_counter() - t0
    print(f'ok={ok} err={err} errs={errs} secs={dt:.3f} ns_per_conn={dt/a.count*1e9:.0f}', flush=True)

p = argparse.ArgumentParser()
p.add_argument('mode'); p.add_argument('host'); p.add_argument('port', type=int)
p.add_argument('--count', type=int, default=1); p.add_argument('--send', type=int, default=0)
p.add_argument('--recv', type=int, default=0); p.add_argument('--recv-all', action='store_true')
p.add_argument('--linger0', action='store_true'); p.add_argument('--timeout', type=float, default=0)
p.add_argument('--comm', default='')
p.add_argument('--user-timeout', type=int, default=0)
a = p.parse_args()
if a.comm: set_comm(a.comm)
server(a) if a.mode == 'srv' else client(a)
