"""`coco secrets load` (the pattern's values-secret file into OpenBao or straight into a KBS),
`coco kbs-seed` (the kbs chart's init container: mounted Secrets into the KBS's store) and the KBS
reading the chart's ConfigMaps and Secrets itself (Trustee's policy_dir and LocalJson file_path,
keys and certificates through Kubernetes volume links). Real OpenBao, real KBS; secrets are read
back through Vault's API and through an attested resource fetch."""
import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, bgcheck_config, run
from services import openbao  # noqa: F401 (fixture)
from test_cdh import admin, cdh_toml, start_cdh  # noqa: F401 (fixture)

COCO = BIN / "coco"

VALUES_SECRET = """\
version: "2.0"
secrets:
  - name: kbsres1
    vaultPrefixes: [hub]
    fields:
      - name: key1
        value: ''
        onMissingValue: generate
        vaultPolicy: validatedPatternDefaultPolicy
      - name: key2
        onMissingValue: generate
      - name: key3
        value: 'key three, given'
  - name: attestationStatus
    vaultPrefixes: [hub]
    fields:
      - name: status
        value: 'attested'
      - name: random
        onMissingValue: generate
        override: true
  - name: securityPolicyConfig
    vaultPrefixes: [hub]
    fields:
      - name: insecure
        value: |
          {"default": [{"type": "insecureAcceptAnything"}], "transports": {}}
      - name: reject
        value: |
          {"default": [{"type": "reject"}], "transports": {}}
  - name: kbsPublicKey
    vaultPrefixes: [hub]
    fields:
      - name: publicKey
        path: admin.pub
  - name: pcrStash
    vaultPrefixes: [hub]
    fields:
      - name: json
        path: measurements.json
  - name: cosign-keys
    vaultPrefixes: [hub]
    fields:
      - name: key-0
        path: cosign.pub
        base64: true
  - name: sshKey
    vaultPrefixes: [global]
    fields:
      - name: id_rsa.pub
        value: ssh-ed25519 AAAA test
"""


@pytest.fixture
def values_secret(tmp_path, pki):
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "values-secret.yaml").write_text(VALUES_SECRET)
    (d / "admin.pub").write_text(Path(pki.admin_pub).read_text())
    pcrs = {f"pcr{n:02d}": "0x" + f"{n:02x}" * 32 for n in (3, 8, 9, 11, 12)}
    (d / "measurements.json").write_text(json.dumps({"measurements": {"sha256": pcrs}}))
    (d / "cosign.pub").write_text("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n")
    return d


def bao_get(bao, path):
    status, body = bao.api("GET", f"secret/data/{path}")
    assert status == 200, body
    return body["data"]["data"]


def test_secrets_load_into_openbao(openbao, values_secret, tmp_path):  # noqa: F811
    token = tmp_path / "token"
    token.write_text(openbao.token + "\n")
    f = values_secret / "values-secret.yaml"
    out = run([COCO, "secrets", "load", f, "--vault-url", openbao.addr, "--vault-token-file", token]).stdout
    kbsres1 = bao_get(openbao, "hub/kbsres1")
    assert kbsres1["key3"] == "key three, given"
    for k in ("key1", "key2"):
        assert re.fullmatch(r"[A-Za-z0-9]{24}", kbsres1[k]), kbsres1
    assert kbsres1["key1"] != kbsres1["key2"]
    status = bao_get(openbao, "hub/attestationStatus")
    assert status["status"] == "attested" and len(status["random"]) == 24
    policy = bao_get(openbao, "hub/securityPolicyConfig")
    assert json.loads(policy["insecure"]) == {"default": [{"type": "insecureAcceptAnything"}], "transports": {}}
    assert bao_get(openbao, "hub/pcrStash")["json"] == (values_secret / "measurements.json").read_text()
    assert base64.b64decode(bao_get(openbao, "hub/cosign-keys")["key-0"]) == (values_secret / "cosign.pub").read_bytes()
    assert bao_get(openbao, "global/sshKey")["id_rsa.pub"] == "ssh-ed25519 AAAA test"
    # Nothing secret reaches the output: names and what happened only.
    assert kbsres1["key1"] not in out and "key1 (generated)" in out
    # Loading again keeps generated values (no silent rotation) unless the field says override.
    out = run([COCO, "secrets", "load", f, "--vault-url", openbao.addr, "--vault-token-file", token]).stdout
    again = bao_get(openbao, "hub/kbsres1")
    assert again["key1"] == kbsres1["key1"] and again["key2"] == kbsres1["key2"] and "key1 (kept)" in out
    assert bao_get(openbao, "hub/attestationStatus")["random"] != status["random"]
    # The token from the environment; a wrong token is refused with Vault's reason.
    env = dict(os.environ, VAULT_TOKEN="not-a-token")
    r = run([COCO, "secrets", "load", f, "--vault-url", openbao.addr], check=False, env=env)
    assert r.returncode == 1 and "HTTP 403" in r.stderr, r.stderr


