"""Admin authentication with several identity providers: PEM public keys of each type Trustee
accepts (Ed25519, EC P-256, RSA) and a JWK set looked up by kid, with issuer and audience checks,
and the regex ACL on the role."""
import base64
import json
import subprocess
import time

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import bgcheck_config


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign_jwt(alg, key, claims, kid=None):
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    msg = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "RS256":
        sig = key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    else:
        sig = key.sign(msg)
    return f"{msg.decode()}.{b64url(sig)}"


def claims(role="admin", iss=None, aud=None, exp=3600):
    c = {"role": role, "iat": int(time.time()), "exp": int(time.time()) + exp}
    if iss:
        c["iss"] = iss
    if aud:
        c["aud"] = aud
    return c


def pem_pub(key, path):
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def test_identity_providers_and_acl(pki, start_kbs, tmp_path):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nums = jwks_key.public_key().public_numbers()
    jwks = {"keys": [{"kty": "RSA", "kid": "ops-2026", "alg": "RS256", "use": "sig",
                      "n": b64url(nums.n.to_bytes(256, "big")), "e": b64url(nums.e.to_bytes(3, "big"))}]}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    ec_pub = pem_pub(ec_key, tmp_path / "ec.pub")
    rsa_pub = pem_pub(rsa_key, tmp_path / "rsa.pub")
    admin_block = f"""[admin]
authorization_mode = "AuthenticatedAuthorization"

[admin.authentication.bearer_jwt]
identity_providers = [
  {{ public_key_uri = "{pki.admin_pub}" }},
  {{ issuer = "https://idp.example", audience = "kbs", public_key_uri = "file://{ec_pub}" }},
  {{ public_key_uri = "{rsa_pub}" }},
  {{ issuer = "ops", jwk_set_uri = "file://{tmp_path / 'jwks.json'}" }},
]

[admin.authorization.regex_acl]
acls = [
  {{ role = "admin", allowed_endpoints = "^/kbs/v0/.+$" }},
  {{ role = "resource-writer", allowed_endpoints = "^/kbs/v0/resource/team-a/.+$" }},
]
"""
    cfg = bgcheck_config(pki, tmp_path / "storage", admin="InsecureAllowAll")
    cfg = cfg.replace('[admin]\nauthorization_mode = "InsecureAllowAll"\n', admin_block)
    kbs = start_kbs(cfg)

    def put(path, token):
        return requests.post(f"{kbs.url()}/kbs/v0/resource/{path}", data=b"x", verify=str(pki.tls_cert),
                             headers={"Authorization": f"Bearer {token}"})

    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    ed = load_pem_private_key(pki.admin_key.read_bytes(), None)
    ok = {
        "ed25519": sign_jwt("EdDSA", ed, claims()),
        "ec": sign_jwt("ES256", ec_key, claims(iss="https://idp.example", aud=["kbs", "other"])),
        "rsa": sign_jwt("RS256", rsa_key, claims()),
        "jwks": sign_jwt("RS256", jwks_key, claims(iss="ops"), kid="ops-2026"),
    }
    for name, token in ok.items():
        r = put("a/b/c", token)
        assert r.status_code == 200, (name, r.text)
    refused = {
        "ec wrong issuer": sign_jwt("ES256", ec_key, claims(iss="https://evil.example", aud="kbs")),
        "ec wrong audience": sign_jwt("ES256", ec_key, claims(iss="https://idp.example", aud="other")),
        "jwks unknown kid": sign_jwt("RS256", jwks_key, claims(iss="ops"), kid="nope"),
        "jwks wrong issuer": sign_jwt("RS256", jwks_key, claims(iss="dev"), kid="ops-2026"),
        "rsa expired": sign_jwt("RS256", rsa_key, claims(exp=-3600)),
        "rsa alg confusion": sign_jwt("ES256", ec_key, claims()),  # EC key not trusted without iss/aud
    }
    for name, token in refused.items():
        r = put("a/b/c", token)
        assert r.status_code == 401, (name, r.text)
        assert r.json()["type"].endswith("/AdminAuthInitialization"), name
    # The ACL: a resource-writer may write only under team-a.
    writer = sign_jwt("RS256", rsa_key, claims(role="resource-writer"))
    assert put("team-a/db/password", writer).status_code == 200
    r = put("team-b/db/password", writer)
    assert r.status_code == 401 and "not allowed" in r.json()["detail"]
    r = requests.post(f"{kbs.url()}/kbs/v0/resource-policy", json={"policy": "cGFja2FnZSBwb2xpY3k"},
                      verify=str(pki.tls_cert), headers={"Authorization": f"Bearer {writer}"})
    assert r.status_code == 401 and r.json()["type"].endswith("/AdminAuthAccess")
