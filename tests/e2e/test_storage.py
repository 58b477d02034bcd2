"""Secrets where the pattern keeps them, against real servers started on loopback by services.py:
OpenBao (KV v2 with the pattern's mapping, KV v1 with upstream's layout), PostgreSQL 15 and Redis 7
as the KBS's storage (persistence across restarts, replicas sharing it), their faults, and the
audit log."""
import base64
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import rcar
import requests
from conftest import BIN, Kbs, bgcheck_config, run
from services import openbao, postgres, redis  # noqa: F401  (pytest fixtures)

ALLOW_ALL = "package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == \"resource\"\n"
DENY_ALL = "package policy\nimport rego.v1\ndefault allow := false\n"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def config(pki, storage_toml="", plugin_toml="", top=""):
    """The background-check KBS configuration with another [storage_backend] and resource plugin."""
    text = bgcheck_config(pki, "/nonexistent")
    text = re.sub(r'\[storage_backend\]\nstorage_type = "LocalFs"\n\n\[storage_backend.backends.local_fs\]\n'
                  r'dir_path = "/nonexistent"\n', storage_toml, text)
    text = text.replace('[[plugins]]\nname = "resource"\n', '[[plugins]]\nname = "resource"\n' + plugin_toml)
    return text + top


def pg_storage(pg, session=""):
    return (f'[storage_backend]\nstorage_type = "Postgres"\n{session}\n'
            f'[storage_backend.backends.postgres]\n{pg.toml()}\n')


def redis_storage(rd, session=""):
    return (f'[storage_backend]\nstorage_type = "Redis"\n{session}\n'
            f'[storage_backend.backends.redis]\nurl = "{rd.url}"\n\n')


class Admin:
    def __init__(self, kbs, pki):
        self.url, self.http = kbs.url(), requests.Session()
        self.http.trust_env = False
        self.http.verify = str(pki.tls_cert)
        self.http.headers["Authorization"] = f"Bearer {pki.admin_token()}"

    def post(self, path, **kw):
        return self.http.post(f"{self.url}/kbs/v0/{path}", timeout=30, **kw)

    def get(self, path):
        return self.http.get(f"{self.url}/kbs/v0/{path}", timeout=30)

    def resource(self, path, data: bytes):
        r = self.post(f"resource/{path}", data=data)
        assert r.status_code == 200, r.text

    def policy(self, text):
        r = self.post("resource-policy", json={"policy": b64url(text.encode())})
        assert r.status_code == 200, r.text


def spawn(cfg_text, name, tmp_path) -> Kbs:
    """A KBS this test will SIGKILL (start_kbs insists on a clean exit)."""
    path = tmp_path / f"{name}.toml"
    path.write_text(cfg_text)
    return Kbs(path, tmp_path / f"{name}.log")


def fetch(kbs, pki, path, key=None):
    """A fresh sample attestation, then the resource: (response, TEE key)."""
    key = key or rcar.TeeKey()
    s = rcar.Session(kbs.url(), pki.tls_cert)
    s.handshake(key)
    return s.resource(path), key


def released(kbs, pki, path) -> bytes:
    r, key = fetch(kbs, pki, path)
    assert r.status_code == 200, r.text
    return rcar.decrypt(r.json(), key)


def detail(resp) -> str:
    return resp.json()["detail"]


# --- OpenBao ----------------------------------------------------------------------------------------

def vault_plugin(bao, **extra):
    lines = ['storage_backend_type = "Vault"', f'vault_url = "{bao.addr}"', f'token = "{extra.pop("token", bao.token)}"']
    for k, v in extra.items():
        lines.append(f"{k} = {v}" if isinstance(v, int) else f'{k} = "{v}"')
    return "\n".join(lines) + "\n"


