"""HTTP-layer attacks: resource path traversal and encodings, symlinks in storage, oversized
headers, bodies and JSON, request smuggling."""
import json
import os
import socket
import ssl
import time
from pathlib import Path

import pytest

import rcar
from conftest import SECRET, SECRET_PATH, b64url

def status_of(out: bytes) -> str:
    return out.split(b" ", 2)[1].decode() if out.startswith(b"HTTP/1.") else "closed"


def exchange(target, method, path, body=b"", headers=None):
    hdrs = {"Host": "127.0.0.1", "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    out = target.raw(head.encode() + body, read_all=False)
    body_at = out.find(b"\r\n\r\n")
    return status_of(out), out[body_at + 4:] if body_at >= 0 else b""


TRAVERSAL = [
    "/kbs/v0/resource/../../../../etc/passwd",
    "/kbs/v0/resource/attack/../key",
    "/kbs/v0/resource/attack/secret/..%2F..%2F..%2Fetc%2Fpasswd",
    "/kbs/v0/resource/%2e%2e/%2e%2e/passwd",
    "/kbs/v0/resource/attack/secret/%2e%2e",
    "/kbs/v0/resource/attack/secret/.key",
    "/kbs/v0/resource/attack/secret/..%5c..%5cetc",
    "/kbs/v0/resource/attack/secret/key%00.txt",
    "/kbs/v0/resource/%252e%252e/%252e%252e/passwd",
    "/kbs/v0/resource/attack/secret/key/extra",
    "/kbs/v0/resource/attack%2Fsecret%2Fkey%2Fextra",
    "/kbs/v0/resource//secret/key",
]


@pytest.mark.parametrize("path", TRAVERSAL, ids=[f"p{i}" for i in range(len(TRAVERSAL))])
def test_path_traversal(target, attack, path):
    """Resource paths that escape the repository, hide files or smuggle separators and NULs."""
    attack.expect("404 InvalidRequestPath for GET, POST and DELETE; storage untouched")
    before = target.state()
    s, key, token = target.sample_handshake()
    before = target.state()
    seen = []
    for method in ("GET", "POST", "DELETE"):
        hdrs = dict(target.admin_hdr) if method != "GET" else {"Authorization": f"Bearer {token}"}
        status, body = exchange(target, method, path, b"evil", hdrs)
        seen.append(status)
        assert status == "404", (method, path, status, body[:300])
        assert json.loads(body)["type"].endswith("/InvalidRequestPath"), body
    attack.observed(f"{'/'.join(seen)} InvalidRequestPath: {json.loads(body)['detail'][:120]}")
    target.assert_unchanged(before)


def test_encoded_separators_reach_nothing_else(target, attack):
    """%2F-encoded separators: the decoded path is the only resource they can name."""
    attack.expect("the same secret as the plain path, nothing new stored")
    s, key, token = target.sample_handshake()
    before = target.state()
    for path in ("attack%2Fsecret%2Fkey", "attack/secret%2Fkey", "%61ttack/secret/key"):
        r = s.http.get(f"{target.url}/kbs/v0/resource/{path}")
        assert r.status_code == 200 and rcar.decrypt(r.json(), key) == SECRET, (path, r.text)
    after = target.state()
    assert after["storage"] == before["storage"]
    attack.observed("200 with the same secret each time; storage unchanged")


@pytest.mark.parametrize("path", ["/kbs/v0/resource/%c0%ae%c0%ae/a/b", "/kbs/v0/%ff"], ids=["overlong", "ff"])
def test_path_invalid_utf8(target, attack, path):
    """A path that percent-decodes to invalid UTF-8."""
    attack.expect("4xx with a JSON error body naming the path (not a bare 500)")
    before = target.state()
    status, body = exchange(target, "GET", path)
    attack.observed(f"{status} {body[:160]!r}")
    assert status in ("400", "404") and "UTF-8" in json.loads(body)["detail"], (status, body)
    target.assert_unchanged(before)


def test_symlink_in_storage(own_target, attack, tmp_path):
    """A symlink planted in the storage directory (by another local user) pointing outside it:
    GET must not serve the outside file, PUT must not write through it."""
    attack.expect("GET refused (not a regular file / symlink); PUT does not touch the outside file")
    t = own_target()
    # World-readable and -writable, so that only the KBS's own refusal (not the uid it serves
    # as) can keep it from following the links.
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="kbs-attack-outside-"))
    base.chmod(0o755)
    outside = base / "outside"
    outside.write_bytes(b"host-file-not-a-secret")
    outside.chmod(0o666)
    repo = t.storage / "repository"
    (repo / "attack\\x2Fsecret\\x2Flink").symlink_to(outside)
    evil_dir = base / "evil-dir"
    evil_dir.mkdir()
    evil_dir.chmod(0o777)
    s, key, _ = t.sample_handshake()
    r = s.resource("attack/secret/link")
    attack.observed(f"GET {r.status_code} {r.text[:300]}")
    assert r.status_code != 200 or rcar.decrypt(r.json(), key) != outside.read_bytes(), "served the symlink target"
    r = s.http.post(f"{t.url}/kbs/v0/resource/attack/secret/link", data=b"overwrite", headers=t.admin_hdr)
    assert outside.read_bytes() == b"host-file-not-a-secret", "wrote through the symlink"
    # A symlinked namespace directory.
    os.rename(repo, t.storage / "repository.real")
    repo.symlink_to(evil_dir)
    r = s.http.post(f"{t.url}/kbs/v0/resource/a/b/c", data=b"x", headers=t.admin_hdr)
    try:
        assert list(evil_dir.iterdir()) == [], "wrote into the symlinked directory"
        assert r.status_code != 200
    finally:
        import shutil
        shutil.rmtree(base)


