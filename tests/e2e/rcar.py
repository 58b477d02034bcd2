"""An independent Python implementation of the client side of RCAR (KBS protocol 0.4.0) with the
sample TEE, used to drive the KBS at the wire level (negative cases need byte-exact control)."""
import base64
import hashlib
import json

import requests
from cryptography.hazmat.primitives.asymmetric import ec


def b64url_int(n: int, size: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()


def jcs(obj) -> bytes:
    # For strings, integers and objects (all this protocol hashes) JCS equals sorted compact JSON.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class TeeKey:
    def __init__(self):
        self.priv = ec.generate_private_key(ec.SECP256R1())
        nums = self.priv.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
                    "x": b64url_int(nums.x, 32), "y": b64url_int(nums.y, 32)}

    def jwcrypto_key(self):
        from jwcrypto import jwk
        from cryptography.hazmat.primitives import serialization
        pem = self.priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        return jwk.JWK.from_pem(pem)


def report_data(nonce: str, tee_pubkey: dict, additional: str = "") -> str:
    digest = hashlib.sha384(jcs({"tee-pubkey": tee_pubkey, "nonce": nonce, "additional-evidence": additional})).digest()
    return base64.b64encode(digest).decode()


class Session:
    def __init__(self, url: str, ca: str):
        self.url = url
        self.http = requests.Session()
        # REQUESTS_CA_BUNDLE in the environment would silently override the session's CA.
        self.http.trust_env = False
        self.http.verify = str(ca)

    def auth(self, version="0.4.0", tee="sample"):
        return self.http.post(f"{self.url}/kbs/v0/auth", json={"version": version, "tee": tee, "extra-params": ""})

    def attest(self, nonce, key: TeeKey, rd=None, init_data=None):
        body = {"runtime-data": {"nonce": nonce, "tee-pubkey": key.jwk},
                "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": rd or report_data(nonce, key.jwk)},
                                 "additional_evidence": ""}}
        if init_data is not None:
            body["init-data"] = {"format": "toml", "body": init_data}
        return self.http.post(f"{self.url}/kbs/v0/attest", json=body)

    def handshake(self, key: TeeKey):
        r = self.auth()
        assert r.status_code == 200, r.text
        nonce = r.json()["nonce"]
        r = self.attest(nonce, key)
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def resource(self, path, bearer=None):
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return self.http.get(f"{self.url}/kbs/v0/resource/{path}", headers=headers)


def decrypt(jwe_json: dict, key: TeeKey) -> bytes:
    from jwcrypto import jwe
    token = jwe.JWE()
    token.deserialize(json.dumps(jwe_json), key=key.jwcrypto_key())
    return token.payload


def error_type(resp) -> str:
    body = resp.json()
    assert body["type"].startswith("https://github.com/confidential-containers/kbs/errors/")
    assert isinstance(body["detail"], str) and body["detail"]
    return body["type"].rsplit("/", 1)[1]
