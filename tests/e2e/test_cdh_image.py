"""Image pull under the image security policy, end to end: a real registry (docker-registry over
TLS with token auth) holding images pushed with skopeo and signed with the real cosign, a real
KBS serving the policy and the cosign public key, and cdh pulling through its ttRPC service
(with containerd's Go ttrpc client) and its one-shot verbs."""
import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

import registry as R
import ttrpc_client as tc
from conftest import BIN, bgcheck_config
from test_cdh import cdh_toml, set_policy, set_resource, start_cdh, swtpm  # noqa: F401 (fixtures)

FILES = {"bin/hello": b"#!/bin/sh\necho hello from a signed image\n", "etc/motd": b"signed and verified\n",
         "bin/sh": ("symlink", "/bin/hello"), "usr/share/doc/": ("dir",)}


class World:
    """Registry, images, signatures and keys, shared by the tests of this module."""

    def __init__(self, d: Path):
        self.reg = R.Registry(d / "registry")
        host = self.reg.host
        self.key_a = R.Cosign(d, self.reg, "key-a")
        self.key_b = R.Cosign(d, self.reg, "key-b")
        # app:v1, signed with key A.
        self.reg.push_layout(R.oci_layout(d / "app", FILES), "test/app:v1")
        self.digest = self.ref_digest("test/app", "v1")
        self.key_a.sign(f"{host}/test/app@{self.digest}")
        # Unsigned, and signed by another key.
        self.reg.push_layout(R.oci_layout(d / "unsigned", {**FILES, "etc/motd": b"nobody signed me\n"}),
                             "test/app:unsigned")
        self.reg.push_layout(R.oci_layout(d / "otherkey", {**FILES, "etc/motd": b"signed by key B\n"}),
                             "test/app:other-key")
        self.key_b.sign(f"{host}/test/app@{self.ref_digest('test/app', 'other-key')}")
        # Re-tagged: the signed image and its signature copied into another repository.
        sig_tag = f"sha256-{self.digest[7:]}.sig"
        self.reg.copy_manifest("test/app", "v1", "test/other", "v1")
        self.reg.copy_manifest("test/app", sig_tag, "test/other", sig_tag)
        # Tampered: the manifest changed (an annotation added), the original signature moved to it.
        mt, body = self.reg.manifest("test/app", "v1")
        m = json.loads(body)
        m["annotations"] = {"org.example.tampered": "yes"}
        tampered = json.dumps(m).encode()
        self.reg.put_manifest("test/app", "tampered", mt, tampered)
        import hashlib
        self.tampered_digest = "sha256:" + hashlib.sha256(tampered).hexdigest()
        self.reg.copy_manifest("test/app", sig_tag, "test/app", f"sha256-{self.tampered_digest[7:]}.sig")
        # Hostile layers (pulled under the insecure policy, refused by the unpacker).
        import io
        import tarfile
        dotdot = tarfile.TarInfo("../../escaped")
        dotdot.size = 5
        self.reg.push_layout(R.oci_layout(d / "evil1", {}, layers=[R.make_layer({"ok": b"fine\n"}, [(dotdot, b"evil\n")])]),
                             "test/evil:dotdot")
        absolute = tarfile.TarInfo("/etc/evil")
        absolute.size = 5
        self.reg.push_layout(R.oci_layout(d / "evil2", {}, layers=[R.make_layer({}, [(absolute, b"evil\n")])]),
                             "test/evil:absolute")
        self.reg.push_layout(R.oci_layout(d / "evil3", {}, layers=[R.make_layer({"a/link": ("symlink", "../../../../etc")})]),
                             "test/evil:symlink")
        through = tarfile.TarInfo("tmp-link/pwned")
        through.size = 5
        self.reg.push_layout(R.oci_layout(d / "evil4", {}, layers=[
            R.make_layer({"tmp-link": ("symlink", str(d))}), R.make_layer({}, [(through, b"evil\n")])]),
            "test/evil:through-symlink")
        del io

    def big(self, d: Path) -> bytes:
        """test/big:v1: one 64 MiB layer of random bytes (pushed on first use)."""
        if not hasattr(self, "_big"):
            self._big = os.urandom(64 << 20)
            layer = stored_layer(one_file_tar("data/big.bin", self._big))
            self.reg.push_layout(R.oci_layout(d / "big", {}, layers=[layer]), "test/big:v1")
        return self._big

    def ref_digest(self, repo, tag):
        import hashlib
        return "sha256:" + hashlib.sha256(self.reg.manifest(repo, tag)[1]).hexdigest()

    def ref(self, name):
        return f"{self.reg.host}/{name}"

    def stop(self):
        self.reg.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("image-world"))
    yield w
    w.stop()


