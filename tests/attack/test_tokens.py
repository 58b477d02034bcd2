"""Attestation-token (EAR) attacks on the resource endpoint's Bearer path."""
import copy
import http.server
import threading
import time

import pytest

import jws
import rcar
from conftest import SECRET, SECRET_PATH


@pytest.fixture(scope="module")
def honest(target):
    """A legitimately issued token, its TEE key and its decoded parts."""
    s, key, token = target.sample_handshake()
    header, payload, sig = jws.split(token)
    return {"token": token, "key": key, "header": header, "payload": payload, "sig": sig}


def claims(honest, **changes):
    p = copy.deepcopy(honest["payload"])
    p.update(changes)
    return p


def swap_teekey(obj, jwk):
    """Replaces every tee-pubkey in the claims: the secret would be encrypted to `jwk`."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "tee-pubkey":
                obj[k] = jwk
            else:
                swap_teekey(v, jwk)
    elif isinstance(obj, list):
        for v in obj:
            swap_teekey(v, jwk)


@pytest.fixture(scope="module")
def evil_chain(tmp_path_factory):
    return jws.attacker_ca(tmp_path_factory.mktemp("evil-ca"))


class Listener:
    """A loopback HTTP server that counts requests: jku/x5u must never be fetched."""

    def __init__(self):
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"keys":[]}')

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


def refused_bearer(target, attack, token, variant="TokenVerifierError", detail=None):
    before = target.state()
    r = rcar.Session(target.url, target.pki.tls_cert).resource(SECRET_PATH, bearer=token)
    attack.refused(r, 401, variant, detail)
    target.assert_unchanged(before)


def test_control_bearer_token_works(target, honest, attack):
    """Control: the honest token, as a Bearer from a fresh connection, releases the secret."""
    attack.expect("200, decrypts")
    r = rcar.Session(target.url, target.pki.tls_cert).resource(SECRET_PATH, bearer=honest["token"])
    assert r.status_code == 200 and rcar.decrypt(r.json(), honest["key"]) == SECRET
    attack.observed("200, decrypted")


def test_token_forged_claims(target, honest, attack):
    """An issued token whose TEE key is swapped for the attacker's (the secret would be encrypted
    to it), keeping the old signature."""
    attack.expect("401 TokenVerifierError: signature does not verify")
    p = claims(honest)
    swap_teekey(p, rcar.TeeKey().jwk)
    assert p != honest["payload"]
    h = honest["token"].split(".")[0]
    refused_bearer(target, attack, f"{h}.{jws.enc(p)}.{honest['sig']}", detail="signature")


def test_token_expired(target, honest, attack):
    """A token signed by the real signer but expired an hour ago."""
    attack.expect("401 TokenVerifierError: token expired")
    p = claims(honest, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    token = jws.sign(honest["header"], p, jws.load_key(target.pki.signer_key))
    refused_bearer(target, attack, token, detail="exp")


def test_token_not_yet_valid(target, honest, attack):
    """A token signed by the real signer whose nbf lies an hour ahead."""
    attack.expect("401 TokenVerifierError: token not yet valid (nbf)")
    p = claims(honest, nbf=int(time.time()) + 3600)
    token = jws.sign(honest["header"], p, jws.load_key(target.pki.signer_key))
    refused_bearer(target, attack, token, detail="not valid before")


def test_token_untrusted_signer(target, honest, evil_chain, attack):
    """A well-formed EAR signed by an attacker's own CA chain (same names as the real one)."""
    attack.expect("401 TokenVerifierError: token signer is not trusted")
    key_path, x5c = evil_chain
    key = jws.load_key(key_path)
    header = {"alg": "ES256", "typ": "JWT", "jwk": jws.ec_jwk(key, x5c)}
    refused_bearer(target, attack, jws.sign(header, honest["payload"], key), detail="not trusted")


def test_token_from_another_kbs(target, other_kbs, attack):
    """A token issued by another KBS whose signer chains to nothing this KBS trusts."""
    attack.expect("401 TokenVerifierError: header jwk has no x5c chain")
    key = rcar.TeeKey()
    token = rcar.Session(other_kbs.url(), target.pki.tls_cert).handshake(key)
    refused_bearer(target, attack, token)


def test_token_alg_none(target, honest, attack):
    """alg "none" with no signature (classic JWT bypass)."""
    attack.expect("401 TokenVerifierError: algorithm none refused")
    for alg in ("none", "None", "NONE"):
        header = dict(honest["header"], alg=alg)
        refused_bearer(target, attack, f"{jws.enc(header)}.{jws.enc(honest['payload'])}.")