def test_secrets_load_refusals(values_secret, tmp_path):
    f = values_secret / "values-secret.yaml"
    bad = tmp_path / "bad.yaml"
    for text, want in (
        (VALUES_SECRET.replace('version: "2.0"', 'version: "1.0"'), 'version must be "2.0"'),
        (VALUES_SECRET.replace("        path: admin.pub", "        path: missing.pub"), "secret kbsPublicKey field publicKey"),
        (VALUES_SECRET.replace("        onMissingValue: generate\n      - name: key3", "      - name: key3"),
         "secret kbsres1 field key2: no value, no path"),
        ("version: '2.0'\nsecrets:\n  - name: x\n    fields: [{name: a, value: b\n", "yaml: line"),
    ):
        bad.write_text(text)
        (tmp_path / "admin.pub").write_text("x")
        for dep in ("measurements.json", "cosign.pub"):
            (tmp_path / dep).write_text((values_secret / dep).read_text())
        r = run([COCO, "secrets", "load", bad, "--vault-url", "http://127.0.0.1:1", "--dry-run"], check=False)
        assert r.returncode == 1 and want in r.stderr, (want, r.stderr)
    r = run([COCO, "secrets", "load", f, "--dry-run", "--kbs-url", "https://127.0.0.1:1"])
    assert "would write kbs resource default/kbsres1/key3: 16 bytes (value)" in r.stdout
    assert "default/attestation-status/status" in r.stdout and "default/security-policy/insecure" in r.stdout
    assert "kbsPublicKey skipped" in r.stdout and "sshKey skipped (not a hub secret)" in r.stdout
    assert "would register kbs: reference values from pcrStash: 10" in r.stdout


def test_secrets_load_into_the_kbs_and_fetch_after_attestation(values_secret, pki, start_kbs, start_cdh, tmp_path):  # noqa: F811
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    admin(kbs, pki, tmp_path, "set-resource-policy", "--allow-all")
    f = values_secret / "values-secret.yaml"
    (tmp_path / "initdata.toml").write_text('version = "0.1.0"\nalgorithm = "sha256"\n[data]\n')
    out = run([COCO, "secrets", "load", f, "--kbs-url", kbs.url(), "--kbs-cert", pki.tls_cert, "--admin-key",
               pki.admin_key, "--initdata", tmp_path / "initdata.toml"]).stdout
    assert "kbs resource default/kbsres1/key1: 24 bytes (generated)" in out
    cdh = start_cdh(cdh_toml(kbs.url(), pki))
    assert cdh.get("/cdh/resource/default/kbsres1/key3") == (200, b"key three, given")
    status, key1 = cdh.get("/cdh/resource/default/kbsres1/key1")
    assert status == 200 and re.fullmatch(rb"[A-Za-z0-9]{24}", key1) and key1.decode() not in out
    assert cdh.get("/cdh/resource/default/attestation-status/status") == (200, b"attested")
    status, body = cdh.get("/cdh/resource/default/security-policy/reject")
    assert status == 200 and json.loads(body)["default"] == [{"type": "reject"}]
    assert cdh.get("/cdh/resource/default/cosign-keys/key-0")[1] == base64.b64encode((values_secret / "cosign.pub").read_bytes())
    # pcrStash became reference values, PCR8 from the init-data.
    out = run([BIN / "kbs-client", "--url", kbs.url(), "--cert-file", pki.tls_cert, "config", "--auth-private-key",
               pki.admin_key, "get-reference-value", "--id", "snp_pcr03"]).stdout
    assert json.loads(out) == ["03" * 32]
    import hashlib
    pcr8 = hashlib.sha256(bytes(32) + hashlib.sha256((tmp_path / "initdata.toml").read_bytes()).digest()).hexdigest()
    out = run([BIN / "kbs-client", "--url", kbs.url(), "--cert-file", pki.tls_cert, "config", "--auth-private-key",
               pki.admin_key, "get-reference-value", "--id", "tdx_pcr08"]).stdout
    assert json.loads(out) == [pcr8]