def policy(kind, w, key_uri="kbs:///default/cosign-keys/key-0", identity=None):
    if kind == "signed":
        req = {"type": "sigstoreSigned", "keyPath": key_uri}
        if identity:
            req["signedIdentity"] = identity
        return {"default": [{"type": "reject"}], "transports": {"docker": {f"{w.reg.host}/test": [req]}}}
    if kind == "reject":
        return {"default": [{"type": "reject"}]}
    return {"default": [{"type": "insecureAcceptAnything"}]}


@pytest.fixture
def kbs_with_policies(world, pki, start_kbs, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    set_resource(kbs, pki, tmp_path, "default/cosign-keys/key-0", world.key_a.pub.read_bytes())
    for kind in ("signed", "reject", "insecure"):
        set_resource(kbs, pki, tmp_path, f"default/security-policy/{kind}", json.dumps(policy(kind, world)).encode())
    set_policy(kbs, pki, tmp_path)
    return kbs


def image_toml(w, extra=""):
    return f"[image]\nextra_root_certificates = ['''{w.reg.ca.read_text()}''']\n{extra}\n"


def cdh_cfg(kbs, pki, w, kind, tmp_path, extra=""):
    cfg = tmp_path / f"cdh-{kind}.toml"
    cfg.write_text(cdh_toml(kbs.url(), pki) + image_toml(
        w, f'image_security_policy_uri = "kbs:///default/security-policy/{kind}"\n{extra}'))
    return cfg


def oneshot(cfg, *args, extra=()):
    return subprocess.run([str(BIN / "cdh"), "-c", str(cfg), "--tee", "sample", "--kbs-attempts", "2", *extra,
                           *map(str, args)], capture_output=True, text=True, timeout=120)


def assert_rootfs(rootfs: Path, files=FILES):
    for name, content in files.items():
        p = rootfs / name
        if isinstance(content, tuple) and content[0] == "symlink":
            assert os.readlink(p) == content[1]
        elif isinstance(content, tuple):
            assert p.is_dir()
        else:
            assert p.read_bytes() == content, name
    assert os.stat(rootfs / "bin/hello").st_mode & 0o777 == 0o755


def test_signed_image_pulled_through_ttrpc(world, kbs_with_policies, pki, start_cdh, tmp_path):
    go = tc.GoClient(tc.build_client())
    cdh = start_cdh(cdh_toml(kbs_with_policies.url(), pki) + image_toml(
        world, 'image_security_policy_uri = "kbs:///default/security-policy/signed"'))
    bundle = tmp_path / "bundle"
    code, resp = go.call(cdh.cdh_socket, "api.ImagePullService", "PullImage",
                         {"image_url": world.ref("test/app:v1"), "bundle_path": str(bundle)})
    assert code == 0, resp
    assert resp == {"manifest_digest": world.digest}
    assert_rootfs(bundle / "rootfs")
    # Anonymous pulls: the registry demanded a bearer token and cdh fetched one without credentials.
    assert any(r["user"] is None and r["scope"] == ["repository:test/app:pull"] for r in world.reg.tokens.requests)
    # A denial through ttRPC names the failed check and leaves nothing behind.
    bundle2 = tmp_path / "bundle2"
    code, msg = go.call(cdh.cdh_socket, "api.ImagePullService", "PullImage",
                        {"image_url": world.ref("test/app:unsigned"), "bundle_path": str(bundle2)})
    assert code == 7 and "unsigned" in msg, msg
    assert not (bundle2 / "rootfs").exists() or not any((bundle2 / "rootfs").iterdir())


def test_signed_policy_denials_name_the_failed_check(world, kbs_with_policies, pki, tmp_path):
    cfg = cdh_cfg(kbs_with_policies, pki, world, "signed", tmp_path)
    r = oneshot(cfg, "check-image", world.ref("test/app:v1"))
    assert r.returncode == 0 and r.stdout.startswith("allowed, because") and world.digest in r.stdout, r
    cases = {
        "test/app:unsigned": "the image is unsigned",
        "test/app:other-key": "does not verify with the policy's public key",
        "test/other:v1": f"signedIdentity matchRepository: the signature is for repository {world.reg.host}/test/app",
        "test/app:tampered": f"docker-manifest-digest {world.digest} in the signature does not match",
    }
    for ref, reason in cases.items():
        r = oneshot(cfg, "check-image", world.ref(ref))
        assert r.returncode == 3 and r.stdout.startswith("denied, because") and reason in r.stdout, (ref, r.stdout, r.stderr)
        assert "sigstoreSigned" in r.stdout and f"{world.reg.host}/test" in r.stdout  # the scope and requirement
    # Outside the signed scope the default (reject) applies.
    r = oneshot(cfg, "check-image", world.ref("test-elsewhere/app:v1"))
    assert r.returncode != 0
    # The one-shot pull: digest on stdout, or a reason and no rootfs.
    bundle = tmp_path / "b1"
    r = oneshot(cfg, "pull-image", world.ref("test/app:v1"), "--bundle", bundle)
    assert r.returncode == 0 and r.stdout.strip() == world.digest, r.stderr
    assert_rootfs(bundle / "rootfs")
    bundle = tmp_path / "b2"
    r = oneshot(cfg, "pull-image", world.ref("test/other:v1"), "--bundle", bundle)
    assert r.returncode != 0 and "matchRepository" in r.stderr and r.stdout == ""
    # matchExact cannot be met by a cosign signature (it binds a repository, not a tag).
    cfg2 = tmp_path / "exact.toml"
    cfg2.write_text(cdh_toml(kbs_with_policies.url(), pki) + image_toml(
        world, "image_security_policy = '''" + json.dumps(policy("signed", world, identity={"type": "matchExact"})) + "'''"))
    r = oneshot(cfg2, "check-image", world.ref("test/app:v1"))
    assert r.returncode == 3 and "signedIdentity matchExact" in r.stdout, r.stdout
    # With both a URI and an inline policy, the URI's policy decides (as in image-rs).
    for uri_kind, inline_kind, code in (("insecure", "reject", 0), ("reject", "insecure", 3)):
        cfg3 = cdh_cfg(kbs_with_policies, pki, world, uri_kind, tmp_path,
                       extra="image_security_policy = '" + json.dumps(policy(inline_kind, world)) + "'")
        r = oneshot(cfg3, "check-image", world.ref("test/app:v1"))
        assert r.returncode == code, (uri_kind, r.stdout, r.stderr)


def stored_layer(tar: bytes) -> bytes:
    """gzip with stored blocks: fast for big random content, and two tars of one length give two
    layers of one length (for swapping a blob's bytes in the registry's storage)."""
    import gzip
    return gzip.compress(tar, compresslevel=0, mtime=0)


def one_file_tar(name: str, data: bytes) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = len(data), 1700000000, 0o644
        t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def blob_file(w, digest) -> Path:
    return Path(w.reg.dir) / "storage/docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"


def vm_hwm_kib(pid) -> int:
    """The process's peak resident set (of its current image: unlike ru_maxrss, not inflated by
    the forking parent's pages)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_layer_streams_to_disk_with_bounded_memory(world, kbs_with_policies, pki, start_cdh, tmp_path,
                                                         monkeypatch):
    import hashlib
    # Under ASan, freed memory sits in its quarantine (256 MiB) and counts as resident: keep it
    # small so that what is measured is what cdh holds.
    if "ASAN_OPTIONS" in os.environ or "asan" in str(BIN):
        monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") +
                           ":quarantine_size_mb=4:thread_local_quarantine_size_kb=256")
    big = world.big(tmp_path)
    go = tc.GoClient(tc.build_client())
    cdh = start_cdh(cdh_toml(kbs_with_policies.url(), pki) + image_toml(
        world, 'image_security_policy_uri = "kbs:///default/security-policy/insecure"'))
    pull = lambda ref, bundle: go.call(cdh.cdh_socket, "api.ImagePullService", "PullImage",  # noqa: E731
                                       {"image_url": world.ref(ref), "bundle_path": str(bundle)})
    code, resp = pull("test/app:unsigned", tmp_path / "small")
    assert code == 0, resp
    base = vm_hwm_kib(cdh.proc.pid)
    code, resp = pull("test/big:v1", tmp_path / "b")
    assert code == 0, resp
    peak = vm_hwm_kib(cdh.proc.pid)
    got = tmp_path / "b/rootfs/data/big.bin"
    assert got.stat().st_size == len(big) and hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(big).digest()
    # A 64 MiB layer held in memory would lift the peak by at least 64 MiB.
    assert peak - base < 16 << 10, f"peak RSS {peak} KiB after the 64 MiB layer, {base} KiB before"
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["rootfs"]  # the scratch file is gone


class ThrottleProxy:
    """A TCP proxy on loopback passing the server's bytes at `rate` bytes/s; it counts them and
    notes when the client hangs up."""

    def __init__(self, upstream_port: int, rate: int):
        self.upstream, self.rate = upstream_port, rate
        self.forwarded, self.client_closed = 0, threading.Event()
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(16)
        self.port = self.s.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self.down, args=(u, c), daemon=True).start()
            threading.Thread(target=self.up, args=(c, u), daemon=True).start()

    def up(self, c, u):
        try:
            while (d := c.recv(65536)):
                u.sendall(d)
        except OSError:
            pass
        self.client_closed.set()
        for x in (c, u):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def down(self, u, c):
        import time
        try:
            while (d := u.recv(16384)):
                c.sendall(d)
                self.forwarded += len(d)
                time.sleep(len(d) / self.rate)
        except OSError:
            pass

    def stop(self):
        self.s.close()


def test_pull_past_its_deadline_is_cancelled_and_cleaned_up(world, kbs_with_policies, pki, start_cdh, tmp_path):
    import time
    world.big(tmp_path)
    proxy = ThrottleProxy(world.reg.port, 4 << 20)  # the 64 MiB layer would take 16 s
    try:
        go = tc.GoClient(tc.build_client())
        cdh = start_cdh(cdh_toml(kbs_with_policies.url(), pki) + image_toml(
            world, 'image_security_policy_uri = "kbs:///default/security-policy/insecure"'))
        bundle = tmp_path / "late"
        t0 = time.time()
        code, msg = go.call(cdh.cdh_socket, "api.ImagePullService", "PullImage",
                            {"image_url": f"127.0.0.1:{proxy.port}/test/big:v1", "bundle_path": str(bundle)},
                            server_timeout="1500ms")
        assert code == 4 and "1500 ms" in msg, msg  # DEADLINE_EXCEEDED, at the deadline
        assert time.time() - t0 < 5
        # The pull itself stops: the download is abandoned mid-layer and what it wrote is removed.
        deadline = time.time() + 10
        while json.loads(cdh.get("/info")[1])["running"] and time.time() < deadline:
            time.sleep(0.1)
        info = json.loads(cdh.get("/info")[1])
        assert info["running"] == 0 and info["cancelled_operations"] == 1, info
        assert proxy.client_closed.wait(5) and proxy.forwarded < 32 << 20, proxy.forwarded
        assert [p.name for p in bundle.iterdir()] == ["rootfs"] and not any((bundle / "rootfs").iterdir())
        assert "image pull abandoned (no caller is waiting)" in cdh.log.read_text()
    finally:
        proxy.stop()


def test_tampered_blobs_are_refused_and_nothing_is_unpacked(world, kbs_with_policies, pki, tmp_path):
    cfg = cdh_cfg(kbs_with_policies, pki, world, "insecure", tmp_path)
    # Another tar of the very same length (a valid layer, just not the one the manifest names).
    honest = stored_layer(one_file_tar("etc/conf", b"A" * 5000))
    forged = stored_layer(one_file_tar("etc/conf", b"B" * 5000))
    assert len(honest) == len(forged)
    world.reg.push_layout(R.oci_layout(tmp_path / "swap", {}, layers=[honest]), "test/tamper:swapped")
    import hashlib
    digest = "sha256:" + hashlib.sha256(honest).hexdigest()
    blob_file(world, digest).write_bytes(forged)
    bundle = tmp_path / "swapped"
    r = oneshot(cfg, "pull-image", world.ref("test/tamper:swapped"), "--bundle", bundle)
    assert r.returncode != 0 and f"blob {digest}: content digest is sha256:{hashlib.sha256(forged).hexdigest()}" in r.stderr, r.stderr
    assert [p.name for p in bundle.iterdir()] == ["rootfs"] and not any((bundle / "rootfs").iterdir())
    # A blob longer than the manifest says: the transfer stops at the first excess bytes (the
    # registry would send 256 MiB more).
    longer = stored_layer(one_file_tar("etc/conf", b"C" * 5000))
    world.reg.push_layout(R.oci_layout(tmp_path / "long", {}, layers=[longer]), "test/tamper:longer")
    digest = "sha256:" + hashlib.sha256(longer).hexdigest()
    with open(blob_file(world, digest), "r+b") as f:
        f.truncate(len(longer) + (256 << 20))
    bundle = tmp_path / "longer"
    r = oneshot(cfg, "pull-image", world.ref("test/tamper:longer"), "--bundle", bundle)
    assert r.returncode != 0 and f"is larger than the {len(longer)} bytes the manifest declares (cut off at" in r.stderr, r.stderr
    cut = int(r.stderr.split("cut off at ")[1].split(" ")[0])
    assert len(longer) < cut <= len(longer) + (1 << 20), r.stderr
    assert [p.name for p in bundle.iterdir()] == ["rootfs"] and not any((bundle / "rootfs").iterdir())


def test_reject_denies_and_insecure_allows_everything(world, kbs_with_policies, pki, tmp_path):
    refs = ["test/app:v1", "test/app:unsigned", "test/app:other-key", "test/other:v1", "test/app:tampered"]
    reject = cdh_cfg(kbs_with_policies, pki, world, "reject", tmp_path)
    insecure = cdh_cfg(kbs_with_policies, pki, world, "insecure", tmp_path)
    for ref in refs:
        r = oneshot(reject, "check-image", world.ref(ref))
        assert r.returncode == 3 and 'requirement "reject"' in r.stdout, r.stdout
        r = oneshot(insecure, "check-image", world.ref(ref))
        assert r.returncode == 0 and "allowed" in r.stdout, r.stdout + r.stderr
    bundle = tmp_path / "unsigned-bundle"
    r = oneshot(insecure, "pull-image", world.ref("test/app:unsigned"), "--bundle", bundle)
    assert r.returncode == 0, r.stderr
    assert (bundle / "rootfs/etc/motd").read_bytes() == b"nobody signed me\n"


def test_hostile_layers_are_refused(world, kbs_with_policies, pki, tmp_path):
    insecure = cdh_cfg(kbs_with_policies, pki, world, "insecure", tmp_path)
    cases = {"dotdot": "climbs out of the tree", "absolute": "absolute path",
             "symlink": "escapes the tree", "through-symlink": "written through the symlink"}
    for tag, reason in cases.items():
        bundle = tmp_path / f"evil-{tag}"
        r = oneshot(insecure, "pull-image", world.ref(f"test/evil:{tag}"), "--bundle", bundle)
        assert r.returncode != 0 and reason in r.stderr, (tag, r.stderr)
        assert not any((bundle / "rootfs").iterdir()), f"{tag}: a refused image left files behind"
    assert not (Path(world.reg.dir).parent / "pwned").exists()
    assert not Path("/etc/evil").exists()


def test_registry_mirror_answers_when_the_primary_is_down(world, pki, start_kbs, tmp_path):
    """registries.conf from the KBS (upstream's registry_configuration_uri): a plain-http mirror
    (`insecure`) first, the TLS primary after it; a blocked prefix; the policy applies to the
    reference each source is pulled as (as image-rs does)."""
    primary = R.Registry(tmp_path / "primary")
    mirror = R.Registry(tmp_path / "mirror", plain=True)
    try:
        primary.push_layout(R.oci_layout(tmp_path / "app", FILES), "test/app:v1")
        primary.mirror_to(mirror, "test/app", "v1")
        import hashlib
        digest = "sha256:" + hashlib.sha256(primary.manifest("test/app", "v1")[1]).hexdigest()
        conf = (f'[[registry]]\nprefix = "{primary.host}/test"\n'
                f'[[registry.mirror]]\nlocation = "{mirror.host}/test"\ninsecure = true\n'
                f'[[registry]]\nprefix = "{primary.host}/blocked"\nblocked = true\n')
        kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
        set_resource(kbs, pki, tmp_path, "default/registry-configuration/test", conf.encode())
        pols = {"insecure": {"default": [{"type": "insecureAcceptAnything"}]},
                "no-mirror": {"default": [{"type": "insecureAcceptAnything"}],
                              "transports": {"docker": {mirror.host: [{"type": "reject"}]}}}}
        for name, pol in pols.items():
            set_resource(kbs, pki, tmp_path, f"default/security-policy/{name}", json.dumps(pol).encode())
        set_policy(kbs, pki, tmp_path)

        def cfg(policy_name):
            c = tmp_path / f"mirror-{policy_name}.toml"
            c.write_text(cdh_toml(kbs.url(), pki) + f'[image]\nextra_root_certificates = ["""{primary.ca.read_text()}"""]\n'
                         f'image_security_policy_uri = "kbs:///default/security-policy/{policy_name}"\n'
                         'registry_configuration_uri = "kbs:///default/registry-configuration/test"\n')
            return c

        ref = f"{primary.host}/test/app:v1"
        # The mirror answers first: the primary's token service is never asked.
        tokens = len(primary.tokens.requests)
        r = oneshot(cfg("insecure"), "pull-image", ref, "--bundle", tmp_path / "b1")
        assert r.returncode == 0 and r.stdout.strip() == digest, r.stderr
        assert_rootfs(tmp_path / "b1/rootfs")
        assert len(primary.tokens.requests) == tokens
        r = oneshot(cfg("insecure"), "check-image", ref)
        assert r.returncode == 0 and f"from the mirror {mirror.host}/test/app:v1" in r.stdout, r.stdout
        # Primary stopped: still pulled, from the mirror.
        primary.stop()
        r = oneshot(cfg("insecure"), "pull-image", ref, "--bundle", tmp_path / "b2")
        assert r.returncode == 0 and r.stdout.strip() == digest, r.stderr
        assert_rootfs(tmp_path / "b2/rootfs")
        # The mirror's scope rejects it and the primary is down: both failures are named.
        r = oneshot(cfg("no-mirror"), "pull-image", ref, "--bundle", tmp_path / "b3")
        assert r.returncode != 0 and "no source could be pulled (2 tried)" in r.stderr, r.stderr
        assert f"mirror {mirror.host}/test/app:v1: image policy scope docker:{mirror.host}" in r.stderr, r.stderr
        assert f"original {ref}: " in r.stderr and "onnect" in r.stderr, r.stderr
        assert not (tmp_path / "b3/rootfs").exists()  # no source got past the policy
        # A blocked prefix is refused before any registry is contacted.
        r = oneshot(cfg("insecure"), "pull-image", f"{primary.host}/blocked/app:v1", "--bundle", tmp_path / "b4")
        assert r.returncode != 0 and "is blocked by the registry configuration" in r.stderr, r.stderr
    finally:
        primary.stop()
        mirror.stop()


class ConnectProxy:
    """An HTTP CONNECT proxy on loopback that records the targets it tunnels to."""

    def __init__(self):
        self.targets = []
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(16)
        self.port = self.s.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        req = b""
        while b"\r\n\r\n" not in req:
            d = c.recv(4096)
            if not d:
                return
            req += d
        line = req.split(b"\r\n")[0].decode()
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            c.close()
            return
        self.targets.append(target)
        host, port = target.rsplit(":", 1)
        u = socket.create_connection((host, int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(a, b):
            try:
                while (d := a.recv(65536)):
                    b.sendall(d)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pipe, args=(u, c), daemon=True).start()
        pipe(c, u)

    def stop(self):
        self.s.close()


def test_pull_proxy_and_registry_credentials(world, kbs_with_policies, pki, tmp_path):
    import base64
    proxy = ConnectProxy()
    try:
        creds = {"auths": {world.reg.host: {"auth": base64.b64encode(f"{R.USER}:{R.PASSWORD}".encode()).decode()}}}
        set_resource(kbs_with_policies, pki, tmp_path, "default/credential/registry", json.dumps(creds).encode())
        cfg = cdh_cfg(kbs_with_policies, pki, world, "signed", tmp_path, extra=(
            'authenticated_registry_credentials_uri = "kbs:///default/credential/registry"\n'
            f'[image.image_pull_proxy]\nhttps_proxy = "http://127.0.0.1:{proxy.port}"\n'))
        before = len(world.reg.tokens.requests)
        r = oneshot(cfg, "check-image", world.ref("test/app:v1"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert world.reg.host in proxy.targets  # the registry was reached through the proxy
        assert any(t["user"] == R.USER for t in world.reg.tokens.requests[before:])  # with the credentials
        # no_proxy bypasses it.
        cfg.write_text(cfg.read_text() + 'no_proxy = "127.0.0.1"\n')
        n = len(proxy.targets)
        assert oneshot(cfg, "check-image", world.ref("test/app:v1")).returncode == 0
        assert len(proxy.targets) == n
    finally:
        proxy.stop()
    # Without the registry's CA, TLS fails and says so.
    cfg = tmp_path / "noca.toml"
    cfg.write_text(cdh_toml(kbs_with_policies.url(), pki) +
                   '[image]\nimage_security_policy_uri = "kbs:///default/security-policy/insecure"\n')
    r = oneshot(cfg, "check-image", world.ref("test/app:v1"))
    assert r.returncode != 0 and ("certificate" in r.stderr.lower() or "ssl" in r.stderr.lower()), r.stderr


def test_pull_records_the_aael_event(world, swtpm, tmp_path):  # noqa: F811
    import base64
    import hashlib
    tcti, env = swtpm
    (tmp_path / "aa.toml").write_text("[eventlog_config]\nenable_eventlog = true\ninit_pcr = 23\n")
    pol = policy("signed", world, key_uri=str(world.key_a.pub))
    pol["transports"]["docker"][f"{world.reg.host}/test"][0].pop("keyPath")
    pol["transports"]["docker"][f"{world.reg.host}/test"][0]["keyData"] = base64.b64encode(world.key_a.pub.read_bytes()).decode()
    cfg = tmp_path / "cdh.toml"
    cfg.write_text(image_toml(world, "image_security_policy = '''" + json.dumps(pol) + "'''"))
    log = tmp_path / "aael"
    ref = world.ref("test/app:v1")
    r = subprocess.run([str(BIN / "cdh"), "-c", str(cfg), "--aa-config", str(tmp_path / "aa.toml"), "--tee", "tpm",
                        "--tpm-tcti", tcti, "--eventlog-path", str(log), "pull-image", ref, "--bundle",
                        str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == world.digest, r.stderr
    text = ('github.com/confidential-containers PullImage ' +
            json.dumps({"image": ref, "digest": world.digest}, separators=(",", ":"))).encode()
    tagged = (0x4141454C).to_bytes(4, "little") + len(text).to_bytes(4, "little") + text
    assert log.read_bytes().endswith(tagged), log.read_bytes()[-300:]
    want = hashlib.sha256(bytes(32) + hashlib.sha256(tagged).digest()).hexdigest()
    pcr = subprocess.run(["tpm2_pcrread", "sha256:23"], env=env, capture_output=True, text=True).stdout
    assert want.upper() in pcr.upper().replace("0X", "")


def encrypt_layout(src: Path, dst: Path, kek: bytes, kid: str, d: Path):
    """Encrypts an OCI layout with skopeo's ocicrypt (JWE recipient: the layer cipher, its options
    and HMAC are ocicrypt's own), then re-wraps each layer's private options for the CDH's
    "attestation-agent" key provider: AES-256-GCM under `kek`, named by `kid`."""
    import base64
    import hashlib
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    R.openssl("genrsa", "-out", d / "rsa.key", "2048")
    R.openssl("rsa", "-in", d / "rsa.key", "-pubout", "-out", d / "rsa.pub")
    r = subprocess.run([R.need("skopeo"), "copy", "--quiet", "--encryption-key", f"jwe:{d / 'rsa.pub'}",
                        f"oci:{src}:v1", f"oci:{dst}:v1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rsa = serialization.load_pem_private_key((d / "rsa.key").read_bytes(), None)
    ub = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))  # noqa: E731
    index = json.loads((dst / "index.json").read_text())
    blobs = dst / "blobs" / "sha256"
    m = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    for layer in m["layers"]:
        assert layer["mediaType"].endswith("+encrypted")
        ann = layer["annotations"]
        j = json.loads(base64.b64decode(ann.pop("org.opencontainers.image.enc.keys.jwe")))
        cek = rsa.decrypt(ub(j["encrypted_key"]), padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),
                                                               algorithm=hashes.SHA1(), label=None))
        optsdata = AESGCM(cek).decrypt(ub(j["iv"]), ub(j["ciphertext"]) + ub(j["tag"]), j["protected"].encode())
        iv = os.urandom(12)
        packet = {"kid": kid, "wrapped_data": base64.b64encode(AESGCM(kek).encrypt(iv, optsdata, None)).decode(),
                  "iv": base64.b64encode(iv).decode(), "wrap_type": "A256GCM"}
        ann["org.opencontainers.image.enc.keys.provider.attestation-agent"] = \
            base64.b64encode(json.dumps(packet).encode()).decode()
    mb = json.dumps(m).encode()
    digest = hashlib.sha256(mb).hexdigest()
    (blobs / digest).write_bytes(mb)
    index["manifests"][0].update({"digest": "sha256:" + digest, "size": len(mb)})
    (dst / "index.json").write_text(json.dumps(index))
    return dst


def test_encrypted_layers_decrypted_with_a_kek_from_the_kbs(world, pki, start_kbs, tmp_path):
    secret_files = {"etc/app.conf": b"password = layers are encrypted\n", "bin/run": b"#!/bin/sh\n"}
    kek = os.urandom(32)
    enc = encrypt_layout(R.oci_layout(tmp_path / "plain", secret_files), tmp_path / "enc", kek,
                         "kbs:///default/key/image-kek", tmp_path)
    world.reg.push_layout(enc, "test/secret:v1")
    for good in (True, False):
        kbs = start_kbs(bgcheck_config(pki, tmp_path / f"storage-{good}"), name=f"kbs-{good}")
        set_resource(kbs, pki, tmp_path, "default/key/image-kek", kek if good else os.urandom(32))
        set_resource(kbs, pki, tmp_path, "default/security-policy/insecure", json.dumps(policy("insecure", world)).encode())
        set_policy(kbs, pki, tmp_path)
        cfg = cdh_cfg(kbs, pki, world, "insecure", tmp_path)
        bundle = tmp_path / f"bundle-{good}"
        r = oneshot(cfg, "pull-image", world.ref("test/secret:v1"), "--bundle", bundle)
        if good:
            assert r.returncode == 0, r.stderr
            for name, content in secret_files.items():
                assert (bundle / "rootfs" / name).read_bytes() == content
        else:
            assert r.returncode != 0 and "GCM" in r.stderr and "image-kek" in r.stderr, r.stderr
            assert not any((bundle / "rootfs").iterdir())
