"""A forwarding proxy on loopback that can rewrite requests on their way to a plain-HTTP KBS.

Used to tamper with the evidence a real client sends (`rewrite(path, body) -> body`) and to
record what each client puts on the wire (method, path, HTTP version, headers and, with `tls`,
the ALPN protocol it negotiated; the proxy offers h2 and http/1.1 as a TLS server behind a
load balancer would).
"""
import http.client
import http.server
import ssl
import threading


class Proxy:
    def __init__(self, upstream_port: int, rewrite=None, tls=None):
        self.upstream_port = upstream_port
        self.rewrite = rewrite
        self.requests = []
        self.errors = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                alpn = self.connection.selected_alpn_protocol() if tls else None
                proxy.requests.append({"method": self.command, "path": self.path,
                                       "version": self.request_version, "alpn": alpn,
                                       "headers": [(k.lower(), v) for k, v in self.headers.items()],
                                       "body": body})
                if proxy.rewrite:
                    try:
                        body = proxy.rewrite(self.path, body)
                    except Exception as e:  # a broken rewrite must fail the test, not hang it
                        proxy.errors.append(repr(e))
                        self.send_error(502, "rewrite failed")
                        return
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("content-length", "connection", "host")}
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                conn.request(self.command, self.path, body=body or None, headers=hdrs)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_DELETE = do_PUT = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.tls = tls
        if tls:  # (certificate, key)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*map(str, tls))
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
