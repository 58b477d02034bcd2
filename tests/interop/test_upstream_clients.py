"""Upstream's `kbs-client` and `trustee-attester` against our KBS.

Every flow runs against the upstream KBS as well, with the same client and the same requests:
the upstream KBS is the reference for what the upstream client expects (exit status, output,
the KBS error types it logs while retrying). Our KBS must give the same.
"""
import base64
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (UP, UP_ENV, attester, kbs_config, run, token_claims, up_admin, up_client, up_error)
from proxy import Proxy

KINDS = ("upstream", "ours")

ATTESTATION_POLICY = """package policy

import rego.v1

default executables := 3

default hardware := 2

default configuration := 2

trust_claims := {"executables": executables, "hardware": hardware, "configuration": configuration}
"""

RESOURCE_POLICY = """package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	data["resource-path"] == ["one", "two", "three"]
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
"""

INIT_DATA = """version = "0.1.0"
algorithm = "sha256"

[data]
"policy.rego" = '''
package agent_policy

policy_data := {"allow_exec": false}
'''
"""


@pytest.fixture(scope="module")
def pair(servers, pki, tmp_path_factory):
    """Both KBSes over TLS with the shared configuration, each signing its own tokens."""
    d = tmp_path_factory.mktemp("pair")
    return {
        "upstream": servers.start("upstream", kbs_config(pki, d / "up", signer=pki.theirs, trusted=[pki.theirs])),
        "ours": servers.start("ours", kbs_config(pki, d / "ours", signer=pki.ours, trusted=[pki.ours])),
    }


@pytest.fixture(scope="module")
def plain_pair(servers, pki, tmp_path_factory):
    """Both KBSes over plain HTTP (what a proxy can rewrite)."""
    d = tmp_path_factory.mktemp("plain")
    return {
        "upstream": servers.start("upstream", kbs_config(pki, d / "up", tls=False, signer=pki.theirs,
                                                         trusted=[pki.theirs]), tls=False),
        "ours": servers.start("ours", kbs_config(pki, d / "ours", tls=False, signer=pki.ours, trusted=[pki.ours]),
                              tls=False),
    }


def error_types(stderr: str):
    """The KBS error types upstream's client logs (one per refused round trip), in order."""
    return re.findall(r"kbs/errors/(\w+)", stderr)


def both(pair, fn):
    """Runs fn(kbs) on each KBS; returns {kind: result}."""
    return {k: fn(pair[k]) for k in KINDS}


def outcome(out):
    return (out.returncode, out.stdout.strip(), up_error(out) if out.returncode else "")


def set_resource(kbs, pki, tmp_path, path, data: bytes):
    f = tmp_path / ("res-" + path.replace("/", "_"))
    f.write_bytes(data)
    out = up_admin(kbs, pki, "set-resource", "--path", path, "--resource-file", f)
    assert "Set resource success" in out.stdout


def test_admin_verbs_and_resource_fetch(pair, pki, tmp_path):
    """set-resource, set-resource-policy, get-resource (cookie session), delete-resource."""
    secret = os.urandom(24)
    for kbs in pair.values():
        set_resource(kbs, pki, tmp_path, "one/two/three", secret)
        (tmp_path / "policy.rego").write_text(RESOURCE_POLICY)
        out = up_admin(kbs, pki, "set-resource-policy", "--policy-file", tmp_path / "policy.rego")
        assert "Set resource policy success" in out.stdout
    got = both(pair, lambda k: up_client(k, pki, "get-resource", "--path", "one/two/three"))
    for kind, out in got.items():
        assert base64.b64decode(out.stdout.strip()) == secret, kind
    # The resource policy names one path: another one is refused the same way by both.
    for kbs in pair.values():
        set_resource(kbs, pki, tmp_path, "one/two/four", b"other")
    refused = both(pair, lambda k: run([UP / "kbs-client", "--url", k.url(), "--cert-file", pki.tls_ca,
                                        "get-resource", "--path", "one/two/four"], check=False,
                                       env=dict(UP_ENV, RUST_LOG="warn")))
    assert outcome(refused["ours"]) == outcome(refused["upstream"])
    assert refused["ours"].returncode != 0
    assert error_types(refused["ours"].stderr) == error_types(refused["upstream"].stderr)
    assert "PolicyDeny" in error_types(refused["ours"].stderr)

    for kbs in pair.values():
        assert "Delete resource success" in up_admin(kbs, pki, "delete-resource", "--path", "one/two/three").stdout
    gone = both(pair, lambda k: run([UP / "kbs-client", "--url", k.url(), "--cert-file", pki.tls_ca,
                                     "get-resource", "--path", "one/two/three"], check=False,
                                    env=dict(UP_ENV, RUST_LOG="warn")))
    assert gone["ours"].returncode != 0 and outcome(gone["ours"]) == outcome(gone["upstream"])
    assert error_types(gone["ours"].stderr) == error_types(gone["upstream"].stderr)