def test_oversized_header(target, attack):
    """One 64 KiB header line."""
    attack.expect("400 before the handler; the KBS keeps serving")
    before = target.state()
    status, _ = exchange(target, "GET", "/healthz", headers={"X-Big": "A" * (64 << 10)})
    attack.observed(status)
    assert status in ("400", "413", "431", "closed")
    target.assert_unchanged(before)


def test_too_many_headers(target, attack):
    """10,000 small headers."""
    attack.expect("400 before the handler; the KBS keeps serving")
    before = target.state()
    status, _ = exchange(target, "GET", "/healthz", headers={f"X-{i}": "a" for i in range(10000)})
    attack.observed(status)
    assert status in ("400", "413", "431", "closed")
    target.assert_unchanged(before)


def test_oversized_body_declared(target, attack):
    """A Content-Length over payload_request_size (2 MiB): refused before the body is read."""
    attack.expect("413 readable by the client; nothing stored")
    before = target.state()
    with socket.create_connection(("127.0.0.1", target.port), timeout=20) as raw:
        with target.tls_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            head = (f"POST /kbs/v0/resource/{SECRET_PATH} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: {target.admin_hdr['Authorization']}\r\nContent-Length: {3 << 20}\r\n\r\n")
            tls.sendall(head.encode())
            reply = tls.recv(4096)
    attack.observed(reply[:40])
    assert reply.startswith(b"HTTP/1.1 413"), reply
    target.assert_unchanged(before)


def test_oversized_body_sent(target, attack):
    """A 3 MiB body actually sent by an ordinary client (requests): it must read the 413."""
    attack.expect("413 (not a connection reset); nothing stored")
    before = target.state()
    try:
        r = target.session().http.post(f"{target.url}/kbs/v0/resource/{SECRET_PATH}", data=b"x" * (3 << 20),
                                       headers=target.admin_hdr)
        attack.observed(r.status_code)
        assert r.status_code == 413
    finally:
        target.assert_unchanged(before)


@pytest.mark.parametrize("endpoint", ["/kbs/v0/auth", "/kbs/v0/attest", "/kbs/v0/resource-policy"])
def test_json_depth(target, attack, endpoint):
    """A 200,000-deep JSON array (parser stack exhaustion)."""
    attack.expect("401 with 'JSON nesting deeper than 32'; the KBS keeps serving")
    s = target.session()
    s.auth()
    before = target.state()
    body = b"[" * 200000 + b"]" * 200000
    r = s.http.post(f"{target.url}{endpoint}", data=body,
                    headers=dict(target.admin_hdr, **{"Content-Type": "application/json"}))
    attack.refused(r, 401, None, "deeper than")
    target.assert_unchanged(before)


