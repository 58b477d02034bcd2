"""Every refusal carries Trustee's error type and status, says why, crashes nothing and stores
nothing."""
import base64
import http.client
import json
import os
import ssl
import time

import pytest
import requests

import rcar
from conftest import bgcheck_config

ALLOW_ALL = "package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == \"resource\"\n"


def b64url(s: str) -> str:
    return base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode()


@pytest.fixture
def kbs_env(pki, start_kbs, tmp_path):
    storage = tmp_path / "storage"
    kbs = start_kbs(bgcheck_config(pki, storage))
    s = rcar.Session(kbs.url(), pki.tls_cert)
    hdr = {"Authorization": f"Bearer {pki.admin_token()}"}
    assert s.http.post(f"{kbs.url()}/kbs/v0/resource/one/two/three", data=b"top-secret", headers=hdr).status_code == 200
    r = s.http.post(f"{kbs.url()}/kbs/v0/resource-policy", json={"policy": b64url(ALLOW_ALL)}, headers=hdr)
    assert r.status_code == 200, r.text
    return kbs, s, hdr, storage


def snapshot(storage):
    return sorted((str(p.relative_to(storage)), p.read_bytes()) for p in storage.rglob("*") if p.is_file())


def test_roundtrip_with_independent_client(kbs_env):
    kbs, s, _, _ = kbs_env
    key = rcar.TeeKey()
    token = s.handshake(key)
    r = s.resource("one/two/three")
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    assert rcar.decrypt(r.json(), key) == b"top-secret"
    # A nonce is single-use: a second /attest in the session is a replay.
    r = s.attest("ignored", key)
    assert r.status_code == 401 and "replayed /attest" in r.json()["detail"], r.text
    # The token works as a bearer token from a fresh connection.
    fresh = rcar.Session(kbs.url(), s.http.verify)
    r = fresh.resource("one/two/three", bearer=token)
    assert rcar.decrypt(r.json(), key) == b"top-secret"


@pytest.mark.parametrize("version", ["1.0.0", "0.5.0", "0.4", "banana", "", " 0.4.0", "+0.4.0", "0.04.0", "0.4.0-rc1"])
def test_unknown_protocol_version(kbs_env, version):
    _, s, _, _ = kbs_env
    r = s.auth(version=version)
    assert r.status_code == 401 and rcar.error_type(r) == "AttestationError"
    assert "Version Mismatch" in r.json()["detail"]


def test_older_protocol_versions_with_same_shape_accepted(kbs_env):
    _, s, _, _ = kbs_env
    assert s.auth(version="0.1.0").status_code == 200


def test_nonce_mismatch(kbs_env):
    _, s, _, _ = kbs_env
    key = rcar.TeeKey()
    nonce = s.auth().json()["nonce"]
    other = base64.b64encode(os.urandom(32)).decode()
    r = s.attest(other, key, rd=rcar.report_data(other, key.jwk))
    assert r.status_code == 401 and rcar.error_type(r) == "AttestationError"
    assert "nonce" in r.json()["detail"]
    assert nonce != other


def test_report_data_not_binding_the_key(kbs_env):
    _, s, _, _ = kbs_env
    key, other = rcar.TeeKey(), rcar.TeeKey()
    nonce = s.auth().json()["nonce"]
    r = s.attest(nonce, key, rd=rcar.report_data(nonce, other.jwk))
    assert r.status_code == 401 and rcar.error_type(r) == "AttestationError"
    assert "report_data" in r.json()["detail"]


def test_attest_without_session(kbs_env):
    kbs, _, _, _ = kbs_env
    fresh = rcar.Session(kbs.url(), kbs_env[1].http.verify)
    r = fresh.attest("x", rcar.TeeKey())
    assert r.status_code == 401 and rcar.error_type(r) == "AttestationError"
    for forged in ("0" * 32, "v1.AAAA", "v1." + "A" * 120):
        fresh.http.cookies.set("kbs-session-id", forged)
        r = fresh.attest("x", rcar.TeeKey())
        assert r.status_code == 401 and "not issued by this KBS" in r.json()["detail"], r.text
    # A cookie from one KBS means nothing to another.
    other = rcar.Session(kbs.url(), kbs_env[1].http.verify)
    other.auth()
    cookie = other.http.cookies.get("kbs-session-id")
    assert cookie.startswith("v1.")


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


