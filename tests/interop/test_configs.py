"""Configuration files both ways.

- trustee's own test configurations (configs/upstream, restated from trustee's kbs/test/config)
  start our KBS unchanged, and upstream's e2e flows (its kbs/test Makefile: background check,
  then passport through the resource KBS) pass on it with upstream's kbs-client;
- our configurations (configs/ours) start the upstream KBS unchanged, and the same flows pass
  with our kbs-client.

Each file is also run on its own implementation, which proves the restated file is valid there.
The texts keep upstream's fixed ports; each KBS runs in a private network namespace so that
those ports cannot collide with anything else on the machine (where namespaces are unavailable
the port is rewritten to 0, and the run says so).
"""
import base64
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, HERE, UP, UP_ENV, admin_jwt, openssl, run

CONFIGS = HERE / "configs"

TEE_POLICY = """package policy

import rego.v1

default allow := false

allow if {
	input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
}
"""


class Netns:
    """A private network namespace (loopback only) held open by a sleeping process."""

    def __init__(self):
        self.proc = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 600"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(100):
            if self.proc.poll() is not None:
                raise OSError(f"unshare -n failed: {self.proc.stderr.read().decode().strip()}")
            out = subprocess.run(self.prefix() + ["ip", "-o", "link", "show", "lo"], capture_output=True, text=True)
            if out.returncode == 0 and "UP" in out.stdout.split("<", 1)[-1].split(">", 1)[0]:
                return
            time.sleep(0.02)
        self.close()
        raise OSError("the network namespace's loopback did not come up")

    def prefix(self):
        return ["nsenter", "-t", str(self.proc.pid), "-n"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _netns_available():
    if not shutil.which("unshare") or not shutil.which("nsenter") or not shutil.which("ip"):
        return False
    try:
        Netns().close()
        return True
    except OSError:
        return False


NETNS = _netns_available()


@pytest.fixture
def netns():
    """Yields a command prefix that runs a program in a fresh namespace (or [] without one)."""
    if not NETNS:
        yield None
        return
    ns = Netns()
    yield ns.prefix()
    ns.close()


def config_text(path: Path, netns_prefix) -> str:
    text = path.read_text()
    if netns_prefix is None:  # no private namespace: take an ephemeral port instead of upstream's
        text = re.sub(r'sockets = \["127\.0\.0\.1:\d+"\]', 'sockets = ["127.0.0.1:0"]', text)
    return text


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The ./work directory trustee's test Makefile prepares, made the same way."""
    root = tmp_path_factory.mktemp("configs")
    w = root / "work"
    w.mkdir()
    openssl("req", "-x509", "-out", w / "https.crt", "-keyout", w / "https.key", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-sha256", "-subj", "/CN=kbs.coco", "-addext",
            "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=CA:FALSE", "-days", "2")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            w / "ca.key", "-out", w / "ca-cert.pem", "-days", "2", "-subj", "/O=CNCF/OU=CoCo/CN=KBS-test-root",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", w / "token.key")
    openssl("req", "-new", "-key", w / "token.key", "-out", w / "token-req.csr", "-subj", "/O=CNCF/OU=CoCo/CN=CoCo-AS")
    openssl("x509", "-req", "-in", w / "token-req.csr", "-CA", w / "ca-cert.pem", "-CAkey", w / "ca.key",
            "-CAcreateserial", "-out", w / "token-cert.pem", "-days", "2")
    (w / "token-cert-chain.pem").write_text((w / "token-cert.pem").read_text() + (w / "ca-cert.pem").read_text())
    openssl("genpkey", "-algorithm", "ed25519", "-out", w / "kbs.key")
    openssl("pkey", "-in", w / "kbs.key", "-pubout", "-out", w / "kbs.pem")
    openssl("genrsa", "-traditional", "-out", w / "tee.key", "2048")
    (w / "admin-token").write_text(admin_jwt(w / "kbs.key", iss="kbs-test"))
    (w / "policy.rego").write_text(TEE_POLICY)
    return root


def fresh_storage(root: Path):
    """The Makefile's secret, written straight into the LocalFs layout both KBSes read: one file
    per key in the namespace's directory, "/" in the key escaped as "\\x2F"."""
    w = root / "work"
    for d in ("storage", "resource-storage"):
        shutil.rmtree(w / d, ignore_errors=True)
    secret = os.urandom(16)
    for d in ("storage", "resource-storage"):
        p = w / d / "repository"
        p.mkdir(parents=True)
        (p / "one\\x2Ftwo\\x2Fthree").write_bytes(secret)
    return secret


def client(which, prefix, kbs, root, *args, check=True):
    w = root / "work"
    cert = ["--cert-file", w / "https.crt"] if kbs.tls else []
    exe = UP / "kbs-client" if which == "upstream" else BIN / "kbs-client"
    env = dict(UP_ENV, RUST_LOG="warn") if which == "upstream" else None
    return run([*(prefix or []), exe, "--url", kbs.url(), *cert, *args], check=check, env=env, cwd=root)


def makefile_flows(which_client, prefix, bg, resource, root, secret):
    """trustee kbs/test Makefile: test-bgcheck, then test-passport (with `which_client`)."""
    w = root / "work"
    admin = ["config", "--admin-token-file", w / "admin-token"]
    client(which_client, prefix, bg, root, *admin, "set-resource-policy", "--policy-file", w / "policy.rego")
    out = client(which_client, prefix, bg, root, "get-resource", "--path", "one/two/three")
    assert base64.b64decode(out.stdout.strip()) == secret
    token = client(which_client, prefix, bg, root, "attest", "--tee-key-file", w / "tee.key").stdout.strip()
    (w / "attestation_token").write_text(token)
    client(which_client, prefix, resource, root, *admin, "set-resource-policy", "--policy-file", w / "policy.rego")
    out = client(which_client, prefix, resource, root, "get-resource", "--attestation-token", w / "attestation_token",
                 "--tee-key-file", w / "tee.key", "--path", "one/two/three")
    assert base64.b64decode(out.stdout.strip()) == secret


def with_sample_enabled(text: str) -> str:
    return text.replace('type = "coco_as_builtin"\n', 'type = "coco_as_builtin"\nenable_sample_tee = true\n', 1)


@pytest.mark.parametrize("kind", ["ours", "upstream"])
def test_upstream_test_configs(kind, servers, work, netns, tmp_path_factory):
    """trustee's kbs.toml and resource-kbs.toml, unchanged, with upstream's kbs-client."""
    secret = fresh_storage(work)
    bg_text = config_text(CONFIGS / "upstream" / "kbs.toml", netns)
    res_text = config_text(CONFIGS / "upstream" / "resource-kbs.toml", netns)
    bg = servers.start(kind, bg_text, tls=True, cwd=work, prefix=netns or ())
    if kind == "ours":
        # Unchanged, ours starts, and refuses the sample TEE: it is opt-in here (upstream always
        # allows it). The refusal names the setting; with that one line the flows pass.
        w = work / "work"
        client("upstream", netns, bg, work, "config", "--admin-token-file", w / "admin-token", "set-resource-policy",
               "--allow-all")
        # (our client: upstream's retries a refused handshake for seconds before it gives up)
        refused = client("ours", netns, bg, work, "attest", check=False)
        assert refused.returncode != 0
        assert "enable_sample_tee" in refused.stderr, refused.stderr[-2000:]
        bg.stop()
        bg = servers.start(kind, with_sample_enabled(bg_text), tls=True, cwd=work, prefix=netns or ())
    # Different ports: the resource KBS shares the namespace (and the repository) with the first.
    resource = servers.start(kind, res_text, tls=False, cwd=work, prefix=netns or ())
    makefile_flows("upstream", netns, bg, resource, work, secret)
    bg.stop()
    resource.stop()


@pytest.mark.parametrize("kind", ["upstream", "ours"])
def test_our_configs(kind, servers, work, netns):
    """Our documented configurations start the upstream KBS unchanged; the same flows pass with
    our kbs-client (and with upstream's, on ours)."""
    secret = fresh_storage(work)
    bg = servers.start(kind, config_text(CONFIGS / "ours" / "background-check.toml", netns), tls=True, cwd=work,
                       prefix=netns or ())
    resource = servers.start(kind, config_text(CONFIGS / "ours" / "resource-only.toml", netns), tls=True, cwd=work,
                             prefix=netns or ())
    makefile_flows("ours", netns, bg, resource, work, secret)
    if kind == "ours":  # and upstream's client on ours, same files
        makefile_flows("upstream", netns, bg, resource, work, secret)
    bg.stop()
    resource.stop()


def starts(servers, kind, text, cwd):
    """(True, server) when `kind` starts with `text`, else (False, what it said)."""
    try:
        return True, servers.start(kind, text, tls=False, cwd=cwd)
    except RuntimeError as e:
        return False, str(e)


BASE = """[http_server]
sockets = ["127.0.0.1:0"]
insecure_http = true

[attestation_token]
trusted_certs_paths = ["./work/ca-cert.pem"]

[storage_backend]
storage_type = "LocalFs"

[storage_backend.backends.local_fs]
dir_path = "./work/diff-storage"
"""


@pytest.mark.parametrize("case", ["unknown-key", "no-storage-backend-type", "legacy-admin"])
def test_documented_config_differences(case, servers, work):
    """Each configuration difference listed in docs/compatibility.md, as it behaves today."""
    admin = '[admin]\nauthorization_mode = "InsecureAllowAll"\n'
    plugin = '[[plugins]]\nname = "resource"\nstorage_backend_type = "kvstorage"\n'
    if case == "unknown-key":
        text = BASE.replace("insecure_http = true", "insecure_http = true\ninsecure_htttp = true") + admin + plugin
        expect = {"ours": False, "upstream": True}
        said = 'unknown key "insecure_htttp" in [http_server]'
    elif case == "no-storage-backend-type":
        text = BASE + admin + '[[plugins]]\nname = "resource"\n'
        expect = {"ours": True, "upstream": False}
        said = "storage_backend_type"
    else:
        text = BASE + '[admin]\ninsecure_api = false\nauth_public_key = "./work/kbs.pem"\n' + plugin
        expect = {"ours": True, "upstream": False}
        said = "authorization_mode"
    for kind in ("ours", "upstream"):
        ok, what = starts(servers, kind, text, work)
        assert ok == expect[kind], f"{case}: {kind} {'started' if ok else 'refused: ' + str(what)[-500:]}"
        if ok:
            what.stop()
        else:
            assert said in what, what[-800:]
    listed = f"`{case}`" in (HERE.parents[1] / "docs" / "compatibility.md").read_text()
    assert listed, f"docs/compatibility.md does not list `{case}`"


def test_tls_certificate_that_is_a_ca(servers, work, tmp_path):
    """`openssl req -x509` makes a CA certificate by default. Ours serves with it and our client
    accepts it; upstream's clients (rustls/webpki) refuse any server certificate that is a CA
    (CaUsedAsEndEntity), whichever KBS presents it: serve a leaf (docs/compatibility.md)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            tmp_path / "ca-tls.key", "-out", tmp_path / "ca-tls.crt", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1")
    text = (BASE.replace("insecure_http = true", f'private_key = "{tmp_path / "ca-tls.key"}"\n'
                                                 f'certificate = "{tmp_path / "ca-tls.crt"}"')
            + '[admin]\nauthorization_mode = "InsecureAllowAll"\n'
            + '[[plugins]]\nname = "resource"\nstorage_backend_type = "kvstorage"\n')
    for kind in ("ours", "upstream"):
        kbs = servers.start(kind, text, tls=True, cwd=work)
        url = kbs.url()
        ours = run([BIN / "kbs-client", "--url", url, "--cert-file", tmp_path / "ca-tls.crt", "config",
                    "set-resource-policy", "--allow-all"], check=False)
        theirs = run([UP / "kbs-client", "--url", url, "--cert-file", tmp_path / "ca-tls.crt", "config",
                      "set-resource-policy", "--allow-all"], check=False, env=UP_ENV)
        assert ours.returncode == 0, f"{kind}: {ours.stderr}"
        assert theirs.returncode != 0 and "CaUsedAsEndEntity" in theirs.stderr, f"{kind}: {theirs.stderr[-800:]}"
        kbs.stop()
