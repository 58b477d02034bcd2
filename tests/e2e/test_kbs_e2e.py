"""The upstream KBS e2e flow (trustee kbs/test/Makefile) against coco-trust's kbs and kbs-client,
with TLS on, plus the passport mode with a second resource-only KBS."""
import base64
import json
import os
import subprocess

from conftest import BIN, bgcheck_config, run

TEST_POLICY = """package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	data["resource-path"] == ["one", "two", "three"]
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
"""


def client(kbs, pki, *args, check=True):
    return run([BIN / "kbs-client", "--url", kbs.url(), "--cert-file", pki.tls_cert, *args], check=check)


def admin(kbs, pki, tmp_path, *args, check=True):
    token = tmp_path / "admin-token"
    token.write_text(pki.admin_token())
    return client(kbs, pki, "config", "--admin-token-file", token, *args, check=check)


def test_background_check_and_passport(pki, start_kbs, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secret = os.urandom(16)
    (tmp_path / "secret").write_bytes(secret)
    admin(kbs, pki, tmp_path, "set-resource", "--path", "one/two/three", "--resource-file", tmp_path / "secret")
    (tmp_path / "policy.rego").write_text(TEST_POLICY)
    admin(kbs, pki, tmp_path, "set-resource-policy", "--policy-file", tmp_path / "policy.rego")

    out = client(kbs, pki, "get-resource", "--path", "one/two/three")
    assert base64.b64decode(out.stdout.strip()) == secret

    # Started as root, the KBS serves as an unprivileged user.
    if os.geteuid() == 0:
        status = open(f"/proc/{kbs.proc.pid}/status").read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert all(field != "0" for field in uid_line.split()[1:]), uid_line

    # Passport: the issuer KBS hands out the EAR; a KBS without an attestation service that trusts
    # the issuer's token CA serves the resource to its bearer.
    tee_key = tmp_path / "tee.key"
    run(["openssl", "genrsa", "-traditional", "-out", tee_key, "2048"])
    token = client(kbs, pki, "attest", "--tee-key-file", tee_key).stdout.strip()
    assert token.count(".") == 2
    (tmp_path / "token").write_text(token)

    resource_cfg = f"""[http_server]
sockets = ["127.0.0.1:0"]
private_key = "{pki.tls_key}"
certificate = "{pki.tls_cert}"

[admin]
insecure_api = false
auth_public_key = "{pki.admin_pub}"

[attestation_token]
trusted_certs_paths = ["{pki.ca_cert}"]

[storage_backend]
storage_type = "LocalFs"

[storage_backend.backends.local_fs]
dir_path = "{tmp_path / 'resource-storage'}"

[[plugins]]
name = "resource"
"""
    rkbs = start_kbs(resource_cfg, name="resource-kbs")
    client(rkbs, pki, "config", "--auth-private-key", pki.admin_key, "set-resource", "--path", "one/two/three",
           "--resource-file", tmp_path / "secret")
    client(rkbs, pki, "config", "--auth-private-key", pki.admin_key, "set-resource-policy", "--policy-file",
           tmp_path / "policy.rego")
    out = client(rkbs, pki, "get-resource", "--attestation-token", tmp_path / "token", "--tee-key-file", tee_key,
                 "--path", "one/two/three")
    assert base64.b64decode(out.stdout.strip()) == secret
    # The resource KBS has no attestation service: /auth does not exist there.
    denied = client(rkbs, pki, "get-resource", "--path", "one/two/three", check=False)
    assert denied.returncode == 1
    assert "PluginNotFound" in denied.stderr

    # Secrets, tokens and keys never reach a log.
    for k in (kbs, rkbs):
        log = k.log.read_bytes()
        assert secret not in log and secret.hex().encode() not in log
        assert base64.b64encode(secret) not in log
        assert token.encode() not in log and token.split(".")[2].encode() not in log
        assert b"PRIVATE KEY" not in log


def test_default_policy_refuses_sample(pki, start_kbs, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    (tmp_path / "secret").write_bytes(b"s3cret")
    admin(kbs, pki, tmp_path, "set-resource", "--path", "one/two/three", "--resource-file", tmp_path / "secret")
    out = client(kbs, pki, "get-resource", "--path", "one/two/three", check=False)
    assert out.returncode == 1
    assert "PolicyDeny" in out.stderr and "HTTP 401" in out.stderr
    # The refusal explains itself: no reference values, so the appraisal is contraindicated.
    assert "cpu0: ear.status=contraindicated (" in out.stderr and "hardware=97" in out.stderr


def test_presets_and_reference_values(pki, start_kbs, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    (tmp_path / "secret").write_bytes(b"preset")
    admin(kbs, pki, tmp_path, "set-resource", "--path", "a/b/c", "--resource-file", tmp_path / "secret")
    admin(kbs, pki, tmp_path, "set-resource-policy", "--allow-all")
    out = client(kbs, pki, "get-resource", "--path", "a/b/c")
    assert base64.b64decode(out.stdout.strip()) == b"preset"
    # Sample evidence without reference values is contraindicated: "affirming" refuses it ...
    admin(kbs, pki, tmp_path, "set-resource-policy", "--affirming")
    assert client(kbs, pki, "get-resource", "--path", "a/b/c", check=False).returncode == 1
    # ... and accepts it once the reference values make every claim affirming (trustee's
    # integration test values).
    admin(kbs, pki, tmp_path, "set-sample-reference-value", "svn", "1")
    admin(kbs, pki, tmp_path, "set-sample-reference-value", "launch_digest", "abcde")
    admin(kbs, pki, tmp_path, "set-sample-reference-value", "major_version", "1", "--as-integer",
          "--as-single-value")
    admin(kbs, pki, tmp_path, "set-sample-reference-value", "minimum_minor_version", "1", "--as-integer",
          "--as-single-value")
    got = admin(kbs, pki, tmp_path, "get-reference-value", "--id", "svn").stdout.strip()
    assert got == '["1"]'
    out = client(kbs, pki, "get-resource", "--path", "a/b/c")
    assert base64.b64decode(out.stdout.strip()) == b"preset"
    admin(kbs, pki, tmp_path, "set-resource-policy", "--deny-all")
    assert client(kbs, pki, "get-resource", "--path", "a/b/c", check=False).returncode == 1


def test_metrics_and_reference_value_store(pki, start_kbs, tmp_path):
    """/metrics speaks Prometheus text with Trustee's names; reference values persist in the
    rvps_config LocalJson file_path as Trustee's list."""
    import requests
    rv_dir = tmp_path / "rvps"
    cfg = bgcheck_config(pki, tmp_path / "storage").replace(
        '[attestation_service.attestation_token_broker]',
        f'[attestation_service.rvps_config]\ntype = "BuiltIn"\n[attestation_service.rvps_config.storage]\n'
        f'type = "LocalJson"\nfile_path = "{rv_dir}/reference-values.json"\n\n'
        '[attestation_service.attestation_token_broker]')
    kbs = start_kbs(cfg)
    admin(kbs, pki, tmp_path, "set-sample-reference-value", "svn", "7")
    stored = json.loads((rv_dir / "reference-values.json").read_text())
    assert [(e["name"], e["value"], e["version"]) for e in stored] == [("svn", ["7"], "0.1.0")]
    client(kbs, pki, "attest")
    text = requests.get(f"{kbs.url()}/metrics", verify=str(pki.tls_cert)).text
    for name in ("kbs_http_requests_total", "kbs_auth_requests_total", "kbs_attestation_requests_total",
                 "kbs_policy_evaluations_total", "kbs_http_request_duration_seconds_bucket"):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text, name
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["kbs_auth_requests_total"] >= 1
    assert values['kbs_attestation_successes_total{tee_type="sample"}'] >= 1


def test_bad_configuration_exits_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[http_server]\ninsecure_http = true\nsockts = ["127.0.0.1:0"]\n[admin]\n'
                   '[attestation_token]\ninsecure_header_jwk = true\n')
    out = run([BIN / "kbs", "--config-file", cfg], check=False)
    assert out.returncode == 2
    assert 'unknown key "sockts" in [http_server]' in out.stderr
    out = run([BIN / "kbs", "-c", tmp_path / "missing.toml"], check=False)
    assert out.returncode == 2 and "missing.toml" in out.stderr