def kube_volume(root: Path, files: dict):
    """A directory laid out like a Kubernetes Secret/ConfigMap volume: ..data symlink farm."""
    data = root / "..2026_12_03_10_00_00.000000001"
    data.mkdir(parents=True)
    for name, content in files.items():
        (data / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    os.symlink(data.name, root / "..data")
    for name in files:
        os.symlink(f"..data/{name}", root / name)


def kube_update(root: Path, files: dict, stamp: str):
    """A ConfigMap update as the kubelet makes it: a new timestamped directory, ..data swapped."""
    data = root / f"..{stamp}"
    data.mkdir()
    for name, content in files.items():
        (data / name).write_text(content)
    os.symlink(data.name, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")


MARKER_POLICY = """package policy
import rego.v1
default executables := 33
executables := 3 if query_reference_value("marker") == ["%s"]
trust_claims := {"executables": executables, "hardware": 2, "configuration": 2}
"""


def ear_vector(token: str) -> dict:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["submods"]["cpu0"]["ear.trustworthiness-vector"]


def test_kbs_reads_kubernetes_volumes(pki, start_kbs, tmp_path):  # noqa: F811
    """The chart's layout without a seeding step: Trustee 1.0's policy_dir (<dir>/opa/<id>.rego)
    and LocalJson reference-value file_path, the resource policy, TLS and signer keys, the admin
    key - all through the links of Kubernetes volumes, ConfigMap updates followed live - and a
    link out of the policy directory refused at start-up."""
    mounts = tmp_path / "etc"
    kube_volume(mounts / "https", {"tls.key": Path(pki.tls_key).read_text(), "tls.crt": Path(pki.tls_cert).read_text()})
    kube_volume(mounts / "attestation", {"tls.key": Path(pki.signer_key).read_text(),
                                         "tls.crt": Path(pki.signer_cert).read_text(),
                                         "ca.crt": Path(pki.ca_cert).read_text()})
    kube_volume(mounts / "admin", {"publicKey": Path(pki.admin_pub).read_text()})
    kube_volume(mounts / "policy", {"policy.rego": "package policy\nimport rego.v1\ndefault allow := false\n"
                                                   "allow if input.submods.cpu0[\"ear.status\"] == \"affirming\"\n"})
    (mounts / "attestation-policy").mkdir()
    kube_volume(mounts / "attestation-policy" / "opa", {"default_cpu.rego": MARKER_POLICY % "one"})
    entry = {"name": "marker", "expiration": "2031-01-01T00:00:00Z", "value": ["one"]}
    kube_volume(mounts / "rvps", {"reference-values.json": json.dumps([entry])})
    storage = tmp_path / "storage"
    storage.mkdir(mode=0o700)
    cfg = bgcheck_config(pki, storage, extra=f"""
[policy_engine]
policy_path = "{mounts}/policy/policy.rego"
""").replace(str(pki.tls_key), f"{mounts}/https/tls.key").replace(str(pki.tls_cert), f"{mounts}/https/tls.crt")
    cfg = cfg.replace(str(pki.signer_key), f"{mounts}/attestation/tls.key").replace(
        str(pki.signer_cert), f"{mounts}/attestation/tls.crt").replace(str(pki.ca_cert), f"{mounts}/attestation/ca.crt")
    cfg = cfg.replace(str(pki.admin_pub), f"{mounts}/admin/publicKey").replace(
        "duration_min = 5\n", f'duration_min = 5\npolicy_dir = "{mounts}/attestation-policy"\n\n'
        '[attestation_service.rvps_config]\ntype = "BuiltIn"\n\n[attestation_service.rvps_config.storage]\n'
        f'type = "LocalJson"\nfile_path = "{mounts}/rvps/reference-values.json"\n', 1)
    assert cfg.count(str(mounts)) == 9, cfg
    kbs = start_kbs(cfg)
    kbs_client = [BIN / "kbs-client", "--url", kbs.url(), "--cert-file", pki.tls_cert]
    res = tmp_path / "res"
    res.write_text("the secret")
    admin(kbs, pki, tmp_path, "set-resource", "--path", "default/kbsres1/key1", "--resource-file", res)
    assert ear_vector(run(kbs_client + ["attest"]).stdout.strip())["executables"] == 3
    assert run(kbs_client + ["get-resource", "--path", "default/kbsres1/key1"]).stdout.strip() == \
        base64.b64encode(b"the secret").decode()
    out = admin(kbs, pki, tmp_path, "get-reference-value", "--id", "marker").stdout
    assert json.loads(out) == ["one"]
    # A ConfigMap update of the reference values applies at once: the marker no longer matches.
    kube_update(mounts / "rvps", {"reference-values.json": json.dumps([{**entry, "value": ["two"]}])},
                "2026_12_03_11_00_00.000000002")
    assert ear_vector(run(kbs_client + ["attest"]).stdout.strip())["executables"] == 33
    assert run(kbs_client + ["get-resource", "--path", "default/kbsres1/key1"], check=False).returncode != 0
    # ...and one of the attestation policy on the KBS's next reload (every two seconds).
    kube_update(mounts / "attestation-policy" / "opa", {"default_cpu.rego": MARKER_POLICY % "two"},
                "2026_12_03_11_00_00.000000002")
    for _ in range(50):
        if ear_vector(run(kbs_client + ["attest"]).stdout.strip())["executables"] == 3:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the updated attestation policy was not loaded")
    # A link that leaves the policy directory is refused, naming the file.
    (tmp_path / "elsewhere.rego").write_text(MARKER_POLICY % "x")
    os.symlink("../../../elsewhere.rego", mounts / "attestation-policy" / "opa" / "stray.rego")
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg)
    r = run([BIN / "kbs", "--config-file", bad], check=False, timeout=30)
    assert r.returncode != 0 and "stray.rego" in r.stderr and "leads out of its directory" in r.stderr, r.stderr


def test_kbs_seed_from_kubernetes_volumes(pki, start_kbs, start_cdh, tmp_path):  # noqa: F811
    mounts = tmp_path / "etc"
    kube_volume(mounts / "resources" / "kbsres1", {"key1": "one", "key3": b"\x00binary\xff"})
    kube_volume(mounts / "resources" / "passphrase", {"passphrase": "open sesame"})
    kube_volume(mounts / "attestation-policy", {"default_cpu.rego": Path(
        Path(__file__).resolve().parents[2] / "policies/attestation/pattern_cpu.rego").read_text()})
    kube_volume(mounts / "rvps", {"reference-values.json": json.dumps(
        [{"name": "snp_pcr03", "expiration": "2031-01-01T00:00:00Z", "value": ["aa" * 32]}])})
    storage = tmp_path / "storage"
    storage.mkdir(mode=0o700)
    out = run([COCO, "kbs-seed", f"--storage-dir={storage}", f"--attestation-policy-dir={mounts / 'attestation-policy'}",
               "--reference-values", mounts / "rvps" / "reference-values.json", "--resources-dir",
               mounts / "resources"]).stdout
    assert out.strip() == f"kbs-seed: 1 attestation policies, 1 reference values, 3 resources into {storage}"
    # The KBS starts on the seeded store: the resources, the reference values and the policy are there.
    kbs = start_kbs(bgcheck_config(pki, storage))
    admin(kbs, pki, tmp_path, "set-resource-policy", "--allow-all")
    cdh = start_cdh(cdh_toml(kbs.url(), pki))
    assert cdh.get("/cdh/resource/default/kbsres1/key1") == (200, b"one")
    assert cdh.get("/cdh/resource/default/kbsres1/key3") == (200, b"\x00binary\xff")
    assert cdh.get("/cdh/resource/default/passphrase/passphrase") == (200, b"open sesame")
    out = run([BIN / "kbs-client", "--url", kbs.url(), "--cert-file", pki.tls_cert, "config", "--auth-private-key",
               pki.admin_key, "get-reference-value", "--id", "snp_pcr03"]).stdout
    assert json.loads(out) == ["aa" * 32]
    # The seeded default_cpu is the pattern's policy: the sample TEE is not a platform it knows.
    status, body = cdh.get("/aa/token?token_type=kbs")
    payload = json.loads(body)["token"].split(".")[1]
    cpu0 = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["submods"]["cpu0"]
    assert cpu0["ear.trustworthiness-vector"]["hardware"] == 97 and cpu0["ear.trustworthiness-vector"]["executables"] == 33
    # A policy that does not compile is refused before anything is stored.
    bad = tmp_path / "bad-policies"
    kube_volume(bad, {"default_cpu.rego": "package policy\nallow if {"})
    r = run([COCO, "kbs-seed", "--storage-dir", tmp_path / "s2", "--attestation-policy-dir", bad], check=False)
    assert r.returncode == 1 and "default_cpu" in r.stderr
