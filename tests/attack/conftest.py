"""The attack suite's fixtures: a Trustee-like KBS (TLS, an EAR signer with a certificate chain,
trusted_certs_paths, LocalFs, AuthenticatedAuthorization admin) that trusts a TEST-ONLY SEV-SNP
root, forged SNP evidence from snp-test-signer, raw HTTP/TLS access, and the state every case
checks before and after its attack (storage bytes, effect counters, the KBS still serving).

Each case records what it expects and what it got through the `attack` fixture; the terminal
summary lists every case with PASS/FAIL, which is what `make attack` prints.
"""
import base64
import hashlib
import importlib.util
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"
SRC = HERE.parents[1]
sys.path.insert(0, str(E2E))
import rcar  # noqa: E402
from ci_skips import fail_skip_under_ci  # noqa: E402

_spec = importlib.util.spec_from_file_location("e2e_fixtures", E2E / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)
BUILD, BIN = e2e.BUILD, e2e.BIN
SIGNER = BUILD / "tests" / "snp-test-signer"
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
# Under ASan (make test-asan) freed memory sits in quarantine: RSS bounds mean nothing there.
SANITIZED = bool(os.environ.get("ASAN_OPTIONS"))

# Reference values that make the forged SNP report (and sample evidence) "affirming" under the
# default attestation policy; the resource policy is the "affirming" preset.
SNP_TCB = (4, 0, 22, 213)            # bootloader, tee, snp, microcode of the good VCEK
SNP_MEASUREMENT = "4d" * 48          # snp_signer_report_defaults
SECRET_PATH = "attack/secret/key"
SECRET = b"attack-suite-top-secret"


def need(path: Path, what: str):
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{what} missing: {path}")
        pytest.skip(f"{what} missing: {path} (build first)")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


# --- the per-case record ------------------------------------------------------------------------

_RESULTS = {}


class Attack:
    """What one case expects and what it observed; refused() asserts Trustee's error shape."""

    def __init__(self, nodeid):
        self.info = _RESULTS.setdefault(nodeid, {"expect": "", "observed": ""})

    def expect(self, text):
        self.info["expect"] = text

    def observed(self, text):
        self.info["observed"] = str(text)[:400]

    def refused(self, resp, status=401, variant=None, detail=None):
        """Asserts a KBS refusal: HTTP status, ErrorInformation type and a detail fragment."""
        text = resp.text if hasattr(resp, "text") else resp
        code = resp.status_code if hasattr(resp, "status_code") else None
        try:
            body = resp.json()
            self.observed(f"{code} {body['type'].rsplit('/', 1)[1]}: {body['detail']}")
        except (ValueError, KeyError, TypeError, AttributeError):
            self.observed(f"{code} {text}")
        assert code == status, f"expected HTTP {status}, got {code}: {text[:500]}"
        if variant:
            assert rcar.error_type(resp) == variant, text[:500]
        if detail:
            assert detail in resp.json()["detail"], text[:500]
        return resp