def test_token_hs256_keyed_with_public_key(target, honest, attack):
    """HS256 whose HMAC key is the signer's public key (PEM, DER, JWK JSON, raw point): key confusion."""
    attack.expect("401 TokenVerifierError: HS256 is not the key's algorithm")
    from cryptography.hazmat.primitives import serialization
    pub = jws.load_key(target.pki.signer_key).public_key()
    secrets = [pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
               pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
               pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
               jws.json.dumps({k: v for k, v in honest["header"]["jwk"].items() if k != "x5c"}).encode()]
    for secret in secrets:
        header = dict(honest["header"], alg="HS256")
        refused_bearer(target, attack, jws.hs256(header, honest["payload"], secret))


@pytest.mark.parametrize("member", ["jku", "x5u"])
def test_token_remote_key_injection(target, honest, evil_chain, attack, member):
    """A header pointing the verifier at an attacker's URL for the key (jku / x5u): the KBS must
    neither fetch it nor accept the token."""
    attack.expect(f"401 TokenVerifierError and no request to the {member} URL")
    listener = Listener()
    try:
        key = jws.load_key(evil_chain[0])
        for header in ({"alg": "ES256", member: f"{listener.url}/keys", "kid": "attacker"},
                       {"alg": "ES256", member: f"{listener.url}/keys"},
                       dict(honest["header"], **{member: f"{listener.url}/keys"})):
            token = jws.sign(header, honest["payload"], key)
            refused_bearer(target, attack, token)
        time.sleep(0.2)
        assert listener.hits == [], f"the KBS fetched {listener.hits}"
    finally:
        listener.close()


def test_token_self_signed_header_jwk(target, honest, attack):
    """A header jwk with the attacker's own key and no certificate chain."""
    attack.expect("401 TokenVerifierError: token header jwk has no x5c chain")
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "typ": "JWT", "jwk": jws.ec_jwk(key)}
    refused_bearer(target, attack, jws.sign(header, honest["payload"], key), detail="x5c")


def test_token_x5c_key_substitution(target, honest, attack):
    """The real signer's x5c chain copied into a header whose jwk is the attacker's key."""
    attack.expect("401 TokenVerifierError: the jwk does not match the leaf certificate")
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "typ": "JWT", "jwk": jws.ec_jwk(key, honest["header"]["jwk"]["x5c"])}
    refused_bearer(target, attack, jws.sign(header, honest["payload"], key), detail="does not match the leaf")


def test_token_unknown_kid(target, honest, attack):
    """A kid-only header (no jwk): no trusted JWK set holds it."""
    attack.expect("401 TokenVerifierError: kid is in no trusted JWK set")
    key = jws.load_key(target.pki.signer_key)
    for kid in ("attacker", "../../../etc/passwd", "' OR 1=1 --"):
        refused_bearer(target, attack, jws.sign({"alg": "ES256", "kid": kid}, honest["payload"], key),
                       detail="kid")


def test_token_crit_header(target, honest, attack):
    """A real-signer token with a "crit" extension the verifier cannot understand (RFC 7515 4.1.11)."""
    attack.expect("401 TokenVerifierError: crit extensions are not supported")
    header = dict(honest["header"], crit=["x-bypass"], **{"x-bypass": True})
    refused_bearer(target, attack, jws.sign(header, honest["payload"], jws.load_key(target.pki.signer_key)),
                   detail="crit")


def test_token_duplicate_claims(target, honest, attack):
    """A real-signer token whose payload repeats "exp" (parsers that keep the last one disagree)."""
    attack.expect("401 TokenVerifierError: duplicate member refused")
    body = jws.json.dumps(honest["payload"], separators=(",", ":"))
    body = body[:-1] + ',"exp":1}'
    refused_bearer(target, attack, jws.sign(honest["header"], body, jws.load_key(target.pki.signer_key)))


def test_admin_token_as_attestation_token(target, attack):
    """The administrator's JWT presented as an attestation token."""
    attack.expect("401 TokenVerifierError")
    refused_bearer(target, attack, target.pki.admin_token())


def test_token_oversized(target, honest, attack):
    """A 300 KiB Bearer token: over the header limit, refused before any parsing."""
    attack.expect("4xx before the handler; the KBS keeps serving")
    before = target.state()
    token = honest["token"] + "A" * (300 << 10)
    req = (f"GET /kbs/v0/resource/{SECRET_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    out = target.raw(req, timeout=10)
    status = out.split(b" ", 2)[1].decode() if out.startswith(b"HTTP/1.1 ") else "closed"
    attack.observed(f"{status} {out[:80]!r}")
    assert status == "closed" or status.startswith("4"), out[:200]
    target.assert_unchanged(before)
