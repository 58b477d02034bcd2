"""Admin API attacks: missing, forged, expired, wrong-role and confused tokens; ACL evasion."""
import base64
import subprocess
import time

import pytest

import jws
import rcar
from conftest import SECRET_PATH, b64url

POLICY = b64url(b"package policy\nimport rego.v1\ndefault allow := true\n")

# (method, path, body, Trustee's error variant on refusal)
ENDPOINTS = [
    ("POST", f"/kbs/v0/resource/{SECRET_PATH}", b"overwritten", "AdminAuthInitialization"),
    ("DELETE", f"/kbs/v0/resource/{SECRET_PATH}", b"", "AdminAuthInitialization"),
    ("POST", "/kbs/v0/resource-policy", f'{{"policy":"{POLICY}"}}'.encode(), "AdminAuthAccess"),
    ("POST", "/kbs/v0/attestation-policy", f'{{"policy_id":"default_cpu","policy":"{POLICY}"}}'.encode(),
     "AdminAuthAccess"),
    ("POST", "/kbs/v0/reference-value",
     b'{"version":"0.1.0","type":"sample","payload":"' + base64.b64encode(b'{"svn":["666"]}') + b'"}',
     "AdminAuthAccess"),
    ("GET", "/kbs/v0/reference-value/svn", b"", "AdminAuthAccess"),
]


def all_refused(target, attack, headers, detail=None):
    before = target.state()
    s = target.session()
    for method, path, body, variant in ENDPOINTS:
        r = s.http.request(method, f"{target.url}{path}", data=body,
                           headers=dict(headers, **{"Content-Type": "application/json"}))
        attack.refused(r, 401, variant, detail)
    target.assert_unchanged(before)
    # The secret is still released to an honest client under the unchanged policy.
    s, key, _ = target.sample_handshake()
    assert target.get_secret(s, key) == b"attack-suite-top-secret"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def other_ed25519(tmp_path_factory):
    p = tmp_path_factory.mktemp("admin") / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(p)], check=True)
    return p


def test_admin_without_token(target, attack):
    """Every admin endpoint without an Authorization header."""
    attack.expect("401 AdminAuth*: no \"Authorization: Bearer <JWT>\" header")
    all_refused(target, attack, {}, "Authorization")


def test_admin_forged_token(target, attack, other_ed25519):
    """A well-formed admin JWT signed by a key no identity provider holds."""
    attack.expect("401 AdminAuth*: admin token signature does not verify")
    all_refused(target, attack, bearer(target.pki.admin_token(key=other_ed25519)), "signature")


def test_admin_expired_token(target, attack):
    """The administrator's own key, but the token expired an hour ago."""
    attack.expect("401 AdminAuth*: token expired")
    all_refused(target, attack, bearer(target.pki.admin_token(exp_delta=-3600)), "expired")


@pytest.mark.parametrize("role", ["auditor", "Admin", "admin ", None], ids=["auditor", "case", "space", "none"])
def test_admin_wrong_role(target, attack, role):
    """A valid signature for a role no ACL grants (or no role at all)."""
    attack.expect("401 AdminAuth*: role is not allowed / has no role claim")
    all_refused(target, attack, bearer(target.pki.admin_token(role=role)), "role")


def test_admin_alg_none(target, attack):
    """The admin claims with alg none and no signature."""
    attack.expect("401 AdminAuth*: signature does not verify")
    now = int(time.time())
    claims = {"role": "admin", "iat": now, "exp": now + 600}
    token = f"{jws.enc({'alg': 'none', 'typ': 'JWT'})}.{jws.enc(claims)}."
    all_refused(target, attack, bearer(token), "signature")


def test_admin_hs256_keyed_with_public_key(target, attack):
    """HS256 keyed with the administrator's public key (PEM and raw): key confusion."""
    attack.expect("401 AdminAuth*: signature does not verify")
    from cryptography.hazmat.primitives import serialization
    pub = jws.load_key(target.pki.admin_key).public_key()
    now = int(time.time())
    claims = {"role": "admin", "iat": now, "exp": now + 600}
    for secret in (target.pki.admin_pub.read_bytes(),
                   pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)):
        all_refused(target, attack, bearer(jws.hs256({"alg": "HS256", "typ": "JWT"}, claims, secret)), "signature")