def test_openbao_pattern_flow(openbao, pki, start_kbs):
    """The pattern: `bao kv put secret/hub/kbsres1 key1=.. key2=.. key3=..` (KV v2), then
    kbs:///default/kbsres1/key3 after a sample attestation is key3's bytes."""
    values = {f"key{i}": base64.b64encode(os.urandom(12)).decode() for i in (1, 2, 3)}
    openbao.kv_put("secret/hub/kbsres1", **values)
    kbs = start_kbs(config(pki, plugin_toml=vault_plugin(openbao, kv_version=2, secret_path="hub/{type}",
                                                         secret_field="{tag}")))
    admin = Admin(kbs, pki)
    admin.policy(ALLOW_ALL)
    assert released(kbs, pki, "default/kbsres1/key3") == values["key3"].encode()
    assert released(kbs, pki, "default/kbsres1/key1") == values["key1"].encode()
    # A field that is not there, a secret that is not there: clear errors naming Vault and the path.
    r, _ = fetch(kbs, pki, "default/kbsres1/key9")
    assert r.status_code == 401 and "no field \"key9\" (fields: key1, key2, key3)" in detail(r), r.text
    r, _ = fetch(kbs, pki, "default/nosuch/key1")
    assert "vault: get hub/nosuch: no such secret" in detail(r), r.text
    # Writes through a mapping that shares one secret between resources are refused.
    r = admin.post("resource/default/kbsres1/key1", data=b"x")
    assert r.status_code != 200 and "read-only" in detail(r), r.text
    assert requests.get(f"{kbs.url()}/readyz", verify=str(pki.tls_cert)).status_code == 200


def test_openbao_kv1_upstream_layout_and_errors(openbao, pki, start_kbs, tmp_path):
    """Upstream's configuration unchanged (KV v1, {repo}/{type}/{tag}, field "data"), admin writes
    included; a wrong token and a sealed OpenBao each give a clear error, never the token."""
    openbao.enable_kv1("kv1")
    openbao.kv_put("kv1/default/key/k1", data="written-in-bao")
    kbs = start_kbs(config(pki, plugin_toml=vault_plugin(openbao, mount_path="kv1")))
    admin = Admin(kbs, pki)
    admin.policy(ALLOW_ALL)
    assert released(kbs, pki, "default/key/k1") == b"written-in-bao"
    admin.resource("default/key/k2", b"written-through-the-kbs")
    assert released(kbs, pki, "default/key/k2") == b"written-through-the-kbs"
    assert openbao.cli("kv", "get", "-field=data", "kv1/default/key/k2").stdout.strip() == "written-through-the-kbs"

    wrong = start_kbs(config(pki, plugin_toml=vault_plugin(openbao, mount_path="kv1", token="s.not-the-token")),
                      name="wrong-token")
    Admin(wrong, pki).policy(ALLOW_ALL)
    r, _ = fetch(wrong, pki, "default/key/k1")
    assert r.status_code == 401 and "permission denied (HTTP 403)" in detail(r), r.text
    assert "not-the-token" not in r.text and "not-the-token" not in wrong.log.read_text()

    openbao.seal()
    r, _ = fetch(kbs, pki, "default/key/k1")
    assert "sealed" in detail(r), r.text
    deadline = time.time() + 10
    while requests.get(f"{kbs.url()}/readyz", verify=str(pki.tls_cert)).status_code != 503:
        assert time.time() < deadline, "/readyz did not report the sealed Vault"
        time.sleep(0.3)
    body = requests.get(f"{kbs.url()}/readyz", verify=str(pki.tls_cert)).json()
    assert "Vault" in body["reason"] and "sealed" in body["reason"], body


def test_openbao_tls_with_its_ca(pki, start_kbs, tmp_path_factory):
    """Vault over TLS, trusted through ca_certs (upstream's key)."""
    from services import Missing, OpenBao
    try:
        bao = OpenBao(tmp_path_factory.mktemp("bao-tls"), tls=True)
    except Missing as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    try:
        bao.kv_put("secret/hub/tls", k="over-tls")
        plugin = vault_plugin(bao, kv_version=2, secret_path="hub/{type}", secret_field="{tag}") + \
            f'verify_ssl = true\nca_certs = ["{bao.ca_cert}"]\n'
        kbs = start_kbs(config(pki, plugin_toml=plugin))
        Admin(kbs, pki).policy(ALLOW_ALL)
        assert released(kbs, pki, "default/tls/k") == b"over-tls"
        # Without its CA the server is not trusted.
        plugin = vault_plugin(bao, kv_version=2, secret_path="hub/{type}", secret_field="{tag}")
        untrusting = start_kbs(config(pki, plugin_toml=plugin), name="no-ca")
        Admin(untrusting, pki).policy(ALLOW_ALL)
        r, _ = fetch(untrusting, pki, "default/tls/k")
        assert r.status_code == 401 and "vault: get hub/tls" in detail(r), r.text
    finally:
        bao.stop()


