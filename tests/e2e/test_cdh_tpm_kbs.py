"""A TPM guest end to end through the KBS: `cdh --tee tpm` on swtpm against the KBS `tpm` verifier
with the AK registered. The shipped default CPU policy makes the appraisal affirming once the
PCR11 and AK reference values match; after PCR11 is extended a fresh attestation is no longer
affirming and the "affirming" resource policy refuses the secret. The init-data is bound to PCR8
and reaches the token."""
import base64
import json
import subprocess

from conftest import BIN, bgcheck_config
from test_cdh import admin, cdh_toml, set_resource, start_cdh, swtpm  # noqa: F401 (fixtures)


def token_claims(cdh):
    status, body = cdh.get("/aa/token?token_type=kbs")
    assert status == 200, body
    token = json.loads(body)["token"]
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_tpm_guest_through_the_kbs(swtpm, start_kbs, start_cdh, pki, tmp_path):  # noqa: F811
    tcti, env = swtpm
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

    # Reference values: today's PCR11 and the AK the guest reports.
    toml = ('version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"policy.rego" = \'\'\'\npackage agent_policy\n\n'
            'policy_data := {"allow_exec": false}\n\'\'\'\n')
    (tmp_path / "initdata.toml").write_text(toml)
    ev = json.loads(subprocess.run([str(BIN / "cdh"), "--tee", "tpm", "--tpm-tcti", tcti, "--initdata",
                                    str(tmp_path / "initdata.toml"), "evidence", "probe"],
                                   capture_output=True, check=True).stdout)
    pcr11 = ev["tpm_quote"]["pcrs"][11]
    admin(kbs, pki, tmp_path, "set-sample-reference-value", "tpm_pcr11", pcr11)
    admin(kbs, pki, tmp_path, "set-sample-reference-value", "trusted_aks", ev["ak_public"])
    set_resource(kbs, pki, tmp_path, "vm/tpm/secret", b"released to a measured TPM guest")
    admin(kbs, pki, tmp_path, "set-resource-policy", "--affirming")

    guest = ["--tee", "tpm", "--tpm-tcti", tcti, "--initdata", tmp_path / "initdata.toml"]
    cdh = start_cdh(cdh_toml(kbs.url(), pki), *guest, name="cdh-1")
    status, body = cdh.get("/cdh/resource/vm/tpm/secret")
    assert status == 200, body
    assert body == b"released to a measured TPM guest"
    claims = token_claims(cdh)
    cpu0 = claims["submods"]["cpu0"]
    assert cpu0["ear.status"] == "affirming"
    assert cpu0["ear.trustworthiness-vector"]["executables"] == 3
    evidence = cpu0["ear.veraison.annotated-evidence"]
    # init-data: PCR8 = sha256(0^32 || sha256(toml)), checked by the verifier, claims in the token.
    import hashlib
    pcr8 = hashlib.sha256(bytes(32) + hashlib.sha256(toml.encode()).digest()).hexdigest()
    assert evidence["init_data"] == pcr8
    assert evidence["init_data_claims"]["agent_policy_claims"] == {"allow_exec": False}

    # The guest's measured state changes: PCR11 is extended. A fresh attestation is no longer
    # affirming (executables 33) and the affirming resource policy refuses.
    subprocess.run(["tpm2_pcrextend", "11:sha256=" + "ab" * 32], env=env, check=True)
    assert cdh.stop() == 0
    cdh2 = start_cdh(cdh_toml(kbs.url(), pki), *guest, name="cdh-2")
    status, body = cdh2.get("/cdh/resource/vm/tpm/secret")
    assert status != 200 and b"PolicyDeny" in body, body
    claims = token_claims(cdh2)
    assert claims["submods"]["cpu0"]["ear.status"] == "warning"
    assert claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["executables"] == 33