@pytest.mark.parametrize("preset", ["--allow-all", "--deny-all", "--affirming", "--default"])
def test_resource_policy_presets(pair, pki, tmp_path, preset):
    for kbs in pair.values():
        set_resource(kbs, pki, tmp_path, "preset/res/key", b"preset-secret")
        up_admin(kbs, pki, "set-resource-policy", preset)
    got = both(pair, lambda k: up_client(k, pki, "get-resource", "--path", "preset/res/key", check=False))
    assert outcome(got["ours"]) == outcome(got["upstream"]), preset
    if preset == "--allow-all":
        assert base64.b64decode(got["ours"].stdout.strip()) == b"preset-secret"
    else:  # sample evidence is contraindicated without reference values
        assert got["ours"].returncode != 0


def test_reference_values(pair, pki):
    """set-sample-reference-value in each form, read back with get-reference-value."""
    forms = [("rv-string", "7", []), ("rv-int", "7", ["--as-integer"]), ("rv-bool", "true", ["--as-bool"]),
             ("rv-single", "7", ["--as-single-value"])]
    for name, value, flags in forms:
        for kbs in pair.values():
            assert "Reference Values Updated" in up_admin(kbs, pki, "set-sample-reference-value", name, value,
                                                          *flags).stdout
        got = both(pair, lambda k: up_admin(k, pki, "get-reference-value", "--id", name, check=False))
        assert outcome(got["ours"]) == outcome(got["upstream"]), name
        assert got["ours"].returncode == 0, got["ours"].stderr
    missing = both(pair, lambda k: up_admin(k, pki, "get-reference-value", "--id", "never-set", check=False))
    assert missing["ours"].returncode != 0 and missing["upstream"].returncode != 0


def test_attestation_policy_and_affirming_release(pair, pki, tmp_path):
    """set-attestation-policy changes the appraisal of the next attestation the same way on both."""
    (tmp_path / "ap.rego").write_text(ATTESTATION_POLICY)
    for kbs in pair.values():
        out = up_admin(kbs, pki, "set-attestation-policy", "--policy-file", tmp_path / "ap.rego", "--id",
                       "default_cpu")
        assert "Set attestation policy success" in out.stdout
        set_resource(kbs, pki, tmp_path, "aff/res/key", b"affirmed")
        up_admin(kbs, pki, "set-resource-policy", "--affirming")
    tokens = both(pair, lambda k: up_client(k, pki, "attest").stdout.strip())
    subs = {k: token_claims(t)["submods"]["cpu0"] for k, t in tokens.items()}
    for field in ("ear.status", "ear.trustworthiness-vector", "ear.appraisal-policy-id"):
        assert subs["ours"][field] == subs["upstream"][field], field
    assert subs["ours"]["ear.status"] == "affirming"
    got = both(pair, lambda k: up_client(k, pki, "get-resource", "--path", "aff/res/key"))
    assert base64.b64decode(got["ours"].stdout.strip()) == b"affirmed"


def annotated(token):
    return token_claims(token)["submods"]["cpu0"]["ear.veraison.annotated-evidence"]


