"""Fixtures for the interop suite: our KBS and the upstream Trustee KBS side by side on loopback,
their clients, a PKI both accept, and a configuration text both read.

Upstream binaries come from CT_UPSTREAM_BIN (set by run_interop.py after unpacking and checking
them); ours from CT_BUILD_DIR/bin. Every server binds port 0: ours prints "kbs: ready on port N",
upstream's actix logs "listening on: 127.0.0.1:N".
"""
import base64
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "e2e"))
import upstream  # noqa: E402
from ci_skips import pytest_runtest_makereport  # noqa: E402,F401 - the hook: a skip fails under CI

BUILD = Path(os.environ.get("CT_BUILD_DIR", HERE.parents[1] / "build"))
BIN = BUILD / "bin"
UP = Path(os.environ.get("CT_UPSTREAM_BIN", BUILD / "upstream"))
VECTORS = Path(os.environ.get("CT_VECTORS_DIR", HERE.parents[2] / "shared" / "vectors"))

# Upstream's Rust binaries: warnings only, no backtraces (their errors are one line each).
UP_ENV = dict(os.environ, RUST_LOG="error", RUST_BACKTRACE="0")


def pytest_configure(config):
    if not (UP / "kbs").exists():
        if not upstream.available():
            pytest.exit("upstream binaries absent (run through run_interop.py)", returncode=77)
        upstream.unpack(BUILD)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run(cmd, check=True, env=None, **kw):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=120, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {out.returncode}\nstdout: {out.stdout[-2000:]}\n"
                             f"stderr: {out.stderr[-3000:]}")
    return out


def openssl(*args):
    run(["openssl", *args])


def token_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class TokenCa:
    """A token-signing CA and its EC P-256 signer; `chain` is leaf + CA (what upstream wants)."""

    def __init__(self, d: Path, name: str):
        d.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca_cert = d / f"{name}-ca.key", d / f"{name}-ca.crt"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2", "-subj", f"/CN={name} token CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        self.key, csr, self.cert = d / f"{name}-signer.key", d / f"{name}-signer.csr", d / f"{name}-signer.crt"
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key,
                "-out", csr, "-subj", f"/CN={name} token signer")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
                "-out", self.cert, "-days", "2")
        self.chain = d / f"{name}-signer-chain.pem"
        self.chain.write_text(self.cert.read_text() + self.ca_cert.read_text())


class Pki:
    """TLS: a test CA and a leaf for 127.0.0.1 (upstream's rustls refuses a CA certificate as the
    server's end-entity). Tokens: one signing CA per KBS implementation, so that passport trust is
    always explicit. Admin: an Ed25519 key and the JWT upstream's kbs-client sends."""

    def __init__(self, d: Path):
        self.dir = d
        self.tls_ca_key, self.tls_ca = d / "tls-ca.key", d / "tls-ca.crt"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.tls_ca_key, "-out", self.tls_ca, "-days", "2", "-subj", "/CN=interop TLS CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        self.tls_key, self.tls_cert = d / "tls.key", d / "tls.crt"
        csr, ext = d / "tls.csr", d / "tls.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.tls_key,
                "-out", csr, "-subj", "/CN=127.0.0.1")
        openssl("x509", "-req", "-in", csr, "-CA", self.tls_ca, "-CAkey", self.tls_ca_key, "-CAcreateserial",
                "-out", self.tls_cert, "-days", "2", "-extfile", ext)
        self.ours = TokenCa(d, "ours")
        self.theirs = TokenCa(d, "upstream")
        self.admin_key, self.admin_pub = d / "admin.key", d / "admin.pub"
        openssl("genpkey", "-algorithm", "ed25519", "-out", self.admin_key)
        openssl("pkey", "-in", self.admin_key, "-pubout", "-out", self.admin_pub)
        self.admin_token_file = d / "admin-token"
        self.admin_token_file.write_text(self.admin_token())
        # TEE keys in the forms upstream's kbs-client reads: RSA PKCS#1, EC P-256/P-521 PKCS#8.
        self.tee_keys = {"rsa": d / "tee-rsa.key", "ec-p256": d / "tee-p256.key", "ec-p521": d / "tee-p521.key"}
        openssl("genrsa", "-traditional", "-out", self.tee_keys["rsa"], "2048")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self.tee_keys["ec-p256"])
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521", "-out", self.tee_keys["ec-p521"])

    def admin_token(self, role="admin", exp_delta=3600):
        """An EdDSA JWT with the issuer/audience/role the shared configuration names."""
        return admin_jwt(self.admin_key, role=role, iss="interop-admin", aud=["kbs"], exp_delta=exp_delta)


