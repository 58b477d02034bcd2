"""Our `kbs-client` and `cdh` against the upstream KBS, over plain HTTP and over TLS with
upstream's `regex_acl` admin authorisation, and what our clients put on the wire compared with
upstream's own client (HTTP/1.1, headers, the session cookie).

Where a flow's output depends on the server, the same client also runs against our KBS: both
servers must give our client the same answer.
"""
import base64
import json
import os
import subprocess

import pytest

from conftest import (BIN, UP, UP_ENV, kbs_config, our_admin, our_client, run, token_claims, up_admin)
from proxy import Proxy

INIT_DATA = """version = "0.1.0"
algorithm = "sha256"

[data]
"policy.rego" = '''
package agent_policy

policy_data := {"allow_exec": false}
'''
"""

ATTESTATION_POLICY = """package policy

import rego.v1

default executables := 3

default hardware := 2

default configuration := 2

trust_claims := {"executables": executables, "hardware": hardware, "configuration": configuration}
"""


@pytest.fixture(scope="module", params=["https", "http"])
def kbses(request, servers, pki, tmp_path_factory):
    """The upstream KBS (and ours, as the reference answer) in one transport."""
    tls = request.param == "https"
    d = tmp_path_factory.mktemp(f"ours-to-upstream-{request.param}")
    return {
        "upstream": servers.start("upstream", kbs_config(pki, d / "up", tls=tls, signer=pki.theirs,
                                                         trusted=[pki.theirs]), tls=tls),
        "ours": servers.start("ours", kbs_config(pki, d / "ours", tls=tls, signer=pki.ours, trusted=[pki.ours]),
                              tls=tls),
    }


def put(kbs, pki, tmp_path, path, data: bytes):
    f = tmp_path / ("res-" + path.replace("/", "_"))
    f.write_bytes(data)
    our_admin(kbs, pki, "set-resource", "--path", path, "--resource-file", f)


def test_admin_verbs(kbses, pki, tmp_path):
    """Every `config` verb of our client is accepted by the upstream KBS (over TLS this goes
    through its regex_acl `^/kbs/.+$`, which an HTTP/2 request would fail)."""
    up = kbses["upstream"]
    secret = os.urandom(16)
    put(up, pki, tmp_path, "one/two/three", secret)
    (tmp_path / "policy.rego").write_text('package policy\nimport rego.v1\ndefault allow := true\n')
    our_admin(up, pki, "set-resource-policy", "--policy-file", tmp_path / "policy.rego")
    for preset in ("--deny-all", "--affirming", "--default", "--allow-all"):
        our_admin(up, pki, "set-resource-policy", preset)
    (tmp_path / "ap.rego").write_text(ATTESTATION_POLICY)
    our_admin(up, pki, "set-attestation-policy", "--policy-file", tmp_path / "ap.rego", "--id", "default_cpu")
    # Reference values: what our client registers is what upstream's client registers (read
    # back from the upstream KBS), and our KBS answers our client the same.
    forms = [("svn", "1", []), ("major_version", "1", ["--as-integer"]), ("debug_ok", "false", ["--as-bool"]),
             ("single", "x", ["--as-single-value"]), ("single_int", "3", ["--as-integer", "--as-single-value"])]
    for name, value, flags in forms:
        up_admin(up, pki, "set-sample-reference-value", name + "-up", value, *flags)
        want = our_admin(up, pki, "get-reference-value", "--id", name + "-up").stdout.strip()
        got = {}
        for kind, kbs in kbses.items():
            our_admin(kbs, pki, "set-sample-reference-value", name, value, *flags)
            got[kind] = our_admin(kbs, pki, "get-reference-value", "--id", name).stdout.strip()
        assert got["upstream"] == want, f"{name} {flags}: our client stored {got['upstream']}, upstream's {want}"
        assert got["ours"] == want, name
    assert json.loads(want) == 3
    bad = our_admin(up, pki, "set-sample-reference-value", "n", "x", "--as-integer", check=False)
    assert bad.returncode == 2 and "not an integer" in bad.stderr
    out = our_client(up, pki, "get-resource", "--path", "one/two/three")
    assert base64.b64decode(out.stdout.strip()) == secret
    # The attestation policy set above made the sample evidence affirming on the upstream AS.
    token = our_client(up, pki, "attest").stdout.strip()
    assert token_claims(token)["submods"]["cpu0"]["ear.status"] == "affirming"
    our_admin(up, pki, "delete-resource", "--path", "one/two/three")
    gone = our_client(up, pki, "get-resource", "--path", "one/two/three", check=False)
    assert gone.returncode == 1 and "HTTP 401" in gone.stderr
    # A token that is not an admin's is refused by upstream's regex_acl / bearer_jwt the same way.
    bad = tmp_path / "bad-token"
    bad.write_text(pki.admin_token(role="reader"))
    refused = our_client(up, pki, "config", "--admin-token-file", bad, "set-resource-policy", "--allow-all",
                         check=False)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr


