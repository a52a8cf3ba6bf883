//! Python scripts the workloads of the kernel matrix and the soak run, with Debian's
//! `python3`: one copy each.

/// Python's http.server, HTTP/1.1 with keep-alive, a thread per connection: 200 on /ok, 404
/// on anything else; over TLS (OpenSSL, through Python's `ssl`) when given a certificate and
/// its key (`CERT KEY`). It prints its port once listening.
pub const HTTP_SERVER: &str = r#"
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        status = 200 if self.path == "/ok" else 404
        body = b"ok\n" if status == 200 else b"missing\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) == 3:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A DNS server for a test zone on port 53 of `sys.argv[1]`, over UDP and TCP: names under
/// `ok.test` are answered (NOERROR, no records: the agent reads the RCODE), every other one
/// does not exist (NXDOMAIN). It prints `ready` once listening.
pub const DNS_SERVER: &str = r#"
import socket, struct, sys, threading
address = sys.argv[1]
def answer(query):
    name, at = [], 12
    while query[at]:
        name.append(query[at + 1:at + 1 + query[at]].decode())
        at += 1 + query[at]
    end = at + 5
    rcode = 0 if ".".join(name).endswith("ok.test") else 3
    flags = 0x8400 | 0x0100 | rcode
    return query[:2] + struct.pack(">HHHHH", flags, 1, 0, 0, 0) + query[12:end]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((address, 53))
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((address, 53))
tcp.listen(16)
def serve_tcp():
    while True:
        connection, _ = tcp.accept()
        with connection:
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
                more = connection.recv(4096)
                if not more:
                    break
                data += more
            if len(data) >= 2:
                reply = answer(data[2:])
                connection.sendall(struct.pack(">H", len(reply)) + reply)
threading.Thread(target=serve_tcp, daemon=True).start()
print("ready", flush=True)
while True:
    query, peer = udp.recvfrom(4096)
    udp.sendto(answer(query), peer)
"#;
