"""`coco refvalues from-measurements` end to end: a TPM guest (swtpm, `cdh --tee tpm`) whose PCRs
are read with tpm2_pcrread into the pod VM image's measurements.json format; the reference values
coco derives (plus PCR8 from the rendered init-data) are registered through the KBS admin API;
under the pattern's attestation policy the guest is affirming and gets its secret, and after one
PCR changes it is contraindicated and refused."""
import base64
import hashlib
import http.client
import json
import re
import select
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, bgcheck_config, run
from test_cdh import admin, set_resource, swtpm  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
PATTERN_POLICY = ROOT / "policies" / "attestation" / "pattern_cpu.rego"
COCO = BIN / "coco"


def pcrread(env, pcrs="3,9,11,12"):
    """tpm2_pcrread's own output, as the pattern's bare-metal procedure collects it."""
    out = subprocess.run(["tpm2_pcrread", f"sha256:{pcrs}"], env=env, check=True, capture_output=True,
                         text=True).stdout
    return {f"pcr{int(m.group(1)):02d}": m.group(2) for m in re.finditer(r"^\s*(\d+)\s*:\s*(0x[0-9A-Fa-f]+)", out, re.M)}


def admin_post(kbs, pki, path, body: bytes):
    ctx = ssl.create_default_context(cafile=str(pki.tls_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", kbs.port, context=ctx, timeout=10)
    conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {pki.admin_token()}",
                                                    "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def admin_get(kbs, pki, path):
    ctx = ssl.create_default_context(cafile=str(pki.tls_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", kbs.port, context=ctx, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {pki.admin_token()}"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


class Guest:
    """`cdh --tee tpm` configured only by the init-data (its cdh.toml names the KBS and its cert)."""

    def __init__(self, initdata, tcti, log):
        self.log = log
        # ttRPC sockets in the test's directory: the init-data's cdh.toml names upstream's path,
        # which another cdh (a concurrent test or run) may serve - cdh then refuses to start.
        sockets = [a for svc in ("cdh", "aa") for a in (f"--{svc}-socket", str(Path(log).parent / f"{Path(log).stem}-{svc}.sock"))]
        self.proc = subprocess.Popen([str(BIN / "cdh"), "--initdata", str(initdata), "--tee", "tpm", "--tpm-tcti",
                                      tcti, "--listen", "127.0.0.1:0", "--kbs-attempts", "1", *sockets],
                                     stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                m = re.match(r"cdh: listening on 127\.0\.0\.1:(\d+)", self.proc.stdout.readline())
                if m:
                    self.port = int(m.group(1))
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"cdh exited: {Path(log).read_text()}")
        self.proc.kill()
        raise RuntimeError(f"cdh did not start: {Path(log).read_text()}")

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", path)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def claims(self):
        status, body = self.get("/aa/token?token_type=kbs")
        assert status == 200, body
        payload = json.loads(body)["token"].split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["submods"]["cpu0"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        return self.proc.returncode


def test_refvalues_from_measurements_affirm_a_matching_guest(swtpm, start_kbs, pki, tmp_path):  # noqa: F811
    tcti, env = swtpm
    # The guest "boots": firmware, boot loader, UKI and credentials are measured.
    for pcr in (3, 9, 11, 12):
        subprocess.run(["tpm2_pcrextend", f"{pcr}:sha256=" + hashlib.sha256(f"boot {pcr}".encode()).hexdigest()],
                       env=env, check=True)
    trusted = tmp_path / "trusted-aks"
    trusted.mkdir()
    subprocess.run(["tpm2_readpublic", "-Q", "-c", "0x81010002", "-f", "pem", "-o", trusted / "ak.pub"], env=env,
                   check=True)
    subprocess.run(["tpm2_flushcontext", "-t"], env=env, check=True)
    cfg = bgcheck_config(pki, tmp_path / "storage").replace(
        "[attestation_service.attestation_token_broker]",
        f'[attestation_service.verifier_config.tpm_verifier]\ntrusted_ak_keys_dir = "{trusted}"\n\n'
        "[attestation_service.attestation_token_broker]")
    kbs = start_kbs(cfg)

    # The hub side: init-data for this KBS, the image's measurements, the reference values.
    initdata = tmp_path / "initdata.toml"
    run([COCO, "initdata", "render", "--kbs-url", kbs.url(), "--kbs-cert", pki.tls_cert, "-o", initdata])
    measured = pcrread(env)
    assert all(v.startswith("0x") for v in measured.values())
    (tmp_path / "measurements.json").write_text(json.dumps({"measurements": {"sha256": measured}}))
    msg = run([COCO, "refvalues", "from-measurements", tmp_path / "measurements.json", "--initdata", initdata,
               "--prefix", "tpm"]).stdout
    message = json.loads(msg)
    assert message["version"] == "0.1.0" and message["type"] == "sample"
    values = json.loads(base64.b64decode(message["payload"]))
    pcr8 = hashlib.sha256(bytes(32) + hashlib.sha256(initdata.read_bytes()).digest()).hexdigest()
    assert values == {"tpm_pcr03": [measured["pcr03"][2:].lower()], "tpm_pcr08": [pcr8],
                      "tpm_pcr09": [measured["pcr09"][2:].lower()], "tpm_pcr11": [measured["pcr11"][2:].lower()],
                      "tpm_pcr12": [measured["pcr12"][2:].lower()]}
    status, body = admin_post(kbs, pki, "/kbs/v0/reference-value", msg.encode())
    assert status == 200, body
    status, body = admin_get(kbs, pki, "/kbs/v0/reference-value/tpm_pcr08")
    assert status == 200 and json.loads(body) == [pcr8]
    admin(kbs, pki, tmp_path, "set-attestation-policy", "--id", "default_cpu", "--policy-file", PATTERN_POLICY)
    admin(kbs, pki, tmp_path, "set-resource-policy", "--affirming")
    set_resource(kbs, pki, tmp_path, "default/kbsres1/key3", b"key3 for the attested pod")

    # The pod VM: the CDH binds the init-data to PCR8 at start-up and attests.
    guest = Guest(initdata, tcti, tmp_path / "cdh-1.log")
    try:
        assert guest.get("/cdh/resource/default/kbsres1/key3") == (200, b"key3 for the attested pod")
        cpu0 = guest.claims()
        assert cpu0["ear.status"] == "affirming", cpu0
        assert cpu0["ear.trustworthiness-vector"]["executables"] == 3
        assert cpu0["ear.veraison.annotated-evidence"]["init_data"] == pcr8
    finally:
        assert guest.stop() == 0

    # One PCR changes (a new UKI credential): the next attestation is contraindicated and refused.
    subprocess.run(["tpm2_pcrextend", "12:sha256=" + "ab" * 32], env=env, check=True)
    guest = Guest(initdata, tcti, tmp_path / "cdh-2.log")
    try:
        status, body = guest.get("/cdh/resource/default/kbsres1/key3")
        assert status != 200 and b"PolicyDeny" in body, body
        cpu0 = guest.claims()
        assert cpu0["ear.status"] == "contraindicated", cpu0
        assert cpu0["ear.trustworthiness-vector"]["executables"] == 96
    finally:
        assert guest.stop() == 0


def test_refvalues_formats_and_refusals(tmp_path):
    pcr = {f"pcr{n:02d}": "0x" + hashlib.sha256(bytes([n])).hexdigest().upper() for n in (3, 8, 9, 11, 12)}
    m = tmp_path / "measurements.json"
    m.write_text(json.dumps({"measurements": {"sha256": pcr}}))
    # The pattern's default: snp_ and tdx_ names, PCR8 from the file when no init-data is given.
    msg = json.loads(run([COCO, "refvalues", "from-measurements", m]).stdout)
    values = json.loads(base64.b64decode(msg["payload"]))
    assert sorted(values) == sorted(f"{p}_pcr{n:02d}" for p in ("snp", "tdx") for n in (3, 8, 9, 11, 12))
    assert values["tdx_pcr11"] == [pcr["pcr11"][2:].lower()]
    # list: Trustee's reference-values file / the pattern's rvps-reference-values ConfigMap.
    lst = json.loads(run([COCO, "refvalues", "from-measurements", m, "--format", "list", "--expiration",
                          "2031-01-01T00:00:00Z"]).stdout)
    assert lst[0] == {"name": "snp_pcr03", "expiration": "2031-01-01T00:00:00Z", "value": [pcr["pcr03"][2:].lower()]}
    assert len(lst) == 10
    lines = run([COCO, "refvalues", "from-measurements", m, "--format", "kbs-client", "--prefix", "snp"]).stdout
    assert lines.splitlines()[0] == f"snp_pcr03 {pcr['pcr03'][2:].lower()}" and len(lines.splitlines()) == 5
    # Refusals name what is wrong.
    for bad, want in ((dict(pcr, pcr09="0x1234"), "pcr09 has 4 hex digits"),
                      ({k: v for k, v in pcr.items() if k != "pcr08"}, "give --initdata"),
                      (dict(pcr, pcr11="zz" * 32), "pcr11 is not hex")):
        m.write_text(json.dumps({"measurements": {"sha256": bad}}))
        r = run([COCO, "refvalues", "from-measurements", m], check=False)
        assert r.returncode == 1 and want in r.stderr, r.stderr
    m.write_text(json.dumps({"sha256": pcr}))
    r = run([COCO, "refvalues", "from-measurements", m], check=False)
    assert r.returncode == 1 and "measurements.sha256" in r.stderr
    r = run([COCO, "refvalues", "from-measurements", m, "--expiration", "2020-01-01T00:00:00Z"], check=False)
    assert r.returncode == 1 and "in the past" in r.stderr
    r = run([COCO, "refvalues", "from-measurements", m, "--prefix", "sev"], check=False)
    assert r.returncode == 1 and "not snp, tdx or tpm" in r.stderr


def test_pattern_policy_decisions_agree_with_opa(tmp_path):
    """The pattern's attestation policy under opa and under our engine (`rego eval`), with
    query_reference_value stubbed from data.rv as the AS's host function answers it."""
    from test_coco_initdata import find_opa

    opa = find_opa()
    stub = tmp_path / "stub.rego"
    stub.write_text("package policy\nimport rego.v1\nquery_reference_value(id) := v if v := data.rv[id]\n"
                    "else := null\n")
    h = {f"pcr{n:02d}": hashlib.sha256(bytes([n])).hexdigest() for n in (3, 8, 9, 11, 12)}
    rv = {f"tpm_{k}": [v] for k, v in h.items()}
    (tmp_path / "data.json").write_text(json.dumps({"rv": rv}))
    cases = [({"tpm": h}, 3, "matching"),
             ({"tpm": dict(h, pcr12="00" * 32)}, 96, "one PCR changed"),
             ({"az-snp-vtpm": {"tpm": h}}, 33, "no snp_ reference values"),
             ({"sample": {}}, 33, "not a vTPM")]
    for inp, want, what in cases:
        (tmp_path / "input.json").write_text(json.dumps(inp))
        args = ["-d", PATTERN_POLICY, "-d", stub, "-d", tmp_path / "data.json", "-i", tmp_path / "input.json",
                "--format", "json", "data.policy.trust_claims"]
        theirs = json.loads(run([opa, "eval", *args]).stdout)["result"][0]["expressions"][0]["value"]
        ours = json.loads(run([BIN / "rego", "eval", *args]).stdout)["result"][0]["expressions"][0]["value"]
        assert theirs == ours, what
        assert ours["executables"] == want, (what, ours)