def test_openbao_stall_is_bounded_and_cache(openbao, pki, start_kbs):
    """A stopped (SIGSTOP) OpenBao: the resource GET fails within the timeout while /healthz and
    handshakes go on; it recovers when OpenBao continues. With the cache, reads keep working."""
    openbao.kv_put("secret/hub/stall", k="v1")
    plain = start_kbs(config(pki, plugin_toml=vault_plugin(openbao, kv_version=2, secret_path="hub/{type}",
                                                           secret_field="{tag}", timeout_ms=1500)), name="plain")
    cached = start_kbs(config(pki, plugin_toml=vault_plugin(openbao, kv_version=2, secret_path="hub/{type}",
                                                            secret_field="{tag}", cache_ttl_seconds=60)), name="cached")
    for k in (plain, cached):
        Admin(k, pki).policy(ALLOW_ALL)
    assert released(cached, pki, "default/stall/k") == b"v1"
    openbao.pause()
    try:
        key = rcar.TeeKey()
        s = rcar.Session(plain.url(), pki.tls_cert)
        s.handshake(key)
        results = {}

        def slow_get():
            t0 = time.time()
            results["resp"] = s.resource("default/stall/k")
            results["took"] = time.time() - t0
        t = threading.Thread(target=slow_get)
        t.start()
        time.sleep(0.2)
        # Meanwhile the KBS answers everything that does not need Vault.
        t0 = time.time()
        assert requests.get(f"{plain.url()}/healthz", verify=str(pki.tls_cert)).status_code == 200
        rcar.Session(plain.url(), pki.tls_cert).handshake(rcar.TeeKey())
        assert time.time() - t0 < 1.0
        t.join()
        assert results["resp"].status_code == 401 and "no reply within 1500 ms" in detail(results["resp"])
        assert results["took"] < 4
        assert released(cached, pki, "default/stall/k") == b"v1"  # served from the cache
    finally:
        openbao.resume()
    assert released(plain, pki, "default/stall/k") == b"v1"
    # Stopped for good: refused at once, with the cause.
    openbao.stop()
    t0 = time.time()
    r, _ = fetch(plain, pki, "default/stall/k")
    assert r.status_code == 401 and "vault: get hub/stall" in detail(r) and time.time() - t0 < 3, r.text


# --- PostgreSQL and Redis ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_admin_writes_survive_restart(backend, request, pki, start_kbs, tmp_path):
    svc = request.getfixturevalue(backend)
    storage = pg_storage(svc) if backend == "postgres" else redis_storage(svc)
    cfg = config(pki, storage_toml=storage)
    kbs = start_kbs(cfg, name="first")
    admin = Admin(kbs, pki)
    secret = os.urandom(20)
    admin.resource("default/key/one", secret)
    admin.policy(ALLOW_ALL)
    msg = {"version": "0.1.0", "type": "sample",
           "payload": base64.b64encode(b'{"svn": ["1"], "launch_digest": ["abc"]}').decode()}
    assert admin.post("reference-value", json=msg).status_code == 200
    policy = open(os.path.join(os.path.dirname(__file__), "../../policies/attestation/default_cpu.rego")).read()
    r = admin.post("attestation-policy", json={"policy_id": "default_cpu", "policy": b64url(policy.encode())})
    assert r.status_code == 200, r.text
    assert released(kbs, pki, "default/key/one") == secret
    assert kbs.stop() == 0

    kbs = start_kbs(cfg, name="second")
    admin = Admin(kbs, pki)
    assert released(kbs, pki, "default/key/one") == secret  # resource and allow-all policy kept
    assert admin.get("reference-value/svn").json() == ["1"]
    if backend == "postgres":
        assert "default_cpu" in svc.query("SELECT key FROM attestation_service_policy")
        assert svc.query("SELECT key FROM repository").split() == ["default/key/one"]
    else:
        keys = subprocess.run(["redis-cli", "-u", svc.url, "--scan", "--pattern", "attestation_service_policy:*"],
                              capture_output=True, text=True).stdout
        assert "default_cpu" in keys


