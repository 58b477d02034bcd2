"""The guest agent end to end: a real `kbs` (TLS, EAR tokens, Rego resource policy) and a real
`cdh --tee sample` on loopback; workloads fetch secrets with plain HTTP from the CDH API."""
import base64
import http.client
import json
import os
import re
import select
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, Pki, bgcheck_config, run

POLICY = """package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	data["resource-path"][0] != "denied"
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
"""


def admin(kbs, pki, tmp_path, *args):
    token = tmp_path / "admin-token"
    token.write_text(pki.admin_token())
    return run([BIN / "kbs-client", "--url", kbs.url(), "--cert-file", pki.tls_cert, "config",
                "--admin-token-file", token, *args])


def set_resource(kbs, pki, tmp_path, path, data: bytes):
    f = tmp_path / ("res-" + path.replace("/", "_"))
    f.write_bytes(data)
    admin(kbs, pki, tmp_path, "set-resource", "--path", path, "--resource-file", f)


def set_policy(kbs, pki, tmp_path, text=POLICY):
    (tmp_path / "policy.rego").write_text(text)
    admin(kbs, pki, tmp_path, "set-resource-policy", "--policy-file", tmp_path / "policy.rego")


def attestations(kbs, pki) -> int:
    """Successful RCAR handshakes, counted by the KBS itself (/metrics)."""
    ctx = ssl.create_default_context(cafile=str(pki.tls_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", kbs.port, context=ctx, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(int(float(m)) for m in re.findall(r'^kbs_attestation_successes_total\{[^}]*\} (\S+)$', text, re.M))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fixed_port_config(pki, storage, port, signer=None):
    cfg = bgcheck_config(pki, storage).replace('sockets = ["127.0.0.1:0"]', f'sockets = ["127.0.0.1:{port}"]')
    if signer is not None:  # another token CA and signer, same TLS identity
        cfg = cfg.replace(str(pki.ca_cert), str(signer.ca_cert)).replace(str(pki.signer_key), str(signer.signer_key))
        cfg = cfg.replace(str(pki.signer_cert), str(signer.signer_cert))
    return cfg


def cdh_toml(kbs_url, pki, extra=""):
    cert = Path(pki.tls_cert).read_text()
    return f"""[kbc]
name = "cc_kbc"
url = "{kbs_url}"
kbs_cert = '''{cert}'''
{extra}
"""


class Cdh:
    def __init__(self, config: Path, log: Path, *extra):
        self.log = log
        # ttRPC sockets in the test's directory: never upstream's paths, which another agent (or
        # a concurrent run) may serve.
        self.cdh_socket, self.aa_socket = log.parent / f"{log.stem}-cdh.sock", log.parent / f"{log.stem}-aa.sock"
        self.proc = subprocess.Popen([str(BIN / "cdh"), "-c", str(config), "--tee", "sample", "--listen",
                                      "127.0.0.1:0", "--kbs-attempts", "2", "--cdh-socket", str(self.cdh_socket),
                                      "--aa-socket", str(self.aa_socket), *map(str, extra)],
                                     stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline()
                m = re.match(r"cdh: listening on 127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"cdh exited with {self.proc.returncode}: {log.read_text()}")
        self.proc.kill()
        raise RuntimeError(f"cdh did not start: {log.read_text()}")

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, path, body=body)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def get(self, path):
        return self.request("GET", path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def start_cdh(tmp_path):
    started = []

    def start(config_text, *extra, name="cdh"):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(config_text)
        c = Cdh(cfg, tmp_path / f"{name}.log", *extra)
        started.append(c)
        return c

    yield start
    for c in started:
        assert c.stop() == 0, c.log.read_text()[-2000:]


def test_resource_via_cdh_one_attestation_for_ten_fetches(pki, start_kbs, start_cdh, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secret = os.urandom(32)
    set_resource(kbs, pki, tmp_path, "one/two/three", secret)
    set_policy(kbs, pki, tmp_path)
    cdh = start_cdh(cdh_toml(kbs.url(), pki))
    before = attestations(kbs, pki)
    for _ in range(10):
        status, body = cdh.get("/cdh/resource/one/two/three")
        assert status == 200, body
        assert body == secret
    assert attestations(kbs, pki) - before == 1
    info = json.loads(cdh.get("/info")[1])
    assert info["tee"] == "sample" and info["attestations"] == 1 and info["fetches"] == 10
    # Secrets never reach the CDH log.
    log = cdh.log.read_bytes()
    assert secret not in log and secret.hex().encode() not in log and base64.b64encode(secret) not in log


def test_denied_resource_is_reported_after_one_handshake(pki, start_kbs, start_cdh, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    set_resource(kbs, pki, tmp_path, "denied/key/x", b"nope")
    set_policy(kbs, pki, tmp_path)
    cdh = start_cdh(cdh_toml(kbs.url(), pki))
    before = attestations(kbs, pki)
    t0 = time.time()
    status, body = cdh.get("/cdh/resource/denied/key/x")
    assert status == 403, body
    assert b"PolicyDeny" in body and b"401" in body
    status, body = cdh.get("/cdh/resource/denied/key/x")
    assert status == 403
    assert attestations(kbs, pki) - before == 1  # upstream would have attested 3 times per fetch
    assert time.time() - t0 < 10
    # A missing resource is a distinct 404 (Trustee says 401 PluginInternalError) and, the token
    # being fine, costs no re-attestation either.
    status, body = cdh.get("/cdh/resource/one/two/missing")
    assert status == 404 and b"not found" in body, body
    assert attestations(kbs, pki) - before == 1


def test_kbs_restart_is_survived(pki, start_kbs, start_cdh, tmp_path):
    port = free_port()
    storage = tmp_path / "storage"
    kbs = start_kbs(fixed_port_config(pki, storage, port), name="kbs-1")
    secret = os.urandom(16)
    set_resource(kbs, pki, tmp_path, "one/two/three", secret)
    set_policy(kbs, pki, tmp_path)
    cdh = start_cdh(cdh_toml(kbs.url(), pki))
    assert cdh.get("/cdh/resource/one/two/three") == (200, secret)
    kbs.stop()
    status, body = cdh.get("/cdh/resource/one/two/three")
    assert status == 502 and b"after 2 attempts" in body, body
    # The KBS comes back with a new token signer: the old token is refused, the CDH re-attests.
    (tmp_path / "pki2").mkdir()
    signer = Pki(tmp_path / "pki2")
    kbs2 = start_kbs(fixed_port_config(pki, storage, port, signer=signer), name="kbs-2")
    set_policy(kbs2, pki, tmp_path)
    assert cdh.get("/cdh/resource/one/two/three") == (200, secret)
    assert attestations(kbs2, pki) == 1


def test_oneshot_get_resource_and_unseal(pki, start_kbs, tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secret = os.urandom(24)
    set_resource(kbs, pki, tmp_path, "one/two/three", secret)
    set_policy(kbs, pki, tmp_path)
    # The sealing key's public JWK is itself a KBS resource (kid = kbs:// URI).
    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}
    set_resource(kbs, pki, tmp_path, "default/sealed-key/k1", json.dumps(jwk).encode())
    header = b64u(json.dumps({"alg": "ES256", "kid": "kbs:///default/sealed-key/k1"}).encode())
    payload = b64u(json.dumps({"version": "0.1.0", "type": "vault", "provider": "kbs", "name": "kbs:///one/two/three",
                               "provider_settings": {}, "annotations": {}}).encode())
    r, s = decode_dss_signature(key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
    sealed = f"sealed.{header}.{payload}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    cfg = tmp_path / "cdh.toml"
    cfg.write_text(cdh_toml(kbs.url(), pki))
    base = [BIN / "cdh", "-c", cfg, "--tee", "sample", "--kbs-attempts", "2"]
    out = subprocess.run([str(c) for c in base + ["get-resource", "kbs:///one/two/three"]], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == secret
    out = subprocess.run([str(c) for c in base + ["unseal", "-"]], input=sealed.encode(), capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == secret
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    out = subprocess.run([str(c) for c in base + ["unseal", tampered]], capture_output=True)
    assert out.returncode != 0 and b"signature" in out.stderr
    out = subprocess.run([str(c) for c in base + ["get-resource", "kbs:///denied/a/b"]], capture_output=True)
    assert out.returncode != 0 and out.stdout == b""


def test_unseal_and_aa_endpoints(pki, start_kbs, start_cdh, tmp_path):
    from cryptography.hazmat.primitives import serialization

    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    set_policy(kbs, pki, tmp_path)
    cdh = start_cdh(cdh_toml(kbs.url(), pki, "skip_sealed_secret_verification = true"))
    status, body = cdh.get("/aa/token?token_type=kbs")
    assert status == 200, body
    tok = json.loads(body)
    assert tok["token"].count(".") == 2
    serialization.load_pem_private_key(tok["tee_keypair"].encode(), password=None)
    status, body = cdh.get("/aa/evidence?runtime_data=hello")
    assert status == 200 and json.loads(body) == {"svn": "1", "report_data": base64.b64encode(b"hello").decode()}
    status, _ = cdh.get("/aa/token?token_type=oidc")
    assert status == 400
    status, body = cdh.request("POST", "/cdh/unseal", body=b"not-sealed")
    assert status == 400 and b"sealed." in body
    assert cdh.get("/nope")[0] == 404


def test_initdata_reaches_the_kbs(pki, start_kbs, start_cdh, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    set_policy(kbs, pki, tmp_path)
    toml = ('version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"aa.toml" = \'\'\'\n[token_configs.kbs]\n'
            f'url = "{kbs.url()}"\n\'\'\'\n"policy.rego" = "package agent_policy"\n')
    (tmp_path / "initdata.toml").write_text(toml)
    cdh = start_cdh(cdh_toml(kbs.url(), pki), "--initdata", tmp_path / "initdata.toml")
    status, body = cdh.get("/aa/token?token_type=kbs")
    assert status == 200, body
    claims = json.loads(base64.urlsafe_b64decode(json.loads(body)["token"].split(".")[1] + "=="))
    import hashlib
    digest = hashlib.sha384(toml.encode()).digest()
    text = json.dumps(claims)
    assert digest.hex() in text or base64.b64encode(digest).decode() in text or \
        base64.urlsafe_b64encode(digest).rstrip(b"=").decode() in text, text[:2000]


def test_non_loopback_listen_is_refused(tmp_path):
    out = subprocess.run([str(BIN / "cdh"), "--tee", "sample", "--listen", "0.0.0.0:8006"], capture_output=True)
    assert out.returncode == 2 and b"loopback" in out.stderr
    out = subprocess.run([str(BIN / "cdh"), "evidence", "x"], capture_output=True,
                         env={**os.environ, "PATH": os.environ.get("PATH", "")})
    assert out.returncode != 0 and b"--tee sample" in out.stderr  # never a silent sample fallback


@pytest.mark.parametrize("alg", ["ECDH-ES+A256KW-P521", "RSA-OAEP-256"])
def test_tee_key_algorithms(pki, start_kbs, start_cdh, tmp_path, alg):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secret = os.urandom(20)
    set_resource(kbs, pki, tmp_path, "one/two/three", secret)
    set_policy(kbs, pki, tmp_path)
    (tmp_path / "aa.toml").write_text(f'[token_configs.kbs]\nurl = "{kbs.url()}"\ntee_key_algorithm = "{alg}"\n')
    cdh = start_cdh(cdh_toml(kbs.url(), pki), "--aa-config", tmp_path / "aa.toml")
    assert cdh.get("/cdh/resource/one/two/three") == (200, secret)


def test_passport_tokens_interoperate_with_kbs_client(pki, start_kbs, start_cdh, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secret = os.urandom(16)
    set_resource(kbs, pki, tmp_path, "one/two/three", secret)
    set_policy(kbs, pki, tmp_path)
    cfg = tmp_path / "cdh.toml"
    cfg.write_text(cdh_toml(kbs.url(), pki))
    # kbs-client attests with its own RSA key; cdh fetches in passport mode with that token and key.
    tee_key = tmp_path / "tee.key"
    run(["openssl", "genrsa", "-traditional", "-out", tee_key, "2048"])
    token = run([BIN / "kbs-client", "--url", kbs.url(), "--cert-file", pki.tls_cert, "attest", "--tee-key-file",
                 tee_key]).stdout.strip()
    (tmp_path / "token").write_text(token)
    before = attestations(kbs, pki)
    out = subprocess.run([str(c) for c in [BIN / "cdh", "-c", cfg, "--tee", "sample", "--attestation-token",
                                           tmp_path / "token", "--tee-key-file", tee_key, "get-resource",
                                           "kbs:///one/two/three"]], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == secret
    assert attestations(kbs, pki) == before  # passport mode never attests
    # The other way round: the CDH's AA token and exported TEE key drive kbs-client.
    cdh = start_cdh(cdh_toml(kbs.url(), pki))
    tok = json.loads(cdh.get("/aa/token?token_type=kbs")[1])
    (tmp_path / "aa-token").write_text(tok["token"])
    (tmp_path / "aa-key.pem").write_text(tok["tee_keypair"])
    out = run([BIN / "kbs-client", "--url", kbs.url(), "--cert-file", pki.tls_cert, "get-resource",
               "--attestation-token", tmp_path / "aa-token", "--tee-key-file", tmp_path / "aa-key.pem",
               "--path", "one/two/three"])
    assert base64.b64decode(out.stdout.strip()) == secret


@pytest.fixture
def swtpm(tmp_path):
    import shutil
    if not shutil.which("swtpm") or not shutil.which("tpm2_createprimary"):
        pytest.skip("swtpm or tpm2-tools not installed")
    port = free_port()
    while True:  # the swtpm TCTI expects the control channel on port + 1
        try:
            s = socket.socket()
            s.bind(("127.0.0.1", port + 1))
            s.close()
            break
        except OSError:
            port = free_port()
    state = tmp_path / "tpm"
    state.mkdir()
    proc = subprocess.Popen(["swtpm", "socket", "--tpm2", "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1", "--flags",
                             "not-need-init,startup-clear", "--tpmstate", f"dir={state}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tcti = f"swtpm:host=127.0.0.1,port={port}"
    env = {**os.environ, "TPM2TOOLS_TCTI": tcti}
    for _ in range(50):
        if subprocess.run(["tpm2_getrandom", "4"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
    subprocess.run(["tpm2_createprimary", "-Q", "-C", "o", "-G", "rsa2048:rsassa-sha256:null", "-a", attrs, "-c",
                    tmp_path / "ak.ctx"], env=env, check=True)
    subprocess.run(["tpm2_evictcontrol", "-Q", "-C", "o", "-c", tmp_path / "ak.ctx", "0x81010002"], env=env, check=True)
    subprocess.run(["tpm2_flushcontext", "-t"], env=env, check=True)
    yield tcti, env
    proc.terminate()
    proc.wait(10)


def test_tpm_initdata_pcr8_extended_exactly_once(swtpm, tmp_path):
    import hashlib
    tcti, env = swtpm
    toml = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"policy.rego" = "package agent_policy"\n'
    (tmp_path / "initdata.toml").write_text(toml)
    cmd = [str(BIN / "cdh"), "--tee", "tpm", "--tpm-tcti", tcti, "--initdata", str(tmp_path / "initdata.toml"),
           "evidence", "hello"]
    for _ in range(2):  # a restart must not extend again
        out = subprocess.run(cmd, capture_output=True)
        assert out.returncode == 0, out.stderr
        ev = json.loads(out.stdout)
        assert set(ev) == {"report_data", "tpm_quote", "ak_public"} and len(ev["tpm_quote"]["pcrs"]) == 24
    want = hashlib.sha256(bytes(32) + hashlib.sha256(toml.encode()).digest()).hexdigest()
    assert ev["tpm_quote"]["pcrs"][8] == want
    pcr = subprocess.run(["tpm2_pcrread", "sha256:8"], env=env, capture_output=True, text=True).stdout
    assert want.upper() in pcr.upper().replace("0X", "")
    # A different init-data can no longer be bound: start-up is refused.
    (tmp_path / "other.toml").write_text(toml + "# changed\n")
    out = subprocess.run(cmd[:6] + [str(tmp_path / "other.toml"), "evidence", "x"], capture_output=True)
    assert out.returncode != 0 and b"PCR8" in out.stderr


def test_runtime_measurement_api(swtpm, tmp_path, start_cdh):
    import hashlib
    tcti, env = swtpm
    (tmp_path / "aa.toml").write_text("[eventlog_config]\nenable_eventlog = true\ninit_pcr = 23\n")
    log = tmp_path / "aael"
    # Later options win: this CDH attests with the TPM.
    cdh = start_cdh("", "--aa-config", tmp_path / "aa.toml", "--tee", "tpm", "--tpm-tcti", tcti,
                    "--eventlog-path", log)
    body = json.dumps({"domain": "github.com/confidential-containers", "operation": "PullImage",
                       "content": '{"image":"busybox"}'}).encode()
    status, resp = cdh.request("POST", "/aa/aael", body=body)
    assert status == 200 and json.loads(resp) == {"success": "true"}, resp
    text = b'github.com/confidential-containers PullImage {"image":"busybox"}'
    tagged = (0x4141454C).to_bytes(4, "little") + len(text).to_bytes(4, "little") + text
    want = hashlib.sha256(bytes(32) + hashlib.sha256(tagged).digest()).hexdigest()
    pcr = subprocess.run(["tpm2_pcrread", "sha256:23"], env=env, capture_output=True, text=True).stdout
    assert want.upper() in pcr.upper().replace("0X", "")
    assert log.read_bytes().endswith(tagged)
    status, resp = cdh.request("POST", "/aa/aael", body=b'{"domain":"a b","operation":"o","content":"c"}')
    assert status == 400


def test_runtime_measurement_disabled(start_cdh, tmp_path):
    cdh = start_cdh("")
    status, body = cdh.request("POST", "/aa/aael", body=b'{"domain":"d","operation":"o","content":"c"}')
    assert status == 501 and b"not enabled" in body


def test_credentials_provisioned_at_start(pki, start_kbs, start_cdh, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secret = os.urandom(12)
    set_resource(kbs, pki, tmp_path, "default/cred/one", secret)
    set_policy(kbs, pki, tmp_path)
    target = tmp_path / "run" / "cdh" / "kbs" / "one"
    cdh_cfg = cdh_toml(kbs.url(), pki, f'[[credentials]]\nresource_uri = "kbs:///default/cred/one"\npath = "{target}"\n')
    start_cdh(cdh_cfg)
    assert target.read_bytes() == secret
    assert (target.stat().st_mode & 0o777) == 0o600
