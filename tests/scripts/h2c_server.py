"""HTTP/2 reached through the `h2c` upgrade (RFC 7540 §3.2), served with hyper-h2.

`python3 h2c_server.py CONNECTIONS`: prints `ready PORT`, then serves CONNECTIONS
connections one after another and exits. Each starts as HTTP/1.1 with `Upgrade: h2c`; the
server answers `101 Switching Protocols`, then its SETTINGS and the upgraded request's
answer (stream 1), then each stream's request. The `101` is a write of its own on the
first, third, … connection, as servers that flush it do; on the others it shares one with
what follows, so that the client reads it all at once. Paths starting `/ok` get 200, any
other 404, with a 3-byte body.
"""
import socket
import sys

import h2.config
import h2.connection
import h2.events


def answer(conn, stream, path):
    status, body = (200, b"ok\n") if path.startswith("/ok") else (404, b"no\n")
    conn.send_headers(
        stream,
        [(":status", str(status)), ("content-length", str(len(body))), ("server", "h2c-test")],
    )
    conn.send_data(stream, body, end_stream=True)


def serve(sock, together):
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            return
        data += more
    head, _ = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    assert headers.get("upgrade") == "h2c", headers
    switching = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    if not together:
        sock.sendall(switching)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_upgrade_connection(headers["http2-settings"])
    answer(conn, 1, path)
    sock.sendall((switching if together else b"") + conn.data_to_send())
    while True:
        data = sock.recv(65536)
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                fields = {name: value for name, value in event.headers}
                target = fields.get(b":path", fields.get(":path", b"/"))
                if isinstance(target, bytes):
                    target = target.decode()
                answer(conn, event.stream_id, target)
            elif isinstance(event, h2.events.ConnectionTerminated):
                sock.sendall(conn.data_to_send())
                return
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def main():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    print("ready", server.getsockname()[1], flush=True)
    for index in range(int(sys.argv[1])):
        sock, _ = server.accept()
        with sock:
            serve(sock, together=index % 2 == 1)


main()