@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_three_replicas_share_the_backend(backend, request, pki, start_kbs, tmp_path):
    """/auth on the first replica, /attest on the second, the resource on the third with the
    cookie /attest returned; a replayed /attest is refused on each; SIGKILL of one replica under
    load loses only the requests it was serving."""
    svc = request.getfixturevalue(backend)
    session = 'session_storage_type = "Postgres"' if backend == "postgres" else 'session_storage_type = "Redis"'
    storage = pg_storage(svc, session) if backend == "postgres" else redis_storage(svc, session)
    cfg = config(pki, storage_toml=storage)
    reps = [start_kbs(cfg, name="replica-0")]
    admin = Admin(reps[0], pki)
    admin.resource("default/key/shared", b"one secret, three replicas")
    admin.policy(ALLOW_ALL)
    # They load the stored policy; the third one will be SIGKILLed.
    reps += [start_kbs(cfg, name="replica-1"), spawn(cfg, "replica-2", tmp_path)]

    key = rcar.TeeKey()
    s = rcar.Session(reps[0].url(), pki.tls_cert)
    nonce = s.auth().json()["nonce"]
    s.url = reps[1].url()
    attest = s.attest(nonce, key)
    assert attest.status_code == 200, attest.text
    s.url = reps[2].url()
    r = s.resource("default/key/shared")
    assert r.status_code == 200, r.text
    assert rcar.decrypt(r.json(), key) == b"one secret, three replicas"

    for rep in reps:
        s.url = rep.url()
        r = s.attest(nonce, key)
        assert r.status_code == 401 and "replayed /attest" in detail(r), (rep.url(), r.text)

    # Load on all three; one is killed halfway.
    stop, errors, done = threading.Event(), [], [0, 0, 0]
    killed = threading.Event()

    def worker(i):
        while not stop.is_set():
            rep = reps[i % 3]
            try:
                got = released(rep, pki, "default/key/shared")
                assert got == b"one secret, three replicas"
                done[i % 3] += 1
            except Exception as e:  # noqa: BLE001
                if i % 3 != 2 or not killed.is_set():
                    errors.append((i % 3, repr(e)))
                if i % 3 == 2 and killed.is_set():
                    time.sleep(0.05)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    killed.set()
    reps[2].proc.send_signal(signal.SIGKILL)
    before = list(done)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert done[0] > before[0] and done[1] > before[1], (before, done)
    reps[2].proc.wait()


@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_backend_down_clean_errors_and_recovery(backend, request, pki, start_kbs):
    """PostgreSQL stopped / Redis stalled: resource reads fail with an error naming the backend
    and the operation within the timeout, /readyz says why, /healthz and /auth keep answering;
    everything works again when the server is back, without a KBS restart."""
    svc = request.getfixturevalue(backend)
    bound = "timeout_ms = 1500"
    storage = pg_storage(svc, bound) if backend == "postgres" else redis_storage(svc, bound)
    kbs = start_kbs(config(pki, storage_toml=storage))
    admin = Admin(kbs, pki)
    admin.resource("default/key/k", b"value")
    admin.policy(ALLOW_ALL)
    assert released(kbs, pki, "default/key/k") == b"value"
    key = rcar.TeeKey()
    s = rcar.Session(kbs.url(), pki.tls_cert)
    s.handshake(key)

    # Load through the outage: every answer is the secret or a clean, bounded refusal.
    stop, seen, bad = threading.Event(), {"ok": 0, "refused": 0}, []

    def load():
        ls = rcar.Session(kbs.url(), pki.tls_cert)
        lkey = rcar.TeeKey()
        ls.handshake(lkey)
        while not stop.is_set():
            t0 = time.time()
            resp = ls.resource("default/key/k")
            took = time.time() - t0
            if resp.status_code == 200 and rcar.decrypt(resp.json(), lkey) == b"value":
                seen["ok"] += 1
            elif resp.status_code == 401 and f"{backend}: " in detail(resp) and took < 4:
                seen["refused"] += 1
            else:
                bad.append((resp.status_code, resp.text[:200], round(took, 2)))
    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(0.5)
    if backend == "postgres":
        svc.stop()
    else:
        svc.pause()
    try:
        t0 = time.time()
        r = s.resource("default/key/k")
        took = time.time() - t0
        assert r.status_code == 401 and f"{backend}: get repository/default/key/k" in detail(r), r.text
        assert took < 4, took
        assert "value" not in detail(r)
        assert requests.get(f"{kbs.url()}/healthz", verify=str(pki.tls_cert)).status_code == 200
        assert rcar.Session(kbs.url(), pki.tls_cert).auth().status_code == 200
        deadline = time.time() + 15
        while True:
            ready = requests.get(f"{kbs.url()}/readyz", verify=str(pki.tls_cert))
            if ready.status_code == 503:
                break
            assert time.time() < deadline, "/readyz did not notice"
            time.sleep(0.3)
        assert backend in ready.json()["reason"], ready.text
    finally:
        if backend == "postgres":
            svc.start()
        else:
            svc.resume()
    deadline = time.time() + 15
    while True:
        r = s.resource("default/key/k")
        if r.status_code == 200 or time.time() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 200, r.text
    assert rcar.decrypt(r.json(), key) == b"value"
    time.sleep(0.5)
    stop.set()
    loader.join()
    assert not bad, bad[:3]
    assert seen["refused"] > 0 and seen["ok"] > 0, seen


