"""A real OCI registry for the image-pull tests: Debian's `docker-registry` (distribution) over
TLS on loopback with token authentication, the token service (a small HTTPS server here that
signs ES256 JWTs with an x5c chain the registry trusts: anonymous callers may pull, the test
user may push), images built as OCI layouts on disk and pushed with the real `skopeo`, and
signatures made with the real `cosign`."""
import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

USER, PASSWORD = "pusher", "s3cret-push"
COSIGN_VERSION = "v2.6.5"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path and tool == "cosign":
        gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True).stdout.strip() \
            if shutil.which("go") else ""
        cand = Path(gopath or "/root/go") / "bin" / "cosign"
        path = str(cand) if cand.exists() else None
    if not path:
        msg = f"{tool} is not installed (scripts/install-deps, scripts/install-test-tools)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


class TokenServer:
    def __init__(self, d: Path, tls_cert: Path, tls_key: Path, service: str):
        self.requests = []
        self.key, self.cert, self.ca = d / "token.key", d / "token.crt", d / "token-ca.crt"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                d / "token-ca.key", "-out", self.ca, "-days", "2", "-subj", "/CN=registry token CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key,
                "-out", d / "token.csr", "-subj", "/CN=registry token signer")
        openssl("x509", "-req", "-in", d / "token.csr", "-CA", self.ca, "-CAkey", d / "token-ca.key",
                "-CAcreateserial", "-out", self.cert, "-days", "2")
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        self.x5c = [base64.b64encode(x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(
            serialization.Encoding.DER)).decode()]
        self.priv = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        self.service = service
        server = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(u.query)
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    u_, _, p_ = base64.b64decode(auth[6:]).decode().partition(":")
                    if (u_, p_) != (USER, PASSWORD):
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = u_
                server.requests.append({"user": user, "scope": q.get("scope", [])})
                tok = server.token(user, q.get("scope", []))
                body = json.dumps({"token": tok, "access_token": tok, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_cert, tls_key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, user, scopes):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        access = []
        for s in scopes:
            for one in s.split(" "):
                parts = one.split(":")
                if len(parts) < 3 or parts[0] != "repository":
                    continue
                name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
                allowed = [a for a in actions if a == "pull" or (user and a in ("push", "delete", "*"))]
                access.append({"type": "repository", "name": name, "actions": allowed})
        now = int(time.time())
        claims = {"iss": "coco-trust test token service", "sub": user or "", "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": b64u(os.urandom(8)), "access": access}
        header = {"typ": "JWT", "alg": "ES256", "x5c": self.x5c}
        signing = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.priv.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def stop(self):
        self.httpd.shutdown()


class Registry:
    """docker-registry over TLS with token auth; `host` is 127.0.0.1:PORT. `plain`: plain http
    and no authentication (a registries.conf `insecure` mirror)."""

    def __init__(self, d: Path, plain=False):
        binary = need("docker-registry")
        self.dir, self.plain = d, plain
        d.mkdir(parents=True, exist_ok=True)
        if plain:
            self._start_plain(binary)
            return
        self.ca, self.ca_key = d / "ca.crt", d / "ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                self.ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=registry test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        self.tls_key, self.tls_cert = d / "tls.key", d / "tls.crt"
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.tls_key,
                "-out", d / "tls.csr", "-subj", "/CN=127.0.0.1")
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("x509", "-req", "-in", d / "tls.csr", "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                "-out", self.tls_cert, "-days", "2", "-extfile", d / "ext.cnf")
        self.tokens = TokenServer(d, self.tls_cert, self.tls_key, "coco-trust-test-registry")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        (d / "config.yml").write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {d / 'storage'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
  tls:
    certificate: {self.tls_cert}
    key: {self.tls_key}
auth:
  token:
    realm: https://127.0.0.1:{self.tokens.port}/token
    service: coco-trust-test-registry
    issuer: coco-trust test token service
    rootcertbundle: {self.tokens.ca}
""")
        self.log = d / "registry.log"
        self.proc = subprocess.Popen([binary, "serve", str(d / "config.yml")], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)
        self.ctx = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"https://{self.host}/v2/", context=self.ctx, timeout=2)
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")
        # skopeo and cosign find the CA here and through SSL_CERT_FILE.
        self.certs_dir = d / "certs.d"
        self.certs_dir.mkdir()
        shutil.copy(self.ca, self.certs_dir / "ca.crt")
        self.bundle = d / "ca-bundle.pem"
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        self.bundle.write_bytes((system.read_bytes() if system.exists() else b"") + self.ca.read_bytes())

    def _start_plain(self, binary):
        d = self.dir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        (d / "config.yml").write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {d / 'storage'}
http:
  addr: 127.0.0.1:{self.port}
""")
        self.log = d / "registry.log"
        self.proc = subprocess.Popen([binary, "serve", str(d / "config.yml")], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if not self.plain:
            self.tokens.stop()

    # --- pushing and copying ---------------------------------------------------------------

    def push_layout(self, layout: Path, ref: str, tag_in_layout="v1"):
        skopeo = need("skopeo")
        r = subprocess.run([skopeo, "copy", "--quiet", "--dest-cert-dir", str(self.certs_dir), "--dest-creds",
                            f"{USER}:{PASSWORD}", f"oci:{layout}:{tag_in_layout}", f"docker://{self.host}/{ref}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr

    def _token(self, repo, actions="pull,push"):
        url = f"https://127.0.0.1:{self.tokens.port}/token?service=coco-trust-test-registry&scope=" + \
              urllib.parse.quote(f"repository:{repo}:{actions}")
        req = urllib.request.Request(url, headers={
            "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
        return json.loads(urllib.request.urlopen(req, context=self.ctx).read())["token"]

    def request(self, method, repo, path, body=None, headers=None):
        if self.plain:
            req = urllib.request.Request(f"http://{self.host}/v2/{repo}/{path}", data=body, method=method,
                                         headers=headers or {})
            with urllib.request.urlopen(req) as r:
                return r.status, dict(r.headers), r.read()
        h = {"Authorization": f"Bearer {self._token(repo)}", **(headers or {})}
        req = urllib.request.Request(f"https://{self.host}/v2/{repo}/{path}", data=body, method=method, headers=h)
        with urllib.request.urlopen(req, context=self.ctx) as r:
            return r.status, dict(r.headers), r.read()

    def mirror_to(self, dst: "Registry", repo, ref):
        """Copies a manifest and its blobs byte for byte (same digest) into `dst` (a mirror)."""
        mt, body = self.manifest(repo, ref)
        m = json.loads(body)
        for desc in [m["config"], *m["layers"]]:
            _, _, data = self.request("GET", repo, f"blobs/{desc['digest']}")
            _, h, _ = dst.request("POST", repo, "blobs/uploads/")
            loc = h["Location"]
            loc = loc + ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(desc["digest"])
            if loc.startswith("/"):
                loc = f"http://{dst.host}{loc}"
            urllib.request.urlopen(urllib.request.Request(loc, data=data, method="PUT", headers={
                "Content-Type": "application/octet-stream"})).read()
        dst.put_manifest(repo, ref, mt, body)

    def manifest(self, repo, ref):
        _, h, body = self.request("GET", repo, f"manifests/{ref}", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"})
        return h.get("Content-Type"), body

    def put_manifest(self, repo, ref, media_type, body):
        return self.request("PUT", repo, f"manifests/{ref}", body=body, headers={"Content-Type": media_type})

    def copy_blob(self, src_repo, dst_repo, digest):
        _, _, data = self.request("GET", src_repo, f"blobs/{digest}")
        status, h, _ = self.request("POST", dst_repo, "blobs/uploads/")
        loc = h["Location"]
        loc = loc + ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(digest)
        if loc.startswith("/"):
            loc = f"https://{self.host}{loc}"
        req = urllib.request.Request(loc, data=data, method="PUT", headers={
            "Authorization": f"Bearer {self._token(dst_repo)}", "Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req, context=self.ctx).read()

    def copy_manifest(self, src_repo, src_ref, dst_repo, dst_ref):
        """Copies a manifest and its blobs (config and layers) to another repository or tag."""
        mt, body = self.manifest(src_repo, src_ref)
        m = json.loads(body)
        if src_repo != dst_repo:
            for desc in [m["config"], *m["layers"]]:
                self.copy_blob(src_repo, dst_repo, desc["digest"])
        self.put_manifest(dst_repo, dst_ref, mt, body)
        return "sha256:" + hashlib.sha256(body).hexdigest()


def oci_layout(d: Path, files: dict, annotations=None, tag="v1", layers=None) -> Path:
    """A one-layer (or `layers`: list of tar.gz blobs) OCI image layout: {path: bytes | ("symlink",
    target) | ("dir",)}."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return "sha256:" + h

    if layers is None:
        layers = [make_layer(files)]
    diff_ids, descs = [], []
    for blob in layers:
        diff_ids.append("sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest())
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(blob),
                      "size": len(blob)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config),
                           "size": len(config)}, "layers": descs}
    if annotations:
        manifest["annotations"] = annotations
    mbytes = json.dumps(manifest).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": put(mbytes), "size": len(mbytes),
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (d / "index.json").write_text(json.dumps(index))
    return d


def make_layer(files: dict, raw_members=None) -> bytes:
    """A gzip tar layer. `raw_members`: extra (TarInfo, data) pairs added verbatim (for hostile
    names that tarfile would otherwise normalise)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, content in files.items():
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if isinstance(content, tuple) and content[0] == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, content[1]
                t.addfile(ti)
            elif isinstance(content, tuple) and content[0] == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(content), 0o755 if name.startswith("bin/") else 0o644
                t.addfile(ti, io.BytesIO(content))
        for ti, data in raw_members or []:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buf.getvalue(), mtime=0)


class Cosign:
    def __init__(self, d: Path, registry: Registry, name="cosign"):
        self.bin = need("cosign")
        v = subprocess.run([self.bin, "version"], capture_output=True, text=True).stdout
        if COSIGN_VERSION not in v:
            msg = f"cosign {COSIGN_VERSION} expected (scripts/install-test-tools), found: {v[-200:]}"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)
        self.dir = d / name
        self.dir.mkdir(parents=True)
        self.registry = registry
        self.env = {**os.environ, "COSIGN_PASSWORD": "test-key-password", "SSL_CERT_FILE": str(registry.bundle),
                    "HOME": str(self.dir), "TUF_ROOT": str(self.dir / "tuf"), "DOCKER_CONFIG": str(self.dir / "docker")}
        (self.dir / "docker").mkdir()
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (self.dir / "docker" / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        r = subprocess.run([self.bin, "generate-key-pair"], cwd=self.dir, env=self.env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        self.key, self.pub = self.dir / "cosign.key", self.dir / "cosign.pub"

    def sign(self, ref_with_digest: str):
        r = subprocess.run([self.bin, "sign", "--yes", "--tlog-upload=false", "--key", str(self.key),
                            ref_with_digest], cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