def admin_jwt(key_file: Path, role="admin", iss=None, aud=None, exp_delta=3600):
    """The EdDSA admin JWT upstream's kbs-client sends (`--admin-token-file`)."""
    from cryptography.hazmat.primitives import serialization

    priv = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    now = int(time.time())
    claims = {"role": role, "iat": now, "exp": now + exp_delta}
    if iss:
        claims["iss"] = iss
    if aud:
        claims["aud"] = aud
    header = b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{b64url(priv.sign(f'{header}.{payload}'.encode()))}"


def kbs_config(pki: Pki, storage: Path, *, tls=True, signer: TokenCa = None, trusted=(), admin=True,
               attestation=True, extra=""):
    """A KBS configuration both implementations read unchanged (upstream trustee 78962cd schema)."""
    http = (f'private_key = "{pki.tls_key}"\ncertificate = "{pki.tls_cert}"\ninsecure_http = false\n' if tls
            else "insecure_http = true\n")
    if admin:
        admin_block = f"""[admin]
authorization_mode = "AuthenticatedAuthorization"

[admin.authentication.bearer_jwt]
identity_providers = [{{ issuer = "interop-admin", audience = "kbs", public_key_uri = "{pki.admin_pub}" }}]

[admin.authorization.regex_acl]
acls = [{{ role = "admin", allowed_endpoints = "^/kbs/.+$" }}]
"""
    else:
        admin_block = '[admin]\nauthorization_mode = "DenyAll"\n'
    trust = ", ".join(f'"{t.ca_cert}"' for t in trusted)
    token_block = f"[attestation_token]\ntrusted_certs_paths = [{trust}]\n" if trusted else ""
    as_block = ""
    if attestation:
        # The sample TEE is opt-in on ours; upstream ignores the key (and always allows it).
        as_block = f"""[attestation_service]
type = "coco_as_builtin"
enable_sample_tee = true

[attestation_service.attestation_token_broker]
duration_min = 5
"""
        if signer:
            as_block += f"""
[attestation_service.attestation_token_broker.signer]
key_path = "{signer.key}"
cert_path = "{signer.chain}"
"""
        as_block += '\n[attestation_service.rvps_config]\ntype = "BuiltIn"\n'
    return f"""[http_server]
sockets = ["127.0.0.1:0"]
{http}worker_count = 2

{admin_block}
{token_block}
{as_block}
[storage_backend]
storage_type = "LocalFs"

[storage_backend.backends.local_fs]
dir_path = "{storage}"

[[plugins]]
name = "resource"
storage_backend_type = "kvstorage"
{extra}"""


class Server:
    kind = "?"

    def __init__(self, config: Path, log: Path, tls: bool, cwd=None, prefix=()):
        self.config, self.log, self.tls = config, log, tls
        self.prefix = list(prefix)  # e.g. nsenter into a private network namespace
        self.proc = None
        self.port = None
        self._start(cwd)

    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class OurKbs(Server):
    kind = "ours"

    def _start(self, cwd):
        self.proc = subprocess.Popen([*self.prefix, str(BIN / "kbs"), "--config-file", str(self.config)],
                                     stdout=subprocess.PIPE,
                                     stderr=open(self.log, "w"), text=True, cwd=cwd)
        deadline = time.time() + 30
        while time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith("kbs: ready on port "):
                    self.port = int(line.rsplit(" ", 1)[1])
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"our kbs exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
        self.proc.kill()
        raise RuntimeError(f"our kbs did not start: {self.log_text()[-3000:]}")


class UpstreamKbs(Server):
    kind = "upstream"

    def _start(self, cwd):
        env = dict(os.environ, RUST_LOG="warn,actix_server=info", RUST_BACKTRACE="0", NO_COLOR="1")
        self.proc = subprocess.Popen([*self.prefix, str(UP / "kbs"), "--config-file", str(self.config)],
                                     stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, env=env, cwd=cwd)
        deadline = time.time() + 30
        while time.time() < deadline:
            m = re.search(r"listening on: [0-9.]+:(\d+)", self.log_text())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"upstream kbs exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError(f"upstream kbs did not start: {self.log_text()[-3000:]}")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