@pytest.mark.parametrize("backend", ["localfs", "postgres"])
def test_kill_during_writes_leaves_whole_values(backend, request, pki, start_kbs, tmp_path):
    """SIGKILL of the KBS while it writes resources: after a restart every resource reads back
    whole, its old or its new value (rename for LocalFs, one statement for PostgreSQL)."""
    if backend == "postgres":
        storage = pg_storage(request.getfixturevalue("postgres"))
    else:
        storage = (f'[storage_backend]\nstorage_type = "LocalFs"\n\n[storage_backend.backends.local_fs]\n'
                   f'dir_path = "{tmp_path / "storage"}"\n\n')
    cfg = config(pki, storage_toml=storage)
    kbs = spawn(cfg, "victim", tmp_path)
    admin = Admin(kbs, pki)
    admin.policy(ALLOW_ALL)

    def value(name, version):
        body = (f"{name}:{version}:".encode() * 4000)[:100_000 + 37 * version]
        return f"{len(body):08d}".encode() + body

    names = [f"r{i}" for i in range(4)]
    for n in names:
        admin.resource(f"default/kill/{n}", value(n, 0))
    stop = threading.Event()

    def writer(n):
        v = 1
        while not stop.is_set():
            try:
                admin.post(f"resource/default/kill/{n}", data=value(n, v))
            except requests.RequestException:
                return
            v += 1
    threads = [threading.Thread(target=writer, args=(n,)) for n in names]
    for t in threads:
        t.start()
    time.sleep(1.0)
    kbs.proc.send_signal(signal.SIGKILL)
    kbs.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    kbs = start_kbs(cfg, name="restarted")
    for n in names:
        got = released(kbs, pki, f"default/kill/{n}")
        length = int(got[:8])
        assert len(got) == 8 + length, (n, len(got), length)
        version = int(got[8:].split(b":")[1])
        assert got == value(n, version), n
    if backend == "localfs":
        leftovers = [p.name for p in (tmp_path / "storage" / "repository").iterdir() if p.name.startswith(".")]
        # A temporary file from the killed write may remain; it is never read or listed.
        assert len(leftovers) <= len(names)


# --- audit ------------------------------------------------------------------------------------------

def test_audit_log_records_and_verifies(pki, start_kbs, tmp_path):
    log = tmp_path / "audit.jsonl"
    storage = (f'[storage_backend]\nstorage_type = "LocalFs"\n\n[storage_backend.backends.local_fs]\n'
               f'dir_path = "{tmp_path / "storage"}"\n\n')
    kbs = start_kbs(config(pki, storage_toml=storage, top=f'\n[audit]\npath = "{log}"\n'))
    admin = Admin(kbs, pki)
    secret = b"audited-secret-value"
    admin.resource("default/key/audited", secret)              # admin write
    admin.policy(ALLOW_ALL)                                     # admin write
    assert released(kbs, pki, "default/key/audited") == secret  # release
    admin.policy(DENY_ALL)
    r, _ = fetch(kbs, pki, "default/key/audited")               # policy deny
    assert r.status_code == 401
    assert kbs.stop() == 0
    import json
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    events = [(e["event"], e["decision"]) for e in entries]
    assert ("admin-write", "allow") in events
    assert ("resource-release", "allow") in events
    assert ("resource-refusal", "deny") in events
    release = next(e for e in entries if e["event"] == "resource-release")
    assert release["tee"] == "sample" and release["path"] == "/kbs/v0/resource/default/key/audited"
    assert len(release["claims_sha256"]) == 64 and release["tee_key"]
    assert b"audited-secret-value" not in log.read_bytes()
    assert (log.stat().st_mode & 0o777) == 0o600

    ok = run([BIN / "kbs", "audit", "verify", log], check=False)
    assert ok.returncode == 0 and f"{len(lines)} entries, chain intact" in ok.stdout, ok.stderr
    # Edit one line: verify names it.
    edited = list(lines)
    edited[2] = edited[2].replace('"allow"', '"deny"')
    assert edited[2] != lines[2]
    log.write_text("\n".join(edited) + "\n")
    bad = run([BIN / "kbs", "audit", "verify", log], check=False)
    assert bad.returncode == 1 and "line 3 " in bad.stderr and "edited" in bad.stderr, bad.stderr
    # Delete one line: verify names its position.
    log.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    bad = run([BIN / "kbs", "audit", "verify", log], check=False)
    assert bad.returncode == 1 and "line 2:" in bad.stderr and "deleted" in bad.stderr, bad.stderr


