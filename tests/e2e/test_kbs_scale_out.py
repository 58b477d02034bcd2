"""Two KBS replicas with no session store between them: they share only the cookie-sealing key
(KBS_SESSION_KEY_FILE), the token signer and the storage. A handshake begun on one finishes on the
other, and a policy set through one takes effect on the other."""
import base64
import os
import time

import rcar
from conftest import bgcheck_config

ALLOW_ALL = "package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == \"resource\"\n"


def test_handshake_and_policy_cross_replicas(pki, start_kbs, tmp_path):
    key = tmp_path / "session.key"
    key.write_text(os.urandom(32).hex() + "\n")
    env = dict(os.environ, KBS_SESSION_KEY_FILE=str(key))
    cfg = bgcheck_config(pki, tmp_path / "shared-storage")
    a = start_kbs(cfg, name="replica-a", env=env)
    b = start_kbs(cfg, name="replica-b", env=env)
    lone = start_kbs(bgcheck_config(pki, tmp_path / "other-storage"), name="lone")

    hdr = {"Authorization": f"Bearer {pki.admin_token()}"}
    admin = rcar.Session(a.url(), pki.tls_cert)
    assert admin.http.post(f"{a.url()}/kbs/v0/resource/one/two/three", data=b"replicated",
                           headers=hdr).status_code == 200
    policy = base64.urlsafe_b64encode(ALLOW_ALL.encode()).rstrip(b"=").decode()
    assert admin.http.post(f"{a.url()}/kbs/v0/resource-policy", json={"policy": policy},
                           headers=hdr).status_code == 200

    tee = rcar.TeeKey()
    s = rcar.Session(a.url(), pki.tls_cert)
    nonce = s.auth().json()["nonce"]              # replica A issues the challenge ...
    s.url = b.url()
    r = s.attest(nonce, tee)                      # ... replica B appraises the evidence
    assert r.status_code == 200, r.text
    token = r.json()["token"]

    got = rcar.Session(a.url(), pki.tls_cert).resource("one/two/three", bearer=token)
    assert got.status_code == 200, got.text
    assert rcar.decrypt(got.json(), tee) == b"replicated"

    # B started with the default policy (which refuses sample evidence) and picks up the policy
    # stored through A within a few seconds.
    deadline = time.time() + 10
    while True:
        r = rcar.Session(b.url(), pki.tls_cert).resource("one/two/three", bearer=token)
        if r.status_code == 200 or time.time() > deadline:
            break
        assert rcar.error_type(r) == "PolicyDeny"
        time.sleep(0.5)
    assert r.status_code == 200, r.text
    assert rcar.decrypt(r.json(), tee) == b"replicated"

    # A KBS without the shared key cannot open the cookie.
    s2 = rcar.Session(a.url(), pki.tls_cert)
    nonce = s2.auth().json()["nonce"]
    s2.url = lone.url()
    r = s2.attest(nonce, rcar.TeeKey())
    assert r.status_code == 401 and "not issued by this KBS" in r.json()["detail"]