class Servers:
    """Starts KBSes of either kind; stops them all at teardown and checks ours exits cleanly."""

    def __init__(self, d: Path):
        self.dir = d
        self.started = []
        self.n = 0

    def start(self, kind, config_text, tls=True, cwd=None, prefix=()):
        self.n += 1
        cfg = self.dir / f"{kind}-{self.n}.toml"
        cfg.write_text(config_text)
        cls = OurKbs if kind == "ours" else UpstreamKbs
        s = cls(cfg, self.dir / f"{kind}-{self.n}.log", tls, cwd=cwd, prefix=prefix)
        self.started.append(s)
        return s

    def stop_all(self):
        bad = []
        for s in self.started:
            rc = s.stop()
            if s.kind == "ours" and rc != 0:
                bad.append(f"our kbs exited {rc}: {s.log_text()[-2000:]}")
        self.started = []
        assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    s = Servers(tmp_path_factory.mktemp("servers"))
    yield s
    s.stop_all()


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (swtpm's TCTI expects its control channel on p + 1)."""
    import socket
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        try:
            c = socket.socket()
            c.bind(("127.0.0.1", port + 1))
            c.close()
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for swtpm")


@pytest.fixture(scope="module")
def swtpm(tmp_path_factory):
    """A software TPM on loopback with an RSA AK persisted at 0x81010002 (our attester's default)."""
    import shutil
    if not shutil.which("swtpm") or not shutil.which("tpm2_createprimary"):
        if os.environ.get("CI"):
            pytest.fail("swtpm / tpm2-tools missing under CI")
        pytest.skip("swtpm or tpm2-tools not installed")
    d = tmp_path_factory.mktemp("swtpm")
    port = _free_port_pair()
    (d / "state").mkdir()
    proc = subprocess.Popen(["swtpm", "socket", "--tpm2", "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1", "--flags",
                             "not-need-init,startup-clear", "--tpmstate", f"dir={d / 'state'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tcti = f"swtpm:host=127.0.0.1,port={port}"
    env = {**os.environ, "TPM2TOOLS_TCTI": tcti}
    try:
        for _ in range(50):
            if subprocess.run(["tpm2_getrandom", "4"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
        run(["tpm2_createprimary", "-Q", "-C", "o", "-G", "rsa2048:rsassa-sha256:null", "-a", attrs, "-c",
             d / "ak.ctx"], env=env)
        run(["tpm2_evictcontrol", "-Q", "-C", "o", "-c", d / "ak.ctx", "0x81010002"], env=env)
        run(["tpm2_flushcontext", "-t"], env=env)
        yield tcti
    finally:
        proc.terminate()
        proc.wait(10)


def up_client(kbs, pki, *args, check=True, url=None):
    """Upstream's kbs-client against `kbs` (its TLS root given when the KBS speaks TLS)."""
    cert = ["--cert-file", pki.tls_ca] if kbs.tls else []
    return run([UP / "kbs-client", "--url", url or kbs.url(), *cert, *args], check=check, env=UP_ENV)


def up_admin(kbs, pki, *args, check=True):
    return up_client(kbs, pki, "config", "--admin-token-file", pki.admin_token_file, *args, check=check)


def our_client(kbs, pki, *args, check=True, url=None):
    cert = ["--cert-file", pki.tls_ca] if kbs.tls else []
    return run([BIN / "kbs-client", "--url", url or kbs.url(), *cert, *args], check=check)


def our_admin(kbs, pki, *args, check=True):
    return our_client(kbs, pki, "config", "--admin-token-file", pki.admin_token_file, *args, check=check)


def attester(kbs, pki, *args, check=True, url=None):
    cert = ["--cert-file", pki.tls_ca] if kbs.tls else []
    return run([UP / "trustee-attester", "--url", url or kbs.url(), *cert, *args], check=check, env=UP_ENV)


def up_error(out) -> str:
    """The error line upstream's Rust clients end with ("Error: ...")."""
    lines = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    return lines[-1] if lines else out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""


def pytest_terminal_summary(terminalreporter):
    """The verifier-parity table: every case with both verdicts and what was compared."""
    mod = sys.modules.get("test_verifier_parity")
    rows = getattr(mod, "PARITY", None)
    if not rows:
        return
    tr = terminalreporter
    tr.section("verifier parity: ours (kbs verify) vs upstream-claims (trustee deps/verifier)")
    same = sum(1 for r in rows if r[1] == r[2])
    tr.write_line(f"{len(rows)} cases: {sum(1 for r in rows if r[1] == r[2] == 'accept')} accepted by both "
                  f"(claims identical), {sum(1 for r in rows if r[1] == r[2] == 'refuse')} refused by both, "
                  f"{len(rows) - same} documented differences")
    for case, ours, up, note in rows:
        tr.write_line(f"  {case:44} ours={ours:6} upstream={up:6} {str(note)[:90]}")
