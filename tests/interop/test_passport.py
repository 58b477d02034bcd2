"""Passports across implementations: an EAR token minted by one KBS's attestation service opens a
resource on a resource-only KBS of the other implementation that trusts the issuer's token CA,
whichever client presents it; a KBS that does not trust that CA refuses it. Also: a LocalFs
store written by one implementation is served by the other (same on-disk layout).
"""
import base64

import pytest

from conftest import kbs_config, our_admin, our_client, token_claims, up_admin, up_client

POLICY = """package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
"""


@pytest.fixture(scope="module")
def issuers(servers, pki, tmp_path_factory):
    """One attesting KBS per implementation, each signing with its own CA."""
    d = tmp_path_factory.mktemp("issuers")
    return {
        "upstream": servers.start("upstream", kbs_config(pki, d / "up", signer=pki.theirs, trusted=[pki.theirs])),
        "ours": servers.start("ours", kbs_config(pki, d / "ours", signer=pki.ours, trusted=[pki.ours])),
    }


def resource_kbs(servers, pki, d, kind, trusted):
    kbs = servers.start(kind, kbs_config(pki, d / f"{kind}-res", trusted=trusted, attestation=False))
    (d / "policy.rego").write_text(POLICY)
    (d / "secret").write_bytes(b"opened by a foreign passport")
    up_admin(kbs, pki, "set-resource", "--path", "pass/port/secret", "--resource-file", d / "secret")
    up_admin(kbs, pki, "set-resource-policy", "--policy-file", d / "policy.rego")
    return kbs


AFFIRMING = """package policy

import rego.v1

default executables := 3

default hardware := 2

default configuration := 2

trust_claims := {"executables": executables, "hardware": hardware, "configuration": configuration}
"""

CLIENTS = {"upstream kbs-client": up_client, "our kbs-client": our_client}


@pytest.mark.parametrize("issuer,holder", [("upstream", "ours"), ("ours", "upstream")])
def test_passport_across(issuer, holder, issuers, servers, pki, tmp_path):
    ca = pki.theirs if issuer == "upstream" else pki.ours
    other = pki.ours if issuer == "upstream" else pki.theirs
    trusting = resource_kbs(servers, pki, tmp_path, holder, trusted=[ca])
    for name, client in CLIENTS.items():
        key = pki.tee_keys["rsa" if "upstream" in name else "ec-p256"]
        token = client(issuers[issuer], pki, "attest", "--tee-key-file", key).stdout.strip()
        assert token_claims(token)["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
        tf = tmp_path / f"token-{issuer}-{name.split()[0]}"
        tf.write_text(token)
        out = client(trusting, pki, "get-resource", "--path", "pass/port/secret", "--attestation-token", tf,
                     "--tee-key-file", key)
        assert base64.b64decode(out.stdout.strip()) == b"opened by a foreign passport", name
        # Another key than the one the token names cannot decrypt what the KBS returns.
        wrong = pki.tee_keys["ec-p521"]
        out = client(trusting, pki, "get-resource", "--path", "pass/port/secret", "--attestation-token", tf,
                     "--tee-key-file", wrong, check=False)
        assert out.returncode != 0, name
    # A KBS of the same implementation that trusts only another CA refuses the token.
    d2 = tmp_path / "distrusting"
    d2.mkdir()
    distrusting = resource_kbs(servers, pki, d2, holder, trusted=[other])
    out = our_client(distrusting, pki, "get-resource", "--path", "pass/port/secret", "--attestation-token", tf,
                     "--tee-key-file", pki.tee_keys["ec-p256"], check=False)
    assert out.returncode == 1 and "HTTP 401" in out.stderr, out.stderr
    trusting.stop()
    distrusting.stop()


@pytest.mark.parametrize("writer,reader", [("upstream", "ours"), ("ours", "upstream")])
def test_localfs_store_shared(writer, reader, servers, pki, tmp_path):
    """A LocalFs store written through one implementation's admin API is served by the other:
    resources, the resource policy and reference values share one on-disk layout."""
    store = tmp_path / "store"
    cfg = kbs_config(pki, store, signer=pki.ours if writer == "ours" else pki.theirs,
                     trusted=[pki.ours, pki.theirs])
    w = servers.start(writer, cfg)
    (tmp_path / "secret").write_bytes(b"written by " + writer.encode())
    (tmp_path / "policy.rego").write_text(POLICY)
    our_admin(w, pki, "set-resource", "--path", "shared/store/key", "--resource-file", tmp_path / "secret")
    our_admin(w, pki, "set-resource-policy", "--policy-file", tmp_path / "policy.rego")
    our_admin(w, pki, "set-sample-reference-value", "shared_rv", "42", "--as-integer")
    (tmp_path / "ap.rego").write_text(AFFIRMING)
    our_admin(w, pki, "set-attestation-policy", "--policy-file", tmp_path / "ap.rego", "--id", "default_cpu")
    assert w.stop() == 0
    r = servers.start(reader, cfg)
    out = our_client(r, pki, "get-resource", "--path", "shared/store/key")
    assert base64.b64decode(out.stdout.strip()) == b"written by " + writer.encode()
    assert our_admin(r, pki, "get-reference-value", "--id", "shared_rv").stdout.strip() == "[42]"
    # The policies came along: the stored resource policy releases to sample evidence (the
    # shipped default would refuse it), and the stored attestation policy makes it affirming.
    token = our_client(r, pki, "attest").stdout.strip()
    assert token_claims(token)["submods"]["cpu0"]["ear.status"] == "affirming"
    r.stop()