@pytest.mark.skipif(not os.path.exists(FAKETIME_LIB) and not os.environ.get("CI"), reason="libfaketime not installed")
def test_expired_session(pki, tmp_path):
    """The KBS runs with a clock 120x faster (libfaketime): a 1-minute session expires in 0.5 s."""
    import subprocess
    from conftest import BIN, Kbs
    cfg = tmp_path / "kbs.toml"
    cfg.write_text(bgcheck_config(pki, tmp_path / "storage").replace("timeout = 5", "timeout = 1"))
    env = dict(os.environ, LD_PRELOAD=FAKETIME_LIB, FAKETIME="+0 x120", FAKETIME_DONT_RESET="1")
    # Under ASan the sanitizer runtime must otherwise come first in the preload list.
    env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    log = tmp_path / "kbs.log"
    kbs = Kbs.__new__(Kbs)
    kbs.log = log
    kbs.proc = subprocess.Popen([str(BIN / "kbs"), "--config-file", str(cfg)], stdout=subprocess.PIPE,
                                stderr=open(log, "w"), text=True, env=env)
    line = kbs.proc.stdout.readline()
    assert line.startswith("kbs: ready on port "), log.read_text()
    kbs.port = int(line.rsplit(" ", 1)[1])
    try:
        s = rcar.Session(kbs.url(), pki.tls_cert)
        key = rcar.TeeKey()
        nonce = s.auth().json()["nonce"]
        time.sleep(1.0)
        r = s.attest(nonce, key)
        assert r.status_code == 401 and rcar.error_type(r) == "AttestationError"
        assert "expired" in r.json()["detail"]
    finally:
        assert kbs.stop() == 0


def test_token_from_another_kbs(kbs_env, pki, start_kbs, tmp_path):
    kbs, s, hdr, _ = kbs_env
    # A second KBS with an ephemeral signer it does not advertise: its tokens chain to nothing
    # the first KBS trusts.
    cfg = bgcheck_config(pki, tmp_path / "other").replace(
        f'[attestation_service.attestation_token_broker.signer]\nkey_path = "{pki.signer_key}"\ncert_path = "{pki.signer_cert}"\n',
        "")
    other = start_kbs(cfg, name="other")
    key = rcar.TeeKey()
    token = rcar.Session(other.url(), pki.tls_cert).handshake(key)
    r = rcar.Session(kbs.url(), pki.tls_cert).resource("one/two/three", bearer=token)
    assert r.status_code == 401 and rcar.error_type(r) == "TokenVerifierError"
    assert "x5c" in r.json()["detail"]
    # A tampered token from the right KBS is refused too.
    good = rcar.Session(kbs.url(), pki.tls_cert).handshake(key)
    h, p, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["submods"]["cpu0"]["ear.status"] = "affirming"
    forged = h + "." + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + sig
    r = rcar.Session(kbs.url(), pki.tls_cert).resource("one/two/three", bearer=forged)
    assert r.status_code == 401 and rcar.error_type(r) == "TokenVerifierError"


def test_no_token(kbs_env):
    kbs, _, _, _ = kbs_env
    r = rcar.Session(kbs.url(), kbs_env[1].http.verify).resource("one/two/three")
    assert r.status_code == 401 and rcar.error_type(r) == "TokenNotFound"


def test_admin_tokens(kbs_env, pki, tmp_path):
    kbs, s, _, storage = kbs_env
    before = snapshot(storage)
    import subprocess
    other_key = tmp_path / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(other_key)], check=True)
    cases = {
        "forged": pki.admin_token(key=other_key),
        "expired": pki.admin_token(exp_delta=-3600),
        "wrong-role": pki.admin_token(role="auditor"),
        "no-role": pki.admin_token(role=None),
        "garbage": "not.a.jwt",
    }
    for name, token in cases.items():
        hdr = {"Authorization": f"Bearer {token}"}
        r = s.http.post(f"{kbs.url()}/kbs/v0/resource/one/two/three", data=b"overwritten", headers=hdr)
        assert r.status_code == 401, name
        assert rcar.error_type(r) == "AdminAuthInitialization", name
        r = s.http.post(f"{kbs.url()}/kbs/v0/resource-policy", json={"policy": b64url(ALLOW_ALL)}, headers=hdr)
        assert r.status_code == 401 and rcar.error_type(r) == "AdminAuthAccess", name
    r = s.http.post(f"{kbs.url()}/kbs/v0/resource/one/two/three", data=b"x")
    assert r.status_code == 401 and "Authorization" in r.json()["detail"]
    assert snapshot(storage) == before


