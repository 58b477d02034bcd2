"""RCAR handshake attacks: nonces, sessions, cookies, report_data binding, TEE confusion."""
import base64
import os
import subprocess

import rcar
from conftest import FAKETIME_LIB, SECRET, Target, attest_body, report_data, sample_evidence

import pytest


def test_control_sample_and_snp_release_the_secret(target, attack):
    """Control: honest sample and forged-but-trusted SNP evidence both get the secret."""
    attack.expect("200 and the secret decrypts with the session's TEE key")
    s, key, _ = target.sample_handshake()
    assert target.get_secret(s, key) == SECRET
    key = rcar.TeeKey()
    s, nonce = target.snp_auth()
    r = target.snp_attest(s, nonce, key)
    assert r.status_code == 200, r.text
    assert target.get_secret(s, key) == SECRET
    attack.observed("both decrypted")


def test_replayed_nonce(target, attack):
    """A complete, once-valid /attest replayed in a new session is refused."""
    attack.expect("401 AttestationError: nonce does not match")
    key = rcar.TeeKey()
    a = target.session()
    nonce = a.auth().json()["nonce"]
    body = attest_body(nonce, key, sample_evidence(nonce, key))
    assert a.http.post(f"{target.url}/kbs/v0/attest", json=body).status_code == 200
    b = target.session()
    assert b.auth().status_code == 200
    before = target.state()
    r = b.http.post(f"{target.url}/kbs/v0/attest", json=body)
    attack.refused(r, 401, "AttestationError", "nonce does not match")
    target.assert_not_attested(b)
    target.assert_unchanged(before)


def test_replayed_snp_evidence(target, attack):
    """SNP evidence signed for one session's nonce is refused in another session."""
    attack.expect("401 AttestationError: runtime-data nonce does not match")
    key = rcar.TeeKey()
    a, nonce = target.snp_auth()
    ev = target.snp.evidence(report_data(nonce, key.jwk))
    assert a.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, ev)).status_code == 200
    b, _ = target.snp_auth()
    before = target.state()
    r = b.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, ev))
    attack.refused(r, 401, "AttestationError", "nonce does not match")
    target.assert_not_attested(b)
    target.assert_unchanged(before)


def test_nonce_from_another_session(target, attack):
    """Evidence bound to session A's nonce, sent with session B's cookie, is refused."""
    attack.expect("401 AttestationError: nonce does not match")
    key = rcar.TeeKey()
    a, b = target.session(), target.session()
    nonce_a = a.auth().json()["nonce"]
    assert b.auth().status_code == 200
    before = target.state()
    r = b.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce_a, key, sample_evidence(nonce_a, key)))
    attack.refused(r, 401, "AttestationError", "nonce does not match")
    target.assert_not_attested(a)
    target.assert_not_attested(b)
    target.assert_unchanged(before)


def test_report_data_for_another_key(target, attack):
    """Sample evidence whose report_data binds a different TEE key than runtime-data names."""
    attack.expect("401 AttestationError: report_data does not equal the expected value")
    key, other = rcar.TeeKey(), rcar.TeeKey()
    s = target.session()
    nonce = s.auth().json()["nonce"]
    before = target.state()
    r = s.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, sample_evidence(nonce, key, other)))
    attack.refused(r, 401, "AttestationError", "report_data does not equal")
    target.assert_not_attested(s)
    target.assert_unchanged(before)


def test_snp_report_data_for_another_key(target, attack):
    """A genuine-looking SNP report whose REPORT_DATA binds another key (key substitution)."""
    attack.expect("401 AttestationError: snp report: REPORT_DATA mismatch")
    key, other = rcar.TeeKey(), rcar.TeeKey()
    s, nonce = target.snp_auth()
    ev = target.snp.evidence(report_data(nonce, other.jwk))
    before = target.state()
    r = s.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, ev))
    attack.refused(r, 401, "AttestationError", "REPORT_DATA mismatch")
    target.assert_not_attested(s)
    target.assert_unchanged(before)


def test_additional_evidence_not_bound(target, attack):
    """additional_evidence is hashed into report_data: changing it after signing is refused."""
    attack.expect("401 AttestationError: snp report: REPORT_DATA mismatch")
    key = rcar.TeeKey()
    s, nonce = target.snp_auth()
    ev = target.snp.evidence(report_data(nonce, key.jwk, ""))
    before = target.state()
    r = s.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, ev, additional='{"gpu":"evil"}'))
    attack.refused(r, 401, "AttestationError", "REPORT_DATA mismatch")
    target.assert_not_attested(s)
    target.assert_unchanged(before)


@pytest.mark.parametrize("declared,sent", [("sample", "snp"), ("snp", "sample"), ("az-snp-vtpm", "snp"),
                                           ("tdx", "sample")])
def test_evidence_of_another_tee(target, attack, declared, sent):
    """/auth declares one TEE, /attest brings another TEE's evidence."""
    attack.expect(f"401 AttestationError from the {declared} verifier")
    key = rcar.TeeKey()
    s = target.session()
    nonce = s.auth(tee=declared).json()["nonce"]
    ev = sample_evidence(nonce, key) if sent == "sample" else target.snp.evidence(report_data(nonce, key.jwk))
    before = target.state()
    r = s.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, ev))
    attack.refused(r, 401, "AttestationError")
    target.assert_not_attested(s)
    target.assert_unchanged(before)


def test_unknown_tee(target, attack):
    """/auth for a TEE the KBS does not know."""
    attack.expect("401 AttestationError: unknown tee")
    before = target.state()
    r = target.session().auth(tee="../../sample")
    attack.refused(r, 401, "AttestationError", "unknown tee")
    target.assert_unchanged(before)


