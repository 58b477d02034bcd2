"""`coco initdata`: the pattern's init-data template, its annotation encoding, the values the TEE
binds (digest, PCR8) and the kata agent policy it carries.

Every value coco prints is recomputed independently here: digests with Python's hashlib and the
openssl CLI, the annotation with Python's gzip/base64 and GNU gzip, the policy decisions with the
real `opa eval` on the same input."""
import base64
import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, run

COCO = BIN / "coco"
STATUS = "curl http://127.0.0.1:8006/cdh/resource/default/attestation-status/status"
RANDOM = "curl http://127.0.0.1:8006/cdh/resource/default/attestation-status/random"


def coco(*args, check=True, **kw):
    return run([COCO, *args], check=check, **kw)


def find_opa():
    cands = [shutil.which("opa"), os.path.expanduser("~/go/bin/opa")]
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if os.path.exists(go):
        gopath = subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True).stdout.strip()
        if gopath:
            cands.append(os.path.join(gopath, "bin", "opa"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    if os.environ.get("CI"):
        pytest.fail("opa is not installed (scripts/install-test-tools)")
    pytest.skip("opa is not installed (scripts/install-test-tools)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("initdata")
    url = "https://kbs.apps.hub.example.com"
    coco("initdata", "render", "--kbs-url", url, "--kbs-cert", pki.tls_cert, "-o", d / "initdata.toml")
    coco("initdata", "render", "--kbs-url", url, "--kbs-cert", pki.tls_cert, "--permissive",
         "--image-policy", "signed", "-o", d / "debug.toml")
    return d, url


def test_render_is_the_pattern_template(rendered, pki):
    import tomllib  # noqa: F401 (Python >= 3.11)

    d, url = rendered
    doc = tomllib.loads((d / "initdata.toml").read_text())
    assert doc["version"] == "0.1.0" and doc["algorithm"] == "sha256"
    assert set(doc["data"]) == {"aa.toml", "cdh.toml", "policy.rego"}
    aa = tomllib.loads(doc["data"]["aa.toml"])
    cdh = tomllib.loads(doc["data"]["cdh.toml"])
    cert = Path(pki.tls_cert).read_text().strip() + "\n"
    assert aa["token_configs"]["kbs"] == {"url": url, "cert": cert}
    assert aa["token_configs"]["coco_as"]["url"] == url
    assert cdh["kbc"] == {"name": "cc_kbc", "url": url, "kbs_cert": cert}
    assert cdh["socket"] == "unix:///run/confidential-containers/cdh.sock" and cdh["credentials"] == []
    assert cdh["image"]["image_security_policy_uri"] == "kbs:///default/security-policy/insecure"
    policy = doc["data"]["policy.rego"]
    assert policy.startswith("# coco-trust pattern") and "package agent_policy" in policy
    assert "default ExecProcessRequest := false" in policy and STATUS in policy and RANDOM in policy
    debug = tomllib.loads((d / "debug.toml").read_text())
    assert "default ExecProcessRequest := true" in debug["data"]["policy.rego"]
    assert tomllib.loads(debug["data"]["cdh.toml"])["image"]["image_security_policy_uri"].endswith("/signed")


def test_render_refuses_what_would_break_the_document(tmp_path, pki):
    bad_policy = tmp_path / "bad.rego"
    bad_policy.write_text("package agent_policy\nx := '''\n")
    r = coco("initdata", "render", "--kbs-url", "https://kbs", "--kbs-cert", pki.tls_cert, "--agent-policy", bad_policy,
             check=False)
    assert r.returncode == 1 and "'''" in r.stderr
    bad_policy.write_text("package agent_policy\ndefault ExecProcessRequest := \n")
    r = coco("initdata", "render", "--kbs-url", "https://kbs", "--kbs-cert", pki.tls_cert, "--agent-policy", bad_policy,
             check=False)
    assert r.returncode == 1 and "rego_parse_error" in r.stderr
    r = coco("initdata", "render", "--kbs-url", 'https://kbs"x', "--kbs-cert", pki.tls_cert, check=False)
    assert r.returncode == 1 and "--kbs-url" in r.stderr
    r = coco("initdata", "render", "--kbs-url", "https://kbs", "--kbs-cert", pki.tls_key, check=False)
    assert r.returncode == 1 and "not a PEM X.509 certificate" in r.stderr
    r = coco("initdata", "render", "--kbs-url", "https://kbs", check=False)
    assert r.returncode == 1 and "--kbs-cert is required" in r.stderr
    r = coco("initdata", "render", "--kbs-url", "https://kbs", "--kbs-cert", pki.tls_cert, "--image-policy", "x",
             check=False)
    assert r.returncode == 1 and "insecure, reject or signed" in r.stderr


@pytest.mark.parametrize("name", ["initdata.toml", "debug.toml"])
def test_digest_pcr8_and_annotation_match_independent_computation(rendered, tmp_path, name):
    d, _ = rendered
    f = d / name
    raw = f.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    assert coco("initdata", "digest", f).stdout.strip() == digest
    ossl = run(["openssl", "dgst", "-sha256", "-r", f]).stdout.split()[0]
    assert ossl == digest
    # PCR8 after one extend of an all-zero PCR: sha256(0^32 || sha256(toml)), both in Python and
    # in OpenSSL's CLI over the same 64 bytes.
    pcr8 = hashlib.sha256(bytes(32) + hashlib.sha256(raw).digest()).hexdigest()
    assert coco("initdata", "pcr8", f).stdout.strip() == pcr8
    (tmp_path / "extend.bin").write_bytes(bytes(32) + bytes.fromhex(digest))
    assert run(["openssl", "dgst", "-sha256", "-r", tmp_path / "extend.bin"]).stdout.split()[0] == pcr8

    # encode: base64 (one line) of gzip, which Python and GNU gzip both read back exactly.
    ann = coco("initdata", "encode", f).stdout
    assert ann.endswith("\n") and "\n" not in ann[:-1]
    assert gzip.decompress(base64.b64decode(ann.strip(), validate=True)) == raw
    (tmp_path / "ann.gz").write_bytes(base64.b64decode(ann))
    assert run(["gzip", "-dc", tmp_path / "ann.gz"]).stdout == raw.decode()
    # decode: of what Python's gzip and `gzip | base64 -w0` make (the pattern's ansible does the latter).
    for made in (base64.b64encode(gzip.compress(raw, mtime=0)).decode(),
                 subprocess.run(f"gzip -c {f} | base64 -w0", shell=True, check=True, capture_output=True,
                                text=True).stdout):
        (tmp_path / "in.b64").write_text(made)
        out = subprocess.run([str(COCO), "initdata", "decode", str(tmp_path / "in.b64")], check=True,
                             capture_output=True).stdout
        assert out == raw
        # digest and pcr8 also take the annotation form
        assert coco("initdata", "pcr8", tmp_path / "in.b64").stdout.strip() == pcr8
    # decode from standard input
    out = subprocess.run([str(COCO), "initdata", "decode", "-"], input=ann.encode(), check=True,
                         capture_output=True).stdout
    assert out == raw


def test_pcr8_needs_sha256(tmp_path):
    f = tmp_path / "i.toml"
    f.write_text('version = "0.1.0"\nalgorithm = "sha384"\n[data]\n')
    assert coco("initdata", "digest", f).stdout.strip() == hashlib.sha384(f.read_bytes()).hexdigest()
    r = coco("initdata", "pcr8", f, check=False)
    assert r.returncode == 1 and "32-byte (sha256)" in r.stderr


def test_check_accepts_the_template_and_lists_every_problem(rendered, tmp_path):
    import tomllib  # noqa: F401

    d, _ = rendered
    r = coco("initdata", "check", d / "initdata.toml")
    assert r.returncode == 0 and r.stdout.startswith(f"{d / 'initdata.toml'}: ok")
    assert "exec without an allowed command: denied" in r.stdout
    r = coco("initdata", "check", d / "debug.toml")
    assert r.returncode == 0 and "ALLOWED (permissive policy)" in r.stdout

    text = (d / "initdata.toml").read_text()
    bad = tmp_path / "bad.toml"
    # algorithm md5, no policy.rego, aa.toml that is not TOML: three refusals in one report.
    body = text.replace('algorithm = "sha256"', 'algorithm = "md5"')
    body = body[:body.index('"policy.rego"')]
    body = body.replace("[token_configs]\n", "[token_configs\n", 1)
    bad.write_text(body)
    r = coco("initdata", "check", bad, check=False)
    assert r.returncode == 3 and ": refused" in r.stdout.splitlines()[0], r.stdout
    assert "algorithm    REFUSED md5 (must be sha256, sha384 or sha512)" in r.stdout
    # Without a valid algorithm the data entries are still examined.
    bad.write_text(text.replace('version = "0.1.0"\n', "").replace('"policy.rego"', '"policy.txt"'))
    r = coco("initdata", "check", bad, check=False)
    assert r.returncode == 3
    assert "version      REFUSED missing" in r.stdout and "policy.rego  REFUSED missing" in r.stdout
    bad.write_text(text.replace("[kbc]\n", "[kbc\n"))
    r = coco("initdata", "check", bad, check=False)
    assert r.returncode == 3 and "cdh.toml     REFUSED does not parse as TOML" in r.stdout
    bad.write_text(text.replace("package agent_policy", "package something_else"))
    r = coco("initdata", "check", bad, check=False)
    assert r.returncode == 3 and "defines no data.agent_policy.ExecProcessRequest" in r.stdout


def explain(target, *args):
    r = coco("initdata", "explain-policy", target, "--request", "ExecProcessRequest", *args, "--json", check=False)
    assert r.returncode in (0, 3), r.stderr
    out = json.loads(r.stdout)
    assert (r.returncode == 0) == out["allowed"]
    return out


def opa_decision(opa, policy: Path, request_input, tmp_path, rule="ExecProcessRequest"):
    (tmp_path / "input.json").write_text(json.dumps(request_input))
    r = run([opa, "eval", "--format", "json", "-d", policy, "-i", tmp_path / "input.json",
             f"data.agent_policy.{rule}"])
    res = json.loads(r.stdout).get("result")
    return res[0]["expressions"][0]["value"] if res else None


def test_explain_policy_agrees_with_opa(rendered, tmp_path):
    import tomllib  # noqa: F401

    opa = find_opa()
    d, _ = rendered
    for name in ("initdata.toml", "debug.toml"):
        (tmp_path / f"{name}.rego").write_text(tomllib.loads((d / name).read_text())["data"]["policy.rego"])
    cases = [
        ("initdata.toml", "sh", False, True),
        ("initdata.toml", "cat /etc/passwd", False, True),
        ("initdata.toml", STATUS, True, False),
        ("initdata.toml", RANDOM, True, False),
        ("initdata.toml", STATUS + " -o /tmp/x", False, True),
        ("initdata.toml", "curl  http://127.0.0.1:8006/cdh/resource/default/attestation-status/status", True, False),
        ("initdata.toml", "curl http://127.0.0.1:8006/cdh/resource/default/kbsres1/key3", False, True),
        ("initdata.toml", "", False, True),
        ("debug.toml", "sh", True, True),
        ("debug.toml", "sh -c 'cat /etc/shadow'", True, True),
    ]
    for name, args, want, by_default in cases:
        out = explain(d / name, "--args", args)
        assert out["allowed"] is want, (name, args, out)
        assert out["decided_by"]["default"] is by_default, (name, args, out)
        if by_default:
            assert out["decided_by"]["source"] == f"default ExecProcessRequest := {str(want).lower()}"
        else:
            assert out["decided_by"]["source"] == "ExecProcessRequest if {"
        # opa, on the same input, with the policy as it travels in the init-data
        assert opa_decision(opa, tmp_path / f"{name}.rego", out["input"], tmp_path) is want, (name, args)
    # The same decision from the policy file itself and from the annotation form.
    assert explain(tmp_path / "initdata.toml.rego", "--args", STATUS)["allowed"] is True
    ann = tmp_path / "ann"
    ann.write_text(coco("initdata", "encode", d / "initdata.toml").stdout)
    assert explain(ann, "--args", "sh")["allowed"] is False


def test_explain_policy_human_output_and_other_requests(rendered, tmp_path):
    opa = find_opa()
    d, _ = rendered
    r = coco("initdata", "explain-policy", d / "initdata.toml", "--request", "ExecProcessRequest", "--args", "sh",
             check=False)
    assert r.returncode == 3
    assert r.stdout.splitlines()[0] == 'ExecProcessRequest ["sh"]: denied'
    assert "decided by: policy.rego:" in r.stdout and "default ExecProcessRequest := false" in r.stdout
    assert "none of the 1 ExecProcessRequest rule bodies succeeded" in r.stdout
    r = coco("initdata", "explain-policy", d / "initdata.toml", "--request", "ExecProcessRequest", "--args", STATUS)
    assert r.stdout.splitlines()[0].endswith(": allowed") and "ExecProcessRequest if {" in r.stdout
    # Another request, with an input file; and a request the policy does not define.
    (tmp_path / "req.json").write_text("{}")
    for req, want in (("CreateContainerRequest", True), ("ReadStreamRequest", False), ("WriteStreamRequest", False)):
        r = coco("initdata", "explain-policy", d / "initdata.toml", "--request", req, "--input", tmp_path / "req.json",
                 check=False)
        assert (r.returncode == 0) is want, r.stdout
        policy = tmp_path / "p.rego"
        import tomllib

        policy.write_text(tomllib.loads((d / "initdata.toml").read_text())["data"]["policy.rego"])
        assert opa_decision(opa, policy, {}, tmp_path, rule=req) is want
    r = coco("initdata", "explain-policy", d / "initdata.toml", "--request", "NoSuchRequest", check=False)
    assert r.returncode == 3 and "undefined" in r.stdout
    # genpolicy's debug switch: a refused request goes through when AllowRequestsFailingPolicy is true.
    p = tmp_path / "failing.rego"
    p.write_text("package agent_policy\nimport rego.v1\ndefault ExecProcessRequest := false\n"
                 "default AllowRequestsFailingPolicy := true\n")
    r = coco("initdata", "explain-policy", p, "--request", "ExecProcessRequest", "--args", "sh")
    assert r.stdout.splitlines()[0].endswith(": allowed") and "AllowRequestsFailingPolicy" in r.stdout
    # Usage errors are exit status 2.
    r = coco("initdata", "explain-policy", p, "--request", "Bad-Name", check=False)
    assert r.returncode == 2
