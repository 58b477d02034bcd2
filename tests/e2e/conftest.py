"""End-to-end fixtures: real `kbs` processes over TLS on loopback, real keys and certificates.

Binaries come from CT_BUILD_DIR (set by ctest). Every KBS is started on port 0 and reports the
port it bound on stdout ("kbs: ready on port N").
"""
import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

BUILD = Path(os.environ.get("CT_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
BIN = BUILD / "bin"

from ci_skips import pytest_runtest_makereport  # noqa: E402,F401 - the hook: a skip fails under CI


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run(cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True, **kw)


class Pki:
    """TLS certificate for 127.0.0.1, a token-signing CA with a P-256 leaf, and admin keys."""

    def __init__(self, d: Path):
        self.dir = d
        self.tls_key, self.tls_cert = d / "tls.key", d / "tls.crt"
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.tls_key, "-out", self.tls_cert, "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        self.ca_key, self.ca_cert = d / "token-ca.key", d / "token-ca.crt"
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2", "-subj", "/CN=coco-trust test token CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        self.signer_key, self.signer_csr, self.signer_cert = d / "token.key", d / "token.csr", d / "token.crt"
        run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.signer_key, "-out", self.signer_csr, "-subj", "/CN=coco-trust test token signer"])
        run(["openssl", "x509", "-req", "-in", self.signer_csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
             "-CAcreateserial", "-out", self.signer_cert, "-days", "2"])
        self.admin_key, self.admin_pub = d / "admin.key", d / "admin.pub"
        run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", self.admin_key])
        run(["openssl", "pkey", "-in", self.admin_key, "-pubout", "-out", self.admin_pub])

    def admin_token(self, role="admin", exp_delta=3600, key=None, iss=None, aud=None):
        """An EdDSA admin JWT like trustee's test Makefile makes."""
        from cryptography.hazmat.primitives import serialization

        key = key or self.admin_key
        priv = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
        now = int(time.time())
        claims = {"iat": now, "exp": now + exp_delta}
        if role is not None:
            claims["role"] = role
        if iss:
            claims["iss"] = iss
        if aud:
            claims["aud"] = aud
        header = b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
        payload = b64url(json.dumps(claims).encode())
        sig = priv.sign(f"{header}.{payload}".encode())
        return f"{header}.{payload}.{b64url(sig)}"


class Kbs:
    def __init__(self, config: Path, log: Path, env=None):
        self.log = log
        self.proc = subprocess.Popen([str(BIN / "kbs"), "--config-file", str(config)], stdout=subprocess.PIPE,
                                     stderr=open(log, "w"), text=True, env=env)
        deadline = time.time() + 20
        line = ""
        while time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith("kbs: ready on port "):
                    break
            if self.proc.poll() is not None:
                raise RuntimeError(f"kbs exited with {self.proc.returncode}: {log.read_text()}")
        else:
            self.proc.kill()
            raise RuntimeError(f"kbs did not start: {log.read_text()}")
        self.port = int(line.rsplit(" ", 1)[1])

    def url(self, scheme="https"):
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start_kbs(tmp_path):
    started = []

    def start(config_text: str, name="kbs", env=None):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(config_text)
        k = Kbs(cfg, tmp_path / f"{name}.log", env=env)
        started.append(k)
        return k

    yield start
    for k in started:
        rc = k.stop()
        assert rc == 0, f"kbs did not shut down cleanly ({rc}): {k.log.read_text()[-2000:]}"


def bgcheck_config(pki: Pki, storage: Path, admin="ed25519", extra=""):
    """The configuration of trustee's kbs/test (background-check KBS), with TLS and an EC token signer."""
    if admin == "ed25519":
        admin_block = f"""[admin]
authorization_mode = "AuthenticatedAuthorization"

[admin.authentication.bearer_jwt]
identity_providers = [{{ public_key_uri = "{pki.admin_pub}" }}]

[admin.authorization.regex_acl]
acls = [{{ role = "admin", allowed_endpoints = "^/kbs/v0/.+$" }}]
"""
    else:
        admin_block = f'[admin]\nauthorization_mode = "{admin}"\n'
    return f"""[http_server]
sockets = ["127.0.0.1:0"]
private_key = "{pki.tls_key}"
certificate = "{pki.tls_cert}"
insecure_http = false
payload_request_size = 1
worker_count = 2

{admin_block}
[attestation_token]
trusted_certs_paths = ["{pki.ca_cert}"]

[attestation_service]
type = "coco_as_builtin"
timeout = 5
enable_sample_tee = true

[attestation_service.attestation_token_broker]
duration_min = 5

[attestation_service.attestation_token_broker.signer]
key_path = "{pki.signer_key}"
cert_path = "{pki.signer_cert}"

[storage_backend]
storage_type = "LocalFs"

[storage_backend.backends.local_fs]
dir_path = "{storage}"

[[plugins]]
name = "resource"
{extra}
"""