# --- replicas without a database --------------------------------------------------------------------

def test_shared_localfs_replicas_and_key_rotation(pki, start_kbs, tmp_path):
    """Two replicas on one LocalFs directory with a shared cookie key: a replayed /attest is refused
    on both (the nonce claim is a link(2) in the shared directory); a replica whose key was rotated
    still opens cookies sealed with the previous key listed in session_previous_key_files."""
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_text(os.urandom(32).hex())
    new.write_text(os.urandom(32).hex())
    shared = (f'[storage_backend]\nstorage_type = "LocalFs"\nsession_storage_type = "Stateless"\n'
              f'session_key_file = "{old}"\n\n[storage_backend.backends.local_fs]\n'
              f'dir_path = "{tmp_path / "shared"}"\n\n')
    a = start_kbs(config(pki, storage_toml=shared), name="a")
    b = start_kbs(config(pki, storage_toml=shared), name="b")
    Admin(a, pki).resource("default/key/k", b"shared-dir")
    Admin(a, pki).policy(ALLOW_ALL)
    key = rcar.TeeKey()
    s = rcar.Session(a.url(), pki.tls_cert)
    nonce = s.auth().json()["nonce"]
    s.url = b.url()
    assert s.attest(nonce, key).status_code == 200
    for k in (a, b):
        s.url = k.url()
        r = s.attest(nonce, key)
        assert r.status_code == 401 and "replayed /attest" in detail(r), r.text
    s.url = a.url()
    r = s.resource("default/key/k")
    assert r.status_code == 200 and rcar.decrypt(r.json(), key) == b"shared-dir", r.text

    # Rotation: c seals with the new key and still accepts the old one; d knows only the new one.
    rotated = shared.replace(f'session_key_file = "{old}"',
                             f'session_key_file = "{new}"\nsession_previous_key_files = ["{old}"]')
    c = start_kbs(config(pki, storage_toml=rotated), name="c")
    d = start_kbs(config(pki, storage_toml=shared.replace(str(old), str(new))), name="d")
    s = rcar.Session(a.url(), pki.tls_cert)
    nonce = s.auth().json()["nonce"]                # sealed with the old key
    s.url = d.url()
    r = s.attest(nonce, key)
    assert r.status_code == 401 and "not issued by this KBS" in detail(r), r.text
    s.url = c.url()
    assert s.attest(nonce, key).status_code == 200


def test_audit_chain_in_redis(redis, pki, start_kbs, tmp_path):
    """[audit] storage = true: the chain lives in the configured backend (here Redis), one per
    replica; `kbs audit verify --config` checks it and names an edited entry."""
    cfg = config(pki, storage_toml=redis_storage(redis), top='\n[audit]\nstorage = true\nreplica = "kbs-a"\n')
    kbs = start_kbs(cfg)
    admin = Admin(kbs, pki)
    admin.resource("default/key/k", b"in-redis")
    admin.policy(ALLOW_ALL)
    assert released(kbs, pki, "default/key/k") == b"in-redis"
    assert kbs.stop() == 0
    path = tmp_path / "kbs.toml"
    ok = run([BIN / "kbs", "audit", "verify", "--config", path], check=False)
    assert ok.returncode == 0 and "3 entries, chain intact" in ok.stdout, ok.stdout + ok.stderr
    cli = ["redis-cli", "-u", redis.url]
    entry = subprocess.run(cli + ["GET", "audit:kbs-a/000000000002"], capture_output=True, text=True).stdout.strip()
    assert '"decision":"allow"' in entry and "in-redis" not in entry
    subprocess.run(cli + ["SET", "audit:kbs-a/000000000002", entry.replace('"allow"', '"deny"')], check=True,
                   capture_output=True)
    bad = run([BIN / "kbs", "audit", "verify", "--config", path, "--replica", "kbs-a"], check=False)
    assert bad.returncode == 1 and "kbs-a/000000000002" in bad.stderr and "edited" in bad.stderr, bad.stderr