def test_admin_under_deny_all(pki, start_kbs, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage", admin="DenyAll"))
    s = rcar.Session(kbs.url(), pki.tls_cert)
    hdr = {"Authorization": f"Bearer {pki.admin_token()}"}
    r = s.http.post(f"{kbs.url()}/kbs/v0/resource-policy", json={"policy": b64url(ALLOW_ALL)}, headers=hdr)
    assert r.status_code == 401 and rcar.error_type(r) == "AdminAuthAccess"
    assert "DenyAll" in r.json()["detail"]
    r = s.http.post(f"{kbs.url()}/kbs/v0/resource/a/b/c", data=b"x", headers=hdr)
    assert r.status_code == 401 and rcar.error_type(r) == "AdminAuthInitialization"


def test_policy_deny(kbs_env):
    kbs, s, hdr, _ = kbs_env
    deny = "package policy\ndefault allow := false\n"
    assert s.http.post(f"{kbs.url()}/kbs/v0/resource-policy", json={"policy": b64url(deny)}, headers=hdr).status_code == 200
    s.handshake(rcar.TeeKey())
    r = s.resource("one/two/three")
    assert r.status_code == 401 and rcar.error_type(r) == "PolicyDeny"
    assert "data.policy.allow" in r.json()["detail"]


def raw_request(kbs, ca, method, path, body=b"", headers=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", kbs.port, context=ctx, timeout=20)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.mark.parametrize("path", [
    "/kbs/v0/resource/one/../three",
    "/kbs/v0/resource/one/two/three/four",
    "/kbs/v0/resource/one/two",
    "/kbs/v0/resource/.hidden/two/three",
    "/kbs/v0/resource/one/two/.three",
    "/kbs/v0/resource/one/two/" + "x" * 200,
    "/kbs/v0/resource/one/tw%2Fo/three",
    "/kbs/v0/resource/one/two/th%00ree",
])
def test_bad_resource_ids(kbs_env, pki, path):
    kbs, _, hdr, storage = kbs_env
    before = snapshot(storage)
    for method in ("GET", "POST", "DELETE"):
        status, data = raw_request(kbs, pki.tls_cert, method, path, b"evil", hdr)
        assert status == 404, (method, path, data)
        body = json.loads(data)
        assert body["type"].endswith("/InvalidRequestPath"), body
    assert snapshot(storage) == before


def test_body_over_payload_limit(kbs_env, pki):
    """payload_request_size = 1 (MiB): a larger declared body is refused with 413 before it is read."""
    import socket
    kbs, _, hdr, storage = kbs_env
    before = snapshot(storage)
    ctx = ssl.create_default_context(cafile=str(pki.tls_cert))
    with socket.create_connection(("127.0.0.1", kbs.port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            head = (f"POST /kbs/v0/resource/one/two/big HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: {hdr['Authorization']}\r\nContent-Length: {1024 * 1024 + 1}\r\n\r\n")
            tls.sendall(head.encode() + b"x" * 1024)
            reply = tls.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply
    # Exactly the limit is accepted.
    status, data = raw_request(kbs, pki.tls_cert, "POST", "/kbs/v0/resource/one/two/big", b"x" * (1024 * 1024), hdr)
    assert status == 200, data
    assert snapshot(storage) != before


@pytest.mark.parametrize("body", [b"{", b"[]", b"{\"a\":1,\"a\":2}", b"\xff\xfe", b"", b"{\"version\":" + b"[" * 100 + b"]" * 100 + b"}"])
def test_malformed_json_everywhere(kbs_env, pki, body):
    kbs, s, hdr, storage = kbs_env
    before = snapshot(storage)
    expected = {
        "/kbs/v0/auth": "AttestationError",
        "/kbs/v0/attest": "AttestationError",
        "/kbs/v0/resource-policy": "SerdeError",
        "/kbs/v0/attestation-policy": "SerdeError",
        "/kbs/v0/reference-value": "SerdeError",
    }
    # /attest needs a session cookie to reach the body.
    nonce_resp = s.auth()
    cookie = f"kbs-session-id={s.http.cookies.get('kbs-session-id')}"
    assert nonce_resp.status_code == 200
    for path, variant in expected.items():
        headers = dict(hdr, Cookie=cookie, **{"Content-Type": "application/json"})
        status, data = raw_request(kbs, pki.tls_cert, "POST", path, body, headers)
        assert status == 401, (path, data)
        assert json.loads(data)["type"].endswith("/" + variant), (path, data)
    assert snapshot(storage) == before
    # Still serving.
    assert requests.get(f"{kbs.url()}/healthz", verify=str(pki.tls_cert)).status_code == 200


def test_query_reaches_the_policy_decoded(kbs_env):
    kbs, s, hdr, _ = kbs_env
    policy = ('package policy\nimport rego.v1\ndefault allow := false\n'
              'allow if {\n\tdata.plugin == "resource"\n\tdata.query.purpose == "a b/c"\n}\n')
    assert s.http.post(f"{kbs.url()}/kbs/v0/resource-policy", json={"policy": b64url(policy)},
                       headers=hdr).status_code == 200
    key = rcar.TeeKey()
    s.handshake(key)
    r = s.http.get(f"{kbs.url()}/kbs/v0/resource/one/two/three?purpose=a%20b%2Fc")
    assert r.status_code == 200, r.text
    assert rcar.decrypt(r.json(), key) == b"top-secret"
    r = s.http.get(f"{kbs.url()}/kbs/v0/resource/one/two/three?purpose=other")
    assert r.status_code == 401 and rcar.error_type(r) == "PolicyDeny"