@pytest.fixture
def attack(request):
    return Attack(request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    fail_skip_under_ci(rep)
    info = _RESULTS.setdefault(item.nodeid, {"expect": "", "observed": ""})
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        if hasattr(rep, "wasxfail"):
            info["outcome"] = "XPASS" if rep.outcome == "passed" else "XFAIL"
            info["why"] = rep.wasxfail
        else:
            info["outcome"] = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[rep.outcome]
        doc = (item.function.__doc__ or "").strip().splitlines()
        info["doc"] = doc[0] if doc else ""
        info["name"] = item.name.removeprefix("test_")


def pytest_terminal_summary(terminalreporter):
    rows = [v for v in _RESULTS.values() if "outcome" in v]
    if not rows:
        return
    tr = terminalreporter
    tr.section(f"attack suite: {len(rows)} cases")
    for r in rows:
        tr.write_line(f"{r['outcome']:<5} {r['name']}: {r['doc']}")
        if r.get("expect"):
            tr.write_line(f"        expected: {r['expect']}")
        if r.get("observed"):
            tr.write_line(f"        observed: {r['observed']}")
        if r.get("why"):
            tr.write_line(f"        pending: {r['why']}")
    counts = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    tr.write_line("attack suite totals: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


# --- forged SNP evidence -------------------------------------------------------------------------


class Snp:
    """TEST-ONLY roots, VCEKs and reports from snp-test-signer. `roots` is what the KBS trusts;
    `evil` is an attacker's own root the KBS does not trust."""

    def __init__(self, d: Path):
        need(SIGNER, "snp-test-signer")
        self.dir, self.evil = d / "roots", d / "evil"
        self._run("init", self.dir)
        self._run("vek", self.dir, "chip0", "--tcb", ",".join(map(str, SNP_TCB)))
        self._run("vek", self.dir, "lowtcb", "--chip-id", "c2" * 64, "--tcb", "3,0,22,213")
        self._run("vek", self.dir, "vlek0", "--vlek")
        self._run("init", self.evil)
        self._run("vek", self.evil, "chip0", "--tcb", ",".join(map(str, SNP_TCB)))
        self.roots_pem = self.dir / "roots.pem"

    @staticmethod
    def _run(*args):
        out = subprocess.run([str(SIGNER), *map(str, args)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def evidence(self, report_data: bytes, vek="chip0", evil=False, chain=True, **opts):
        args = ["report", self.evil if evil else self.dir, vek, "--report-data", report_data.hex()]
        for k, v in opts.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        if not chain:
            args.append("--no-chain")
        return json.loads(self._run(*args))

    def der(self, which: str, evil=False) -> bytes:
        """DER of ASK/ARK/ASVK (roots.pem order)."""
        pem = ((self.evil if evil else self.dir) / "roots.pem").read_text()
        blocks = [b for b in pem.split("-----END CERTIFICATE-----") if "BEGIN" in b]
        i = {"ASK": 0, "ARK": 1, "ASVK": 2}[which]
        return ssl.PEM_cert_to_DER_cert(blocks[i].strip() + "\n-----END CERTIFICATE-----\n")


@pytest.fixture(scope="session")
def snp(tmp_path_factory):
    return Snp(tmp_path_factory.mktemp("snp"))


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return e2e.Pki(tmp_path_factory.mktemp("pki"))


# --- the target KBS ---------------------------------------------------------------------------------


def report_data(nonce: str, jwk: dict, additional: str = "") -> bytes:
    return base64.b64decode(rcar.report_data(nonce, jwk, additional))


def attest_body(nonce, key, primary, init_data=None, additional=""):
    body = {"runtime-data": {"nonce": nonce, "tee-pubkey": key.jwk},
            "tee-evidence": {"primary_evidence": primary, "additional_evidence": additional}}
    if init_data is not None:
        body["init-data"] = {"format": "toml", "body": init_data}
    return body


def sample_evidence(nonce, key, other_key=None):
    return {"svn": "1", "report_data": rcar.report_data(nonce, (other_key or key).jwk)}


def kbs_config(pki, snp, storage: Path, kds_url=None, extra=""):
    """Trustee-like: TLS, an EAR signer with a chain, trusted_certs_paths, LocalFs, authenticated
    admin; SNP evidence chains to the TEST-ONLY root; VCEKs come from the evidence, else from an
    (empty) offline store, else from `kds_url`."""
    offline = storage.parent / (storage.name + "-vcek-store")
    offline.mkdir(parents=True, exist_ok=True)
    sources = f'{{ type = "OfflineStore", path = "{offline}" }}'
    if kds_url:
        sources = f'{{ type = "KDS", base_url = "{kds_url}" }}'
    cfg = e2e.bgcheck_config(pki, storage, extra=extra)
    return cfg.replace("payload_request_size = 1", "payload_request_size = 2").replace(
        "[attestation_service.attestation_token_broker]\n",
        "[attestation_service.verifier_config.snp_verifier]\n"
        f'insecure_test_only_roots = "{snp.roots_pem}"\n'
        f"vcek_sources = [{sources}]\n\n"
        "[attestation_service.attestation_token_broker]\n", 1)


class KbsProc(e2e.Kbs):
    """e2e's Kbs, with a hook run in the child before exec (resource limits)."""

    def __init__(self, config: Path, log: Path, env=None, preexec=None):
        import select
        self.log = log
        self.proc = subprocess.Popen([str(BIN / "kbs"), "--config-file", str(config)], stdout=subprocess.PIPE,
                                     stderr=open(log, "w"), text=True, env=env, preexec_fn=preexec)
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


def start(config_text: str, d: Path, name="kbs", env=None, preexec=None):
    need(BIN / "kbs", "kbs")
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / f"{name}.toml"
    cfg.write_text(config_text)
    return KbsProc(cfg, d / f"{name}.log", env=env, preexec=preexec)


def snapshot(storage: Path):
    if not storage.exists():
        return []
    return sorted((str(p.relative_to(storage)), p.read_bytes()) for p in storage.rglob("*") if p.is_file())


EFFECT_METRICS = ("kbs_resource_reads_total", "kbs_resource_writes_total", "kbs_policy_approvals_total",
                  "kbs_attestation_successes_total", "kbs_attested_sessions", "kbs_nonce_records")


class Target:
    def __init__(self, pki, snp, d: Path, kds_url=None, extra="", env=None, preexec=None):
        self.pki, self.snp, self.dir = pki, snp, d
        self.storage = d / "storage"
        self.kbs = start(kbs_config(pki, snp, self.storage, kds_url=kds_url, extra=extra), d, env=env,
                         preexec=preexec)
        self.url = self.kbs.url()
        self.port = self.kbs.port
        self.admin_hdr = {"Authorization": f"Bearer {pki.admin_token()}"}
        self.provision()

    # -- clients --
    def session(self):
        return rcar.Session(self.url, self.pki.tls_cert)

    def tls_context(self):
        return ssl.create_default_context(cafile=str(self.pki.tls_cert))

    def raw(self, data: bytes, timeout=10.0, read_all=True) -> bytes:
        """Sends raw bytes over TLS and returns what the KBS answers until it closes (or timeout)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            with self.tls_context().wrap_socket(s, server_hostname="127.0.0.1") as t:
                out = b""
                try:
                    t.sendall(data)
                except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                    pass  # closed while we were still sending: read what it said, if anything
                deadline = time.time() + timeout
                while time.time() < deadline:
                    try:
                        chunk = t.recv(65536)
                    except (socket.timeout, ssl.SSLError, ConnectionResetError):
                        break
                    if not chunk:
                        break
                    out += chunk
                    if not read_all and b"\r\n\r\n" in out:
                        head, body = out.split(b"\r\n\r\n", 1)
                        m = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                        if len(body) >= (int(m[0].split(b":")[1]) if m else 0):
                            break
                return out

    def post(self, path, body=None, headers=None, data=None):
        s = self.session()
        return s.http.post(f"{self.url}{path}", json=body, data=data, headers=headers or {})

    def admin_post(self, path, body=None, data=None):
        r = self.post(path, body=body, data=data, headers=self.admin_hdr)
        assert r.status_code == 200, r.text
        return r

    def provision(self):
        self.admin_post(f"/kbs/v0/resource/{SECRET_PATH}", data=SECRET)
        affirming = (SRC / "policies" / "resource" / "affirming.rego").read_bytes()
        self.admin_post("/kbs/v0/resource-policy", {"policy": b64url(affirming)})
        values = {
            "svn": ["1"], "launch_digest": ["abcde"], "major_version": 1, "minimum_minor_version": 1,
            "snp_launch_measurement": [SNP_MEASUREMENT], "snp_bootloader": [SNP_TCB[0]],
            "snp_tee_svn": [SNP_TCB[1]], "snp_snp_svn": [SNP_TCB[2]], "snp_microcode": [SNP_TCB[3]],
        }
        msg = {"version": "0.1.0", "type": "sample",
               "payload": base64.b64encode(json.dumps(values).encode()).decode()}
        self.admin_post("/kbs/v0/reference-value", msg)

    # -- legitimate flows --
    def sample_handshake(self, s=None, key=None):
        s = s or self.session()
        key = key or rcar.TeeKey()
        r = s.auth()
        assert r.status_code == 200, r.text
        nonce = r.json()["nonce"]
        r = s.http.post(f"{self.url}/kbs/v0/attest", json=attest_body(nonce, key, sample_evidence(nonce, key)))
        assert r.status_code == 200, r.text
        return s, key, r.json()["token"]

    def snp_auth(self, s=None, tee="snp"):
        s = s or self.session()
        r = s.auth(tee=tee)
        assert r.status_code == 200, r.text
        return s, r.json()["nonce"]

    def snp_attest(self, s, nonce, key, init_data=None, **ev_opts):
        ev = self.snp.evidence(report_data(nonce, key.jwk), **ev_opts)
        return s.http.post(f"{self.url}/kbs/v0/attest", json=attest_body(nonce, key, ev, init_data=init_data))

    def get_secret(self, s, key, bearer=None):
        r = s.resource(SECRET_PATH, bearer=bearer)
        if r.status_code == 200:
            return rcar.decrypt(r.json(), key)
        return r

    # -- state --
    def metrics(self):
        text = requests.get(f"{self.url}/metrics", verify=str(self.pki.tls_cert), timeout=10).text
        return {line.split()[0]: line.split()[1] for line in text.splitlines()
                if line and not line.startswith("#") and line.startswith(EFFECT_METRICS)}

    def state(self):
        return {"storage": snapshot(self.storage), "metrics": self.metrics()}

    def assert_unchanged(self, before):
        """Nothing stored, no resource read or written, no approval or attestation success, no
        session attested or nonce spent since `before`, and the KBS still serves."""
        assert self.healthy(), "the KBS stopped serving"
        after = self.state()
        assert after["storage"] == before["storage"], "storage changed"
        assert after["metrics"] == before["metrics"], (before["metrics"], after["metrics"])

    def healthy(self, timeout=10):
        try:
            return requests.get(f"{self.url}/healthz", verify=str(self.pki.tls_cert), timeout=timeout).status_code == 200
        except requests.RequestException:
            return False

    def assert_not_attested(self, s):
        """The session did not become attested: its cookie gets no token-backed resource access."""
        r = s.resource(SECRET_PATH)
        assert r.status_code == 401 and rcar.error_type(r) == "TokenNotFound", r.text

    def rss_kb(self):
        with open(f"/proc/{self.kbs.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        return self.kbs.stop()


@pytest.fixture(scope="session")
def target(pki, snp, tmp_path_factory):
    t = Target(pki, snp, tmp_path_factory.mktemp("target"))
    yield t
    rc = t.stop()
    assert rc == 0, f"target KBS did not shut down cleanly ({rc}): {t.kbs.log.read_text()[-2000:]}"


@pytest.fixture
def own_target(pki, snp, tmp_path):
    """A fresh KBS for cases that change its configuration or may take it down."""
    started = []

    def make(**kw):
        t = Target(pki, snp, tmp_path / f"kbs{len(started)}", **kw)
        started.append(t)
        return t

    yield make
    for t in started:
        t.stop()


@pytest.fixture(scope="session")
def other_kbs(pki, snp, tmp_path_factory):
    """A second, independent KBS: its own cookie key and an ephemeral token signer it does not
    advertise through any CA the target trusts."""
    d = tmp_path_factory.mktemp("other")
    cfg = kbs_config(pki, snp, d / "storage").replace(
        f'[attestation_service.attestation_token_broker.signer]\nkey_path = "{pki.signer_key}"\n'
        f'cert_path = "{pki.signer_cert}"\n', "")
    k = start(cfg, d, name="other")
    yield k
    k.stop()