def test_init_data(pair, pki, tmp_path):
    """Init-data plaintext given to attest / get-resource / trustee-attester reaches the token."""
    tokens = both(pair, lambda k: up_client(k, pki, "attest", INIT_DATA).stdout.strip())
    ev = {k: annotated(t) for k, t in tokens.items()}
    assert ev["ours"]["init_data"] == ev["upstream"]["init_data"]
    assert ev["ours"]["init_data_claims"] == ev["upstream"]["init_data_claims"] == {
        "agent_policy_claims": {"allow_exec": False}}
    for kbs in pair.values():
        set_resource(kbs, pki, tmp_path, "init/data/key", b"with-init-data")
        up_admin(kbs, pki, "set-resource-policy", "--allow-all")
    got = both(pair, lambda k: up_client(k, pki, "get-resource", "--path", "init/data/key", INIT_DATA))
    assert base64.b64decode(got["ours"].stdout.strip()) == b"with-init-data"
    got = both(pair, lambda k: attester(k, pki, "get-resource", "--path", "kbs:///init/data/key", "--initdata",
                                        INIT_DATA))
    assert outcome(got["ours"]) == outcome(got["upstream"])
    assert base64.b64decode(got["ours"].stdout.strip()) == b"with-init-data"


def test_trustee_attester(pair, pki, tmp_path):
    for kbs in pair.values():
        set_resource(kbs, pki, tmp_path, "guest/side/key", b"for-the-guest")
        up_admin(kbs, pki, "set-resource-policy", "--allow-all")
    got = both(pair, lambda k: attester(k, pki, "get-resource", "--path", "kbs:///guest/side/key"))
    assert outcome(got["ours"]) == outcome(got["upstream"])
    assert base64.b64decode(got["ours"].stdout.strip()) == b"for-the-guest"
    for kbs in pair.values():
        up_admin(kbs, pki, "set-resource-policy", "--deny-all")
    denied = both(pair, lambda k: attester(k, pki, "get-resource", "--path", "kbs:///guest/side/key", check=False))
    assert denied["ours"].returncode != 0 and outcome(denied["ours"]) == outcome(denied["upstream"])


@pytest.mark.parametrize("key", ["rsa", "ec-p256", "ec-p521"])
def test_passport_form_with_tee_key(pair, pki, tmp_path, key):
    """attest --tee-key-file, then get-resource --attestation-token with the same key (the token
    carries the key's public part; the resource comes back encrypted to it)."""
    for kbs in pair.values():
        set_resource(kbs, pki, tmp_path, "pass/port/key", b"by-token")
        up_admin(kbs, pki, "set-resource-policy", "--allow-all")
    for kind, kbs in pair.items():
        token = up_client(kbs, pki, "attest", "--tee-key-file", pki.tee_keys[key]).stdout.strip()
        tee_pub = token_claims(token)["submods"]["cpu0"]["ear.veraison.annotated-evidence"][
            "runtime_data_claims"]["tee-pubkey"]
        assert tee_pub["kty"] == ("RSA" if key == "rsa" else "EC"), kind
        tf = tmp_path / f"token-{kind}-{key}"
        tf.write_text(token)
        out = up_client(kbs, pki, "get-resource", "--path", "pass/port/key", "--attestation-token", tf,
                        "--tee-key-file", pki.tee_keys[key])
        assert base64.b64decode(out.stdout.strip()) == b"by-token", kind


def test_tampered_evidence(plain_pair, pki):
    """A proxy flips one bit of the sample evidence's report data on its way to the KBS: both
    refuse the attestation with the error type upstream's client expects."""

    def flip(path, body):
        if not path.endswith("/attest"):
            return body
        j = json.loads(body)
        ev = j["tee-evidence"]["primary_evidence"]
        rd = bytearray(base64.b64decode(ev["report_data"]))
        rd[0] ^= 1
        ev["report_data"] = base64.b64encode(bytes(rd)).decode()
        return json.dumps(j).encode()

    def attest(kbs):
        p = Proxy(kbs.port, flip)
        try:
            return run([UP / "kbs-client", "--url", p.url(), "attest"], check=False,
                       env=dict(UP_ENV, RUST_LOG="warn")), p.errors
        finally:
            p.close()

    # The upstream client retries a refused handshake five times, a second apart: run both at once.
    with ThreadPoolExecutor(2) as ex:
        futures = {kind: ex.submit(attest, kbs) for kind, kbs in plain_pair.items()}
    got = {}
    for kind, f in futures.items():
        got[kind], errors = f.result()
        assert not errors, errors
    assert got["ours"].returncode != 0 and got["upstream"].returncode != 0
    assert set(error_types(got["ours"].stderr)) == set(error_types(got["upstream"].stderr)) == {"AttestationError"}
    # Ours also says which check failed.
    assert "report_data" in got["ours"].stderr
