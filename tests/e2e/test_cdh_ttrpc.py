"""The ttRPC services kata-agent calls, against a real `kbs` and a real `cdh`: every AA and CDH
method through a client that is not ours (containerd's Go ttrpc module, tests/ttrpc-client), and
malformed or oversized frames through raw sockets."""
import base64
import json
import os
import struct
import subprocess
import time

import pytest

from conftest import bgcheck_config
from test_cdh import admin, cdh_toml, set_policy, set_resource, start_cdh, swtpm  # noqa: F401 (fixtures)
import ttrpc_client as tc

AA = tc.AA


@pytest.fixture(scope="module")
def go_client():
    return tc.GoClient(tc.build_client())


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sealed_secret(kbs, pki, tmp_path, target_uri):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}
    set_resource(kbs, pki, tmp_path, "default/sealed-key/k1", json.dumps(jwk).encode())
    header = b64u(json.dumps({"alg": "ES256", "kid": "kbs:///default/sealed-key/k1"}).encode())
    payload = b64u(json.dumps({"version": "0.1.0", "type": "vault", "provider": "kbs", "name": target_uri,
                               "provider_settings": {}, "annotations": {}}).encode())
    r, s = decode_dss_signature(key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"sealed.{header}.{payload}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.fixture
def served(pki, start_kbs, start_cdh, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secret = os.urandom(32)
    set_resource(kbs, pki, tmp_path, "one/two/three", secret)
    set_resource(kbs, pki, tmp_path, "denied/key/x", b"nope")
    set_policy(kbs, pki, tmp_path)
    cdh = start_cdh(cdh_toml(kbs.url(), pki))
    return kbs, cdh, secret


def test_aa_methods_through_containerd_ttrpc(go_client, served):
    from cryptography.hazmat.primitives import serialization

    _, cdh, _ = served
    sock = cdh.aa_socket
    assert go_client.call(sock, AA, "GetTeeType") == (0, {"tee": "sample"})
    code, resp = go_client.call(sock, AA, "GetEvidence", {"RuntimeData": base64.b64encode(b"nonce-1").decode()})
    assert code == 0, resp
    ev = json.loads(base64.b64decode(resp["Evidence"]))
    assert ev == {"svn": "1", "report_data": base64.b64encode(b"nonce-1").decode()}
    code, resp = go_client.call(sock, AA, "GetAdditionalEvidence", {"RuntimeData": base64.b64encode(b"x").decode()})
    assert code == 0 and json.loads(base64.b64decode(resp["Evidence"])) == {}
    code, resp = go_client.call(sock, AA, "GetToken", {"TokenType": "kbs"})
    assert code == 0, resp
    tok = json.loads(base64.b64decode(resp["Token"]))
    assert tok["token"].count(".") == 2
    serialization.load_pem_private_key(tok["tee_keypair"].encode(), password=None)
    code, msg = go_client.call(sock, AA, "GetToken", {"TokenType": "coco_as"})
    assert code == 3 and "coco_as" in msg  # INVALID_ARGUMENT
    # The sample TEE has no measurement registers: a clear "not supported".
    code, msg = go_client.call(sock, AA, "ExtendRuntimeMeasurement",
                               {"Domain": "d", "Operation": "o", "Content": "c"})
    assert code == 12 and "not enabled" in msg, msg
    # Declared by the proto, implemented by nobody upstream: UNIMPLEMENTED.
    code, msg = go_client.call(sock, AA, "BindInitData", {"Digest": base64.b64encode(b"x" * 32).decode()})
    assert code == 12 and "BindInitData" in msg
    # The AA socket does not serve CDH services.
    code, msg = go_client.call(sock, "api.GetResourceService", "GetResource", {"ResourcePath": "kbs:///a/b/c"})
    assert code == 12 and "api.GetResourceService" in msg


def test_cdh_methods_through_containerd_ttrpc(go_client, served, pki, tmp_path):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kbs, cdh, secret = served
    sock = cdh.cdh_socket
    code, resp = go_client.call(sock, "api.GetResourceService", "GetResource", {"ResourcePath": "kbs:///one/two/three"})
    assert code == 0 and base64.b64decode(resp["Resource"]) == secret
    code, msg = go_client.call(sock, "api.GetResourceService", "GetResource", {"ResourcePath": "kbs:///denied/key/x"})
    assert code == 7 and "PolicyDeny" in msg, msg  # PERMISSION_DENIED, the KBS's reason
    code, msg = go_client.call(sock, "api.GetResourceService", "GetResource", {"ResourcePath": "kbs:///one/two/nope"})
    assert code == 5, msg  # NOT_FOUND
    code, msg = go_client.call(sock, "api.GetResourceService", "GetResource", {"ResourcePath": "kbs:///../x/y"})
    assert code == 3, msg

    # Sealed secrets round trip (vault type, signature checked with a KBS-held JWK).
    sealed = sealed_secret(kbs, pki, tmp_path, "kbs:///one/two/three")
    code, resp = go_client.call(sock, "api.SealedSecretService", "UnsealSecret",
                                {"secret": base64.b64encode(sealed.encode()).decode()})
    assert code == 0 and base64.b64decode(resp["plaintext"]) == secret
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    code, msg = go_client.call(sock, "api.SealedSecretService", "UnsealSecret",
                               {"secret": base64.b64encode(tampered.encode()).decode()})
    assert code != 0 and "signature" in msg, msg

    # ocicrypt key provider: the layer key is wrapped with a KEK held by the KBS.
    kek, iv = os.urandom(32), os.urandom(12)
    set_resource(kbs, pki, tmp_path, "default/key/kek1", kek)
    optsdata = json.dumps({"symkey": base64.b64encode(os.urandom(32)).decode(), "cipheroptions": {}}).encode()
    packet = {"kid": "kbs:///default/key/kek1", "wrapped_data": base64.b64encode(AESGCM(kek).encrypt(iv, optsdata, None)).decode(),
              "iv": base64.b64encode(iv).decode(), "wrap_type": "A256GCM"}
    kp_in = {"op": "keyunwrap", "keywrapparams": {},
             "keyunwrapparams": {"dc": {"Parameters": {}}, "annotation": base64.b64encode(json.dumps(packet).encode()).decode()}}
    code, resp = go_client.call(sock, "keyprovider.KeyProviderService", "UnWrapKey",
                                {"KeyProviderKeyWrapProtocolInput": base64.b64encode(json.dumps(kp_in).encode()).decode()})
    assert code == 0, resp
    out = json.loads(base64.b64decode(resp["KeyProviderKeyWrapProtocolOutput"]))
    assert bytes(out["keyunwrapresults"]["optsdata"]) == optsdata
    packet["wrapped_data"] = base64.b64encode(AESGCM(os.urandom(32)).encrypt(iv, optsdata, None)).decode()
    kp_in["keyunwrapparams"]["annotation"] = base64.b64encode(json.dumps(packet).encode()).decode()
    code, msg = go_client.call(sock, "keyprovider.KeyProviderService", "UnWrapKey",
                               {"KeyProviderKeyWrapProtocolInput": base64.b64encode(json.dumps(kp_in).encode()).decode()})
    assert code == 7 and "GCM" in msg, msg
    code, msg = go_client.call(sock, "keyprovider.KeyProviderService", "WrapKey", {})
    assert code == 12

    # Secure mount of an unknown volume type: a clear UNIMPLEMENTED.
    code, msg = go_client.call(sock, "api.SecureMountService", "SecureMount",
                               {"volume_type": "alibaba-cloud-oss", "options": {"a": "b"}, "mount_point": "/x"})
    assert code == 12 and "alibaba-cloud-oss" in msg
    # Unknown services and methods: UNIMPLEMENTED, naming what was asked for.
    code, msg = go_client.call(sock, AA, "GetTeeType")
    assert code == 12 and AA in msg


def test_deadlines_answer_deadline_exceeded_and_abandon_the_work(go_client, pki, start_kbs, start_cdh, tmp_path):
    from slow_proxy import SlowProxy

    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secret = os.urandom(32)
    set_resource(kbs, pki, tmp_path, "one/two/three", secret)
    set_policy(kbs, pki, tmp_path)
    proxy = SlowProxy(kbs.port, 0.5)  # every KBS flight half a second late: a fetch takes seconds
    try:
        cdh = start_cdh(cdh_toml(proxy.url(), pki))
        sock, get = cdh.cdh_socket, {"ResourcePath": "kbs:///one/two/three"}
        # containerd's client sends the call's timeout as timeout_nano: answered at the deadline.
        t0 = time.time()
        code, msg = go_client.call(sock, "api.GetResourceService", "GetResource", get, server_timeout="300ms")
        took = time.time() - t0
        assert code == 4 and "deadline exceeded" in msg and "300 ms" in msg, msg  # DEADLINE_EXCEEDED
        assert took < 1.5, took
        # Its only caller gone, the fetch was cancelled; a call without a deadline starts afresh.
        t0 = time.time()
        code, resp = go_client.call(sock, "api.GetResourceService", "GetResource", get)
        assert code == 0 and base64.b64decode(resp["Resource"]) == secret
        assert time.time() - t0 > 1.0  # a real fetch through the slow proxy, not a stale answer
        assert json.loads(cdh.get("/info")[1])["cancelled_operations"] == 1
        # One connection, one resource: stream 1 with a deadline, stream 3 without (joining the same
        # fetch). Stream 1 is answered DEADLINE_EXCEEDED and never again; stream 3 gets the secret.
        payload = tc.pb_bytes(1, b"kbs:///one/two/three")
        c = tc.RawConn(sock)
        c.s.settimeout(30)
        c.send(tc.frame(1, tc.request("api.GetResourceService", "GetResource", payload, timeout_nano=200_000_000)) +
               tc.frame(3, tc.request("api.GetResourceService", "GetResource", payload)))
        stream, code, msg, _ = c.response()
        assert (stream, code) == (1, 4), (stream, code, msg)
        stream, code, msg, body = c.response()
        assert (stream, code) == (3, 0) and tc.parse_fields(body)[1] == secret, (stream, code, msg)
        # A deadline already past (a negative timeout) is answered at once, the method never run.
        c.send(tc.frame(5, tc.request("api.GetResourceService", "GetResource", payload, timeout_nano=-1)))
        assert c.response()[:2] == (5, 4)
        c.send(tc.frame(7, tc.request("api.NoSuchService", "X")))
        assert c.response()[:2] == (7, 12)  # nothing else arrived for streams 1 or 5 in between
        c.close()
        assert json.loads(cdh.get("/info")[1])["cancelled_operations"] == 1  # stream 3 kept its fetch
    finally:
        proxy.stop()


def test_runtime_measurement_through_ttrpc(go_client, swtpm, tmp_path, start_cdh):  # noqa: F811
    import hashlib

    tcti, env = swtpm
    (tmp_path / "aa.toml").write_text("[eventlog_config]\nenable_eventlog = true\ninit_pcr = 23\n")
    log = tmp_path / "aael"
    cdh = start_cdh("", "--aa-config", tmp_path / "aa.toml", "--tee", "tpm", "--tpm-tcti", tcti,
                    "--eventlog-path", log)
    code, resp = go_client.call(cdh.aa_socket, AA, "ExtendRuntimeMeasurement",
                                {"Domain": "example.org", "Operation": "Start", "Content": "app-1",
                                 "RegisterIndex": 16})
    assert code == 0 and resp == {}, resp
    text = b"example.org Start app-1"
    tagged = (0x4141454C).to_bytes(4, "little") + len(text).to_bytes(4, "little") + text
    want = hashlib.sha256(bytes(32) + hashlib.sha256(tagged).digest()).hexdigest()
    pcr = subprocess.run(["tpm2_pcrread", "sha256:16"], env=env, capture_output=True, text=True).stdout
    assert want.upper() in pcr.upper().replace("0X", "")
    assert log.read_bytes().endswith(tagged)
    code, msg = go_client.call(cdh.aa_socket, AA, "ExtendRuntimeMeasurement",
                               {"Domain": "a b", "Operation": "o", "Content": "c"})
    assert code == 3 and "single words" in msg


def test_malformed_and_oversized_frames_are_refused(go_client, start_cdh):
    cdh = start_cdh("")
    sock = cdh.aa_socket
    tee = tc.request(AA, "GetTeeType")

    c = tc.RawConn(sock)
    # Undecodable Request protobuf: INVALID_ARGUMENT on that stream, connection kept.
    c.send(tc.frame(1, b"\x0a\xff\xff\xff\xff\x0f"))
    stream, code, msg, _ = c.response()
    assert (stream, code) == (1, 3) and "protobuf" in msg, msg
    # A Request without a method.
    c.send(tc.frame(3, tc.pb_bytes(1, AA.encode())))
    assert c.response()[:2] == (3, 3)
    # Oversized (4 MiB + 1): RESOURCE_EXHAUSTED, the bytes are discarded, the stream goes on.
    big = 4 * 1024 * 1024 + 1
    c.send(tc.frame(5, b"\0" * big))
    stream, code, msg, _ = c.response()
    assert (stream, code) == (5, 8) and "exceeds" in msg, msg
    # Several requests in flight on one connection, answered by stream id.
    c.send(b"".join(tc.frame(s, tee) for s in (7, 9, 11)))
    got = {c.response()[0] for _ in range(3)}
    assert got == {7, 9, 11}
    c.close()

    for bad in (tc.frame(2, tee),                          # even (server-side) stream id
                tc.frame(13, tee, typ=3),                  # a data frame: no streaming here
                tc.frame(13, tee, typ=2),                  # a response from the client
                tc.frame(15, b"", length=0x01000000)):     # not a ttrpc frame (reserved byte set)
        c = tc.RawConn(sock)
        c.send(bad)
        assert c.closed(), bad[:10].hex()
        c.close()
    # A streaming request is answered, not served.
    c = tc.RawConn(sock)
    c.send(tc.frame(1, tee, flags=2))
    assert c.response()[1] == 12
    # Truncated frames and random bytes, then hang-ups.
    c.send(tc.frame(3, tee)[:7])
    c.close()
    rnd = __import__("random").Random(7)
    for _ in range(100):
        c = tc.RawConn(sock)
        try:
            c.send(bytes([0, 0, 0, rnd.randrange(40)]) + os.urandom(rnd.randrange(1, 60)))
        except OSError:
            pass
        c.close()
    # Still serving, and the daemon never crashed.
    assert go_client.call(sock, AA, "GetTeeType") == (0, {"tee": "sample"})
    assert cdh.proc.poll() is None


def test_socket_paths_and_modes(start_cdh, tmp_path):
    cdh = start_cdh("")
    assert oct(os.stat(cdh.aa_socket).st_mode & 0o777) == "0o600"
    assert oct(os.stat(cdh.cdh_socket).st_mode & 0o777) == "0o600"
    # A second daemon never steals a live socket from the first.
    other = tmp_path / "other.log"
    p = subprocess.run([str(tc.BUILD / "bin" / "cdh"), "--tee", "sample", "--listen", "127.0.0.1:0",
                        "--aa-socket", str(cdh.aa_socket), "--cdh-socket", "none"], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode != 0 and "another server is listening" in p.stderr, p.stderr
    # A regular file at the socket path is never replaced.
    f = tmp_path / "file.sock"
    f.write_text("keep")
    p = subprocess.run([str(tc.BUILD / "bin" / "cdh"), "--tee", "sample", "--listen", "127.0.0.1:0",
                        "--aa-socket", str(f), "--cdh-socket", "none"], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "not a socket" in p.stderr and f.read_text() == "keep"
    del other
