"""Hand-made JWS/JWT for the token attacks: exact control over every header member."""
import base64
import hashlib
import hmac
import json
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def enc(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def split(token: str):
    h, p, s = token.split(".")
    return json.loads(unb64url(h)), json.loads(unb64url(p)), s


def load_key(path):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def sign(header: dict, payload, key) -> str:
    """ES256/ES384 for EC keys, EdDSA for Ed25519; `payload` may be raw text."""
    body = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    signing_input = f"{enc(header)}.{b64url(body.encode())}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(signing_input.encode())
    else:
        size = (key.curve.key_size + 7) // 8
        h = hashes.SHA256() if size == 32 else hashes.SHA384()
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(h)))
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return f"{signing_input}.{b64url(sig)}"


def hs256(header: dict, payload: dict, secret: bytes) -> str:
    signing_input = f"{enc(header)}.{enc(payload)}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def ec_jwk(key, x5c=None) -> dict:
    nums = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "alg": "ES256", "x": b64url(nums.x.to_bytes(32, "big")),
           "y": b64url(nums.y.to_bytes(32, "big"))}
    if x5c:
        jwk["x5c"] = x5c
    return jwk


def der_b64(cert_pem_path) -> list:
    """x5c entries (standard base64 DER) for every certificate in a PEM file."""
    out = subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", str(cert_pem_path)], capture_output=True,
                         check=True).stdout
    p7 = subprocess.run(["openssl", "pkcs7", "-print_certs"], input=out, capture_output=True, check=True).stdout
    certs = []
    for block in p7.decode().split("-----BEGIN CERTIFICATE-----")[1:]:
        b64 = block.split("-----END CERTIFICATE-----")[0]
        certs.append("".join(b64.split()))
    return certs


def attacker_ca(d: Path):
    """An attacker's own CA and P-256 leaf, shaped like the KBS's token signer chain."""
    d.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run([str(x) for x in a], check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
        d / "ca.key", "-out", d / "ca.crt", "-days", "2", "-subj", "/CN=coco-trust test token CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", d / "leaf.key",
        "-out", d / "leaf.csr", "-subj", "/CN=coco-trust test token signer")
    run("openssl", "x509", "-req", "-in", d / "leaf.csr", "-CA", d / "ca.crt", "-CAkey", d / "ca.key",
        "-CAcreateserial", "-out", d / "leaf.crt", "-days", "2")
    return d / "leaf.key", der_b64(d / "leaf.crt") + der_b64(d / "ca.crt")