@pytest.mark.skipif(not os.path.exists(FAKETIME_LIB) and not os.environ.get("CI"), reason="libfaketime not installed")
def test_expired_session(pki, snp, tmp_path, attack):
    """/attest after the session's timeout (the KBS's clock runs 120x fast under libfaketime)."""
    attack.expect("401 AttestationError: session expired")
    env = dict(os.environ, LD_PRELOAD=FAKETIME_LIB, FAKETIME="+0 x120", FAKETIME_DONT_RESET="1")
    env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    t = Target(pki, snp, tmp_path / "fast", extra="", env=env)
    try:
        # timeout = 5 minutes of KBS time: 2.5 s of ours.
        key = rcar.TeeKey()
        s = t.session()
        nonce = s.auth().json()["nonce"]
        import time
        time.sleep(3.0)
        before = t.state()
        r = s.http.post(f"{t.url}/kbs/v0/attest", json=attest_body(nonce, key, sample_evidence(nonce, key)))
        attack.refused(r, 401, "AttestationError", "expired")
        t.assert_unchanged(before)
    finally:
        assert t.stop() == 0


@pytest.mark.parametrize("cookie", ["v1." + "A" * 120, "v1.AAAA", "0" * 32, "v2.x", "v1." + "_" * 180,
                                    "v1.%2e%2e%2f", "v1." + "A" * 4000],
                         ids=["zeros", "short", "no-version", "v2", "bad-b64", "encoded", "4KB"])
def test_cookie_forged(target, attack, cookie):
    """A session cookie the KBS never issued."""
    attack.expect("401 AttestationError: session cookie was not issued by this KBS")
    key = rcar.TeeKey()
    s = target.session()
    s.http.cookies.set("kbs-session-id", cookie)
    before = target.state()
    r = s.http.post(f"{target.url}/kbs/v0/attest", json=attest_body("x", key, sample_evidence("x", key)))
    attack.refused(r, 401, "AttestationError")
    assert "not issued by this KBS" in r.text or "no kbs-session-id cookie" in r.text, r.text
    target.assert_unchanged(before)


def test_cookie_bit_flip(target, attack):
    """A real cookie with one character changed (the AEAD tag must catch it)."""
    attack.expect("401 AttestationError: session cookie was not issued by this KBS")
    key = rcar.TeeKey()
    s = target.session()
    nonce = s.auth().json()["nonce"]
    cookie = s.http.cookies.get("kbs-session-id")
    i = len(cookie) // 2
    forged = cookie[:i] + ("B" if cookie[i] != "B" else "C") + cookie[i + 1:]
    s.http.cookies.clear()
    s.http.cookies.set("kbs-session-id", forged)
    before = target.state()
    r = s.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, sample_evidence(nonce, key)))
    attack.refused(r, 401, "AttestationError", "not issued by this KBS")
    target.assert_unchanged(before)


def test_cookie_swapped(target, attack):
    """Another client's attested cookie gets the attacker nothing: the secret stays encrypted to
    the victim's key, and /attest with the attacker's key cannot rebind the session."""
    attack.expect("JWE not decryptable by the attacker; the session's token still names the victim's key")
    victim, vkey, token = target.sample_handshake()
    thief = target.session()
    thief.http.cookies.set("kbs-session-id", victim.http.cookies.get("kbs-session-id"))
    tkey = rcar.TeeKey()
    nonce = "stolen"
    r = thief.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, tkey, sample_evidence(nonce, tkey)))
    # Nonces are single-use (docs/storage.md): the second /attest of a session is a refused replay.
    assert r.status_code == 401 and "replayed /attest" in r.json()["detail"], "an attested session was rebound"
    r = thief.resource("attack/secret/key")
    assert r.status_code == 200
    with pytest.raises(Exception):
        rcar.decrypt(r.json(), tkey)
    assert rcar.decrypt(r.json(), vkey) == SECRET
    attack.observed("200 JWE for the victim's key only; /attest refused as a replay, the session unchanged")


def test_cookie_from_another_kbs(target, other_kbs, attack):
    """A cookie sealed by another KBS (its own key) is worthless here."""
    attack.expect("401 AttestationError: session cookie was not issued by this KBS")
    o = rcar.Session(other_kbs.url(), target.pki.tls_cert)
    key = rcar.TeeKey()
    nonce = o.auth().json()["nonce"]
    s = target.session()
    s.http.cookies.set("kbs-session-id", o.http.cookies.get("kbs-session-id"))
    before = target.state()
    r = s.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, sample_evidence(nonce, key)))
    attack.refused(r, 401, "AttestationError", "not issued by this KBS")
    target.assert_unchanged(before)


def test_attested_cookie_from_another_kbs(target, other_kbs, attack):
    """An attested session on another KBS does not open resources here."""
    attack.expect("401 TokenNotFound")
    o = rcar.Session(other_kbs.url(), target.pki.tls_cert)
    key = rcar.TeeKey()
    nonce = o.auth().json()["nonce"]
    assert o.http.post(f"{other_kbs.url()}/kbs/v0/attest",
                       json=attest_body(nonce, key, sample_evidence(nonce, key))).status_code == 200
    s = target.session()
    s.http.cookies.set("kbs-session-id", o.http.cookies.get("kbs-session-id"))
    before = target.state()
    attack.refused(s.resource("attack/secret/key"), 401, "TokenNotFound")
    target.assert_unchanged(before)