def test_admin_alg_swapped(target, attack):
    """A genuine EdDSA admin signature under a header that claims ES256."""
    attack.expect("401 AdminAuth*: signature does not verify")
    h, p, s = target.pki.admin_token().split(".")
    header = jws.enc({"alg": "ES256", "typ": "JWT"})
    all_refused(target, attack, bearer(f"{header}.{p}.{s}"), "signature")


def test_attestation_token_as_admin_token(target, attack):
    """A TEE's EAR token (signed by the KBS itself) presented to the admin API."""
    attack.expect("401 AdminAuth*: admin token not accepted by any identity provider")
    _, _, token = target.sample_handshake()
    all_refused(target, attack, bearer(token), "signature")


def test_admin_token_garbage(target, attack):
    """Malformed bearer values: empty, not a JWT, huge, binary."""
    attack.expect("401 AdminAuth*")
    for value in ("Bearer ", "Bearer not.a.jwt", "Bearer " + "A" * 12000, "Basic YWRtaW46YWRtaW4=",
                  "Bearer ..", "bearer x.y.z"):
        all_refused(target, attack, {"Authorization": value})


SCOPED_ACL = 'acls = [{ role = "reader", allowed_endpoints = "^/kbs/v0/reference-value/.+$" }]'


def test_admin_acl_evasion(pki, snp, own_target, attack):
    """A role scoped to reading reference values tries to reach other endpoints through encoding,
    traversal and query tricks."""
    attack.expect("every request refused (401 AdminAuth* or 404 InvalidRequestPath); nothing stored")
    from conftest import Target
    t = own_target()
    # Restart with a second, narrowly scoped role next to the admin.
    t.stop()
    cfg = (t.dir / "kbs.toml").read_text().replace(
        'acls = [{ role = "admin", allowed_endpoints = "^/kbs/v0/.+$" }]',
        'acls = [{ role = "admin", allowed_endpoints = "^/kbs/v0/.+$" },\n'
        '        { role = "reader", allowed_endpoints = "^/kbs/v0/reference-value/.+$" }]')
    import conftest
    t.kbs = conftest.start(cfg, t.dir, name="scoped")
    t.url, t.port = t.kbs.url(), t.kbs.port
    hdr = bearer(pki.admin_token(role="reader"))
    before = t.state()
    attempts = [
        ("POST", "/kbs/v0/resource-policy?/kbs/v0/reference-value/x", f'{{"policy":"{POLICY}"}}'),
        ("POST", "/kbs/v0/reference-value/..%2Fresource-policy", f'{{"policy":"{POLICY}"}}'),
        ("POST", "/kbs/v0/reference-value/%2e%2e/resource-policy", f'{{"policy":"{POLICY}"}}'),
        ("POST", f"/kbs/v0/reference-value/../resource/{SECRET_PATH}", "x"),
        ("POST", f"/kbs/v0/resource/{SECRET_PATH}?/kbs/v0/reference-value/x", "x"),
        ("POST", "/kbs/v0/reference-value/x/../../resource-policy", f'{{"policy":"{POLICY}"}}'),
        ("POST", "/kbs/v0/reference-value", '{"version":"0.1.0","type":"sample","payload":"e30="}'),
    ]
    statuses = []
    for method, path, body in attempts:
        req = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {hdr['Authorization']}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}")
        out = t.raw(req.encode())
        status = out.split(b" ", 2)[1].decode() if out.startswith(b"HTTP/1.1 ") else "closed"
        statuses.append(status)
        assert status in ("401", "404"), (path, out[:300])
    # The role still does what it may.
    r = t.session().http.get(f"{t.url}/kbs/v0/reference-value/svn", headers=hdr)
    assert r.status_code == 200, r.text
    attack.observed(" ".join(statuses) + "; GET reference-value/svn 200")
    t.assert_unchanged(before)