def test_cookie_and_passport_fetches(kbses, pki, tmp_path):
    up = kbses["upstream"]
    put(up, pki, tmp_path, "pass/port/res", b"upstream-held")
    our_admin(up, pki, "set-resource-policy", "--allow-all")
    out = our_client(up, pki, "get-resource", "--path", "pass/port/res")
    assert base64.b64decode(out.stdout.strip()) == b"upstream-held"
    for key in ("rsa", "ec-p256", "ec-p521"):
        token = our_client(up, pki, "attest", "--tee-key-file", pki.tee_keys[key]).stdout.strip()
        tf = tmp_path / f"token-{key}"
        tf.write_text(token)
        out = our_client(up, pki, "get-resource", "--path", "pass/port/res", "--attestation-token", tf,
                         "--tee-key-file", pki.tee_keys[key])
        assert base64.b64decode(out.stdout.strip()) == b"upstream-held", key


def test_init_data(kbses, pki, tmp_path):
    up = kbses["upstream"]
    token = our_client(up, pki, "attest", INIT_DATA).stdout.strip()
    ev = token_claims(token)["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert ev["init_data_claims"] == {"agent_policy_claims": {"allow_exec": False}}
    put(up, pki, tmp_path, "init/data/res", b"bound")
    our_admin(up, pki, "set-resource-policy", "--allow-all")
    out = our_client(up, pki, "get-resource", "--path", "init/data/res", INIT_DATA)
    assert base64.b64decode(out.stdout.strip()) == b"bound"


def test_policy_deny(kbses, pki, tmp_path):
    got = {}
    for kind, kbs in kbses.items():
        put(kbs, pki, tmp_path, "deny/me/now", b"never")
        our_admin(kbs, pki, "set-resource-policy", "--deny-all")
        got[kind] = our_client(kbs, pki, "get-resource", "--path", "deny/me/now", check=False)
        assert got[kind].returncode == 1
        assert "HTTP 401 PolicyDeny" in got[kind].stderr, got[kind].stderr
        our_admin(kbs, pki, "set-resource-policy", "--allow-all")


def cdh_config(kbs, pki, d):
    cert = f"kbs_cert = '''{pki.tls_ca.read_text()}'''\n" if kbs.tls else ""
    cfg = d / f"cdh-{kbs.kind}.toml"
    cfg.write_text(f'[kbc]\nname = "cc_kbc"\nurl = "{kbs.url()}"\n{cert}')
    return cfg


def test_cdh_get_resource(kbses, pki, tmp_path):
    """The guest agent fetches a secret from the upstream KBS (one-shot mode)."""
    up = kbses["upstream"]
    put(up, pki, tmp_path, "cdh/guest/key", b"for the workload")
    our_admin(up, pki, "set-resource-policy", "--allow-all")
    out = subprocess.run([str(BIN / "cdh"), "-c", str(cdh_config(up, pki, tmp_path)), "--tee", "sample",
                          "--kbs-attempts", "1", "get-resource", "kbs:///cdh/guest/key"],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b"for the workload"
    # With init-data, through the same one-shot path.
    (tmp_path / "initdata.toml").write_text(INIT_DATA)
    out = subprocess.run([str(BIN / "cdh"), "-c", str(cdh_config(up, pki, tmp_path)), "--tee", "sample",
                          "--kbs-attempts", "1", "--initdata", str(tmp_path / "initdata.toml"), "get-resource",
                          "kbs:///cdh/guest/key"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b"for the workload"


def test_tampered_evidence(servers, pki, tmp_path):
    """Our client's evidence, altered on the way: the upstream KBS refuses it and our client
    reports the AttestationError."""
    up = servers.start("upstream", kbs_config(pki, tmp_path / "up", tls=False, signer=pki.theirs,
                                              trusted=[pki.theirs]), tls=False)

    def flip(path, body):
        if not path.endswith("/attest"):
            return body
        j = json.loads(body)
        ev = j["tee-evidence"]["primary_evidence"]
        rd = bytearray(base64.b64decode(ev["report_data"]))
        rd[-1] ^= 1
        ev["report_data"] = base64.b64encode(bytes(rd)).decode()
        return json.dumps(j).encode()

    p = Proxy(up.port, flip)
    try:
        out = run([BIN / "kbs-client", "--url", p.url(), "attest"], check=False)
    finally:
        p.close()
    assert not p.errors, p.errors
    assert out.returncode == 1
    assert "HTTP 401 AttestationError" in out.stderr, out.stderr


def test_wire_format_matches_upstream_client(servers, pki, tmp_path):
    """Behind a TLS front that offers h2 and http/1.1, our kbs-client and cdh speak HTTP/1.1 like
    upstream's kbs-client, send JSON with its content type, carry the session cookie from /auth to
    /attest, and the admin token as a Bearer header."""
    up = servers.start("upstream", kbs_config(pki, tmp_path / "up", tls=False, signer=pki.theirs,
                                              trusted=[pki.theirs]), tls=False)
    p = Proxy(up.port, tls=(pki.tls_cert, pki.tls_key))
    (tmp_path / "secret").write_bytes(b"wire")
    clients = {
        "upstream kbs-client": lambda *a: run([UP / "kbs-client", "--url", p.url(), "--cert-file", pki.tls_ca, *a],
                                              env=UP_ENV),
        "our kbs-client": lambda *a: run([BIN / "kbs-client", "--url", p.url(), "--cert-file", pki.tls_ca, *a]),
    }
    seen = {}
    try:
        for name, client in clients.items():
            first = len(p.requests)
            client("config", "--admin-token-file", pki.admin_token_file, "set-resource", "--path", "w/i/re",
                   "--resource-file", tmp_path / "secret")
            client("config", "--admin-token-file", pki.admin_token_file, "set-resource-policy", "--allow-all")
            out = client("get-resource", "--path", "w/i/re")
            assert base64.b64decode(out.stdout.strip()) == b"wire", name
            seen[name] = p.requests[first:]
        first = len(p.requests)
        cfg = tmp_path / "cdh.toml"
        cfg.write_text(f'[kbc]\nname = "cc_kbc"\nurl = "{p.url()}"\nkbs_cert = \'\'\'{pki.tls_ca.read_text()}\'\'\'\n')
        out = subprocess.run([str(BIN / "cdh"), "-c", str(cfg), "--tee", "sample", "--kbs-attempts", "1",
                              "get-resource", "kbs:///w/i/re"], capture_output=True, timeout=60)
        assert out.returncode == 0 and out.stdout == b"wire", out.stderr.decode()
        seen["our cdh"] = p.requests[first:]
    finally:
        p.close()
    assert not p.errors, p.errors

    def headers(r):
        hdr = {}
        for k, v in r["headers"]:
            hdr.setdefault(k, v)
        return hdr

    # Upstream's client is the reference for each request's content type.
    reference = {(r["method"], r["path"]): headers(r).get("content-type", "").split(";")[0]
                 for r in seen["upstream kbs-client"]}
    for name, reqs in seen.items():
        assert reqs, name
        for r in reqs:
            hdr = headers(r)
            where = f"{name}: {r['method']} {r['path']}"
            assert r["version"] == "HTTP/1.1", where
            assert r["alpn"] in (None, "http/1.1"), f"{where}: negotiated {r['alpn']}"
            want = reference.get((r["method"], r["path"]))
            if want is not None and r["method"] != "GET":
                assert hdr.get("content-type", "").split(";")[0] == want, f"{where}: {hdr.get('content-type')}"
            if r["path"].endswith("/attest"):
                assert "kbs-session-id=" in hdr.get("cookie", ""), f"{where}: no session cookie"
            if "/resource-policy" in r["path"] or (r["method"] == "POST" and "/resource/" in r["path"]):
                assert hdr.get("authorization", "").startswith("Bearer "), where
        paths = [r["path"] for r in reqs]
        assert "/kbs/v0/auth" in paths and "/kbs/v0/attest" in paths, f"{name}: {paths}"
