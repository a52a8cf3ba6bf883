//! Python scripts the workloads of the kernel matrix and the soak run, with Debian's
//! `python3`: one copy each.

/// Python's http.server, HTTP/1.1 with keep-alive, a thread per connection: 200 on /ok, 404
/// on anything else. It prints its port once listening.
pub const HTTP_SERVER: &str = r#"
import http.server
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
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
