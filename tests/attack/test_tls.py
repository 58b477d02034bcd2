"""TLS downgrade attacks, with hand-built ClientHellos (no client library would send them)."""
import os
import socket
import subprocess

import pytest

ALERTS = {40: "handshake_failure", 47: "illegal_parameter", 70: "protocol_version", 71: "insufficient_security",
          86: "inappropriate_fallback", 100: "no_renegotiation", 50: "decode_error", 10: "unexpected_message"}

GOOD_SUITES = [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9]  # ECDHE-ECDSA/RSA AES-GCM, CHACHA20
WEAK_SUITES = [0xC007, 0xC008, 0xC006, 0x0005, 0x0004, 0x000A, 0x0002, 0x0001, 0x0003, 0x0017, 0x0034, 0xC018,
               0x0019]  # RC4, 3DES, NULL, EXPORT, anonymous DH/ECDH


def ext(kind: int, data: bytes) -> bytes:
    return kind.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data


def extensions(sni="127.0.0.1") -> bytes:
    name = sni.encode()
    server_name = (len(name) + 3).to_bytes(2, "big") + b"\x00" + len(name).to_bytes(2, "big") + name
    groups = b"\x00\x04\x00\x17\x00\x1d"
    sigalgs = b"\x00\x06\x04\x03\x08\x04\x04\x01"
    return ext(0, server_name) + ext(10, groups) + ext(11, b"\x01\x00") + ext(13, sigalgs) + ext(0xFF01, b"\x00")


def client_hello(version: int, suites, record_version=0x0301, exts=None) -> bytes:
    body = version.to_bytes(2, "big") + os.urandom(32) + b"\x00"
    body += (2 * len(suites)).to_bytes(2, "big") + b"".join(s.to_bytes(2, "big") for s in suites) + b"\x01\x00"
    e = extensions() if exts is None else exts
    if e:
        body += len(e).to_bytes(2, "big") + e
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16" + record_version.to_bytes(2, "big") + len(hs).to_bytes(2, "big") + hs


def exchange(target, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        try:
            while len(out) < 16384:
                chunk = s.recv(16384)
                if not chunk:
                    break
                out += chunk
                if out[:1] == b"\x15" or (out[:1] == b"\x16" and len(out) >= 5 + 6 + 32):
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def alert_of(out: bytes):
    if len(out) >= 7 and out[0] == 0x15:
        return ALERTS.get(out[6], str(out[6]))
    if out[:1] == b"\x16":
        return "ServerHello"
    return "closed" if not out else f"other {out[:8].hex()}"


def refused_hello(target, attack, hello, want):
    before = target.state()
    got = alert_of(exchange(target, hello))
    attack.observed(f"alert {got}")
    assert got in want, got
    target.assert_unchanged(before)


@pytest.mark.parametrize("version,name", [(0x0300, "SSLv3"), (0x0301, "TLS1.0"), (0x0302, "TLS1.1")],
                         ids=["ssl3", "tls10", "tls11"])
def test_tls_protocol_downgrade(target, attack, version, name):
    """A client that offers at most an obsolete protocol version."""
    attack.expect(f"{name} refused with a protocol_version alert")
    # OpenSSL 3 has no SSLv3 code at all: it cannot even recognise the version it refuses.
    want = ("protocol_version", "handshake_failure") if version == 0x0300 else ("protocol_version",)
    refused_hello(target, attack, client_hello(version, GOOD_SUITES + [0xC009, 0xC013, 0x002F]), want)


def test_tls_weak_ciphers(target, attack):
    """TLS 1.2 offering only RC4, 3DES, NULL, EXPORT and anonymous suites."""
    attack.expect("handshake_failure (no shared cipher)")
    refused_hello(target, attack, client_hello(0x0303, WEAK_SUITES), ("handshake_failure", "insufficient_security"))


def test_tls_fallback_scsv(target, attack):
    """A TLS 1.2 hello carrying TLS_FALLBACK_SCSV: a man in the middle forced a retry downwards."""
    attack.expect("inappropriate_fallback alert (RFC 7507)")
    refused_hello(target, attack, client_hello(0x0303, GOOD_SUITES + [0x5600]), ("inappropriate_fallback",))


def test_tls12_downgrade_sentinel(target, attack):
    """A TLS 1.2-only hello is served, but the ServerHello random carries RFC 8446's DOWNGRD
    sentinel so a TLS 1.3 client behind a downgrading middlebox notices."""
    attack.expect("ServerHello TLS 1.2 whose random ends in DOWNGRD\\x01")
    out = exchange(target, client_hello(0x0303, GOOD_SUITES))
    assert out[:1] == b"\x16" and out[5] == 0x02, out[:16].hex()
    version, random = out[9:11], out[11:43]
    attack.observed(f"version {version.hex()} random tail {random[-8:]!r}")
    assert version == b"\x03\x03" and random[-8:] == b"DOWNGRD\x01"


def test_tls_sslv2_hello(target, attack):
    """An SSLv2-format ClientHello."""
    attack.expect("no ServerHello; connection refused or alerted")
    hello = b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + bytes.fromhex("0700c0050080030080010080080080060040") + \
        bytes.fromhex("040080020080") + os.urandom(16)
    before = target.state()
    got = alert_of(exchange(target, hello))
    attack.observed(got)
    assert got != "ServerHello"
    target.assert_unchanged(before)


def test_plaintext_http_on_tls_port(target, attack):
    """Plain HTTP to the TLS port (a client tricked out of TLS must get nothing)."""
    attack.expect("no HTTP response in clear")
    before = target.state()
    out = exchange(target, b"GET /kbs/v0/resource/attack/secret/key HTTP/1.1\r\nHost: x\r\n\r\n")
    attack.observed(alert_of(out))
    assert b"HTTP/1." not in out and b"attack-suite" not in out
    target.assert_unchanged(before)


def test_tls_client_renegotiation(target, attack):
    """Client-initiated renegotiation on an established TLS 1.2 connection."""
    attack.expect("renegotiation refused (no_renegotiation alert or close)")
    before = target.state()
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{target.port}", "-tls1_2", "-CAfile",
                        str(target.pki.tls_cert)], input="R\n", capture_output=True, text=True, timeout=20)
    text = p.stdout + p.stderr
    attack.observed(" ".join(line for line in text.splitlines() if "RENEG" in line or "renegotiation" in line)[:200])
    assert "RENEGOTIATING" in text, text[-500:]
    assert "no renegotiation" in text, text[-500:]
    target.assert_unchanged(before)