def test_json_wide(target, attack):
    """1.5 MiB of distinct keys in one /auth body (hash-table and parse cost)."""
    attack.expect("401 AttestationError within a second; the KBS keeps serving")
    before = target.state()
    body = "{" + ",".join(f'"k{i}":{i}' for i in range(100000)) + "}"
    t0 = time.time()
    r = target.session().http.post(f"{target.url}/kbs/v0/auth", data=body.encode(),
                                   headers={"Content-Type": "application/json"})
    took = time.time() - t0
    attack.refused(r, 401, "AttestationError")
    attack.observed(f"{r.status_code} in {took:.2f}s: {r.json()['detail'][:100]}")
    assert took < 5
    target.assert_unchanged(before)


def test_smuggling_conflicting_content_length(target, attack):
    """Two Content-Length headers that disagree (request smuggling behind a proxy)."""
    attack.expect("400, the request is not handled")
    before = target.state()
    body = b'{"version":"0.4.0","tee":"sample","extra-params":""}'
    req = (b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    out = target.raw(req)
    attack.observed(out[:60])
    assert status_of(out) == "400", out[:200]
    target.assert_unchanged(before)


def test_smuggling_content_length_and_chunked(target, attack):
    """Content-Length together with Transfer-Encoding: chunked."""
    attack.expect("400, the request is not handled")
    before = target.state()
    req = (b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n0\r\n\r\nGET /kbs/v0/resource/attack/secret/key HTTP/1.1\r\nHost: x\r\n\r\n")
    out = target.raw(req)
    attack.observed(out[:60])
    assert status_of(out) == "400", out[:200]
    assert out.count(b"HTTP/1.1 ") == 1, "the smuggled request was answered"
    target.assert_unchanged(before)


def test_smuggling_invalid_chunk_size(target, attack):
    """A chunk size that is not hex."""
    attack.expect("400 (not 413)")
    before = target.state()
    out = target.raw(b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                     b"\r\nzz\r\n{}\r\n0\r\n\r\n")
    attack.observed(out[:60])
    assert status_of(out) == "400", out[:200]
    target.assert_unchanged(before)


def test_chunk_extension_accepted(target, attack):
    """Control: a valid chunked body with a chunk extension is an ordinary request."""
    attack.expect("200 from /auth")
    body = b'{"version":"0.4.0","tee":"sample","extra-params":""}'
    out = target.raw(b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\n\r\n" + f"{len(body):x};a=b".encode() + b"\r\n" + body
                     + b"\r\n0\r\n\r\n")
    attack.observed(out[:40])
    assert status_of(out) == "200", out[:300]


def test_unsupported_methods(target, attack):
    """TRACE, CONNECT, OPTIONS, PATCH and a made-up method."""
    attack.expect("405/501 from the HTTP layer; nothing reaches a handler")
    before = target.state()
    seen = []
    for m in ("TRACE", "CONNECT", "OPTIONS", "PATCH", "BREW"):
        status, _ = exchange(target, m, f"/kbs/v0/resource/{SECRET_PATH}")
        seen.append(f"{m}={status}")
        assert status in ("400", "405", "501"), (m, status)
    attack.observed(" ".join(seen))
    target.assert_unchanged(before)


def test_log_injection(target, attack):
    """Paths carrying a forged log line, terminal escapes and invalid UTF-8 end up in the KBS log
    (every refusal is logged with its reason): the log must stay one valid UTF-8 record per line."""
    attack.expect("refused; the log stays valid UTF-8, free of control bytes, with no forged record")
    before = target.state()
    size0 = target.kbs.log.stat().st_size
    forged = "%0Ats=2000-01-01T00:00:00.000Z%20level=error%20module=kbs%20msg=%22FORGED%22"
    for path in (f"/kbs/v0/{forged}", f"/kbs/v0/resource/a/b/c{forged}", "/kbs/v0/%1b%5b2J%1b%5d0;pwned%07",
                 "/kbs/v0/%08%08%08%7f", "/kbs/v0/resource/%c0%ae%c0%ae/a/b", "/kbs/v0/%ff%fe"):
        exchange(target, "GET", path)
    time.sleep(0.2)
    with open(target.kbs.log, "rb") as f:
        f.seek(size0)
        new = f.read()
    new.decode("utf-8")  # raises on invalid UTF-8
    bad = sorted({b for b in new if (b < 0x20 and b != 0x0A) or b == 0x7F})
    assert not bad, f"control bytes {bad} in the log"
    assert not any(line.startswith(b"ts=2000-01-01") for line in new.splitlines()), "a forged record"
    attack.observed(f"{len(new.splitlines())} log lines, valid UTF-8, no control bytes, no forged record")
    target.assert_unchanged(before)
