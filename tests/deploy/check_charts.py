#!/usr/bin/env python3
"""Lints, renders and validates the pattern's Helm charts for every topology.

For simple, trusted-hub and spoke: init-data is rendered with `coco initdata render` for a KBS
certificate made here and passed as the charts expect it (annotation form, PCR8); every chart of
the topology is linted (`helm lint --strict`) and rendered (`helm template`), and every rendered
object is validated by k8scheck (tests/deploy/k8scheck: strict decoding into the Kubernetes 1.32,
OpenShift Route, cert-manager, External Secrets and OCM Go types; CRD schemas for KataConfig and
the ACM policies). Then: the init-data in the pods' annotations decodes back to the rendered
TOML, every path the KBS's kbs-config.toml names is served by a mount of the kbs container
(policy_dir/opa and the reference-value file from their ConfigMaps, keys from their Secrets), and
k8scheck refuses a rendering with a misspelt field (the validators bite).

Tools: helm (helm.sh/helm/v3 from the Go module proxy) and coco-k8scheck, both built into
$(go env GOPATH)/bin by scripts/install-test-tools. Exit 77 (ctest skip) when one is missing
outside CI.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

SKIP = 77
ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "deploy" / "charts"
VALUES = ROOT / "deploy" / "values"
TOPOLOGIES = {
    "simple": {"kbs": "trustee-operator-system", "workloads": "hello-openshift", "sandbox": "openshift-sandboxed-containers-operator"},
    "trusted-hub": {"kbs": "trustee-operator-system", "sandbox": "openshift-sandboxed-containers-operator"},
    "spoke": {"workloads": "hello-openshift", "sandbox": "openshift-sandboxed-containers-operator"},
}


def gobin():
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if os.path.exists(go):
        out = subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True).stdout.strip()
        if out:
            return Path(out) / "bin"
    return Path.home() / "go" / "bin"


def need(path, what):
    if path and os.access(path, os.X_OK):
        return str(path)
    msg = f"check_charts: {what} not found (scripts/install-test-tools builds it)"
    if os.environ.get("CI"):
        print(msg + " - required under CI", file=sys.stderr)
        sys.exit(1)
    print(msg + " - skipped", file=sys.stderr)
    sys.exit(SKIP)


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(str(c)[:80] for c in cmd)}\n{r.stdout}{r.stderr}")
    return r.stdout


def kbs_config_problems(rendered: str) -> list:
    """Paths in the rendered kbs-config.toml that no mount of the kbs container serves: Trustee's
    policy_dir (policies in <policy_dir>/opa) and LocalJson file_path must be the ConfigMaps the
    chart fills, the keys and certificates Secrets, the store a volume."""
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    pod = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "kbs")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    kbs = next(c for c in pod["containers"] if c["name"] == "kbs")
    mounts = {m["mountPath"]: vols.get(m["name"], {}) for m in kbs["volumeMounts"]}
    cfg = tomllib.loads(maps["kbs-config"]["kbs-config.toml"])
    broker = cfg["attestation_service"]["attestation_token_broker"]
    files = [cfg["http_server"]["private_key"], cfg["http_server"]["certificate"], broker["signer"]["key_path"],
             broker["signer"]["cert_path"], cfg["policy_engine"]["policy_path"],
             cfg["attestation_service"]["rvps_config"]["storage"]["file_path"],
             *cfg["attestation_token"]["trusted_certs_paths"],
             *[i["public_key_uri"] for i in cfg["admin"]["authentication"]["bearer_jwt"]["identity_providers"]]]
    problems = []
    for f in files:
        d, name = f.rsplit("/", 1)
        vol = mounts.get(d)
        if vol is None:
            problems.append(f"{f}: no mount of the kbs container at {d}")
        elif "configMap" in vol and name not in maps.get(vol["configMap"]["name"], {}):
            problems.append(f"{f}: ConfigMap {vol['configMap']['name']} mounted at {d} has no {name}")
        elif "configMap" not in vol and "secret" not in vol:
            problems.append(f"{f}: {d} is neither a ConfigMap nor a Secret")
    opa = broker["policy_dir"] + "/opa"
    vol = mounts.get(opa, {})
    if "default_cpu.rego" not in maps.get(vol.get("configMap", {}).get("name"), {}):
        problems.append(f"policy_dir: {opa} is not the ConfigMap holding default_cpu.rego")
    if cfg["storage_backend"]["backends"]["local_fs"]["dir_path"] not in mounts:
        problems.append("storage dir_path: not a mount of the kbs container")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coco", required=True)
    ap.add_argument("--helm")
    ap.add_argument("--checker")
    a = ap.parse_args()
    helm = need(a.helm or gobin() / "helm", "helm")
    checker = need(a.checker or gobin() / "coco-k8scheck", "coco-k8scheck")
    coco = need(a.coco, "coco")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cert = tmp / "kbs.crt"
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             tmp / "kbs.key", "-out", cert, "-days", "2", "-subj", "/CN=kbs.apps.hub.example.com"])
        url = "https://kbs.apps.hub.example.com"
        run([coco, "initdata", "render", "--kbs-url", url, "--kbs-cert", cert, "-o", tmp / "initdata.toml"])
        run([coco, "initdata", "render", "--kbs-url", url, "--kbs-cert", cert, "--permissive", "-o", tmp / "debug.toml"])
        secure = run([coco, "initdata", "encode", tmp / "initdata.toml"]).strip()
        permissive = run([coco, "initdata", "encode", tmp / "debug.toml"]).strip()
        pcr8 = run([coco, "initdata", "pcr8", tmp / "initdata.toml"]).strip()
        run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", tmp / "admin.key"])
        sets = {
            "workloads": ["--set-string", f"initdata.secure={secure}", "--set-string", f"initdata.permissive={permissive}"],
            "sandbox": ["--set-string", f"initdataConfigMap.initdata={secure}", "--set-string",
                        f"initdataConfigMap.pcr8={pcr8}", "--set-string", f"peerPods.initdata={secure}"],
            "kbs": [],
        }
        renders = {}
        for topo, charts in TOPOLOGIES.items():
            for chart, ns in charts.items():
                args = [CHARTS / chart, "-f", VALUES / topo / f"{chart}.yaml", *sets[chart]]
                if topo == "spoke" and chart == "sandbox":  # the hub's policy writes peer-pods-cm INITDATA
                    args = [CHARTS / chart, "-f", VALUES / topo / f"{chart}.yaml"]
                run([helm, "lint", "--strict", "--quiet", *args, "--namespace", ns])
                out = run([helm, "template", chart, *args, "--namespace", ns])
                f = tmp / f"{topo}-{chart}.yaml"
                f.write_text(out)
                renders[(topo, chart)] = out
                r = subprocess.run([checker, f], capture_output=True, text=True)
                status = "ok" if r.returncode == 0 else "INVALID"
                print(f"{topo:12} {chart:10} {status}: {r.stdout.strip().splitlines()[-1]}")
                if r.returncode != 0:
                    print(r.stdout, file=sys.stderr)
                    failures += 1

        # Variants the topologies do not cover: Ingress, inline Secrets and an admin key in values.
        out = run([helm, "template", "kbs", CHARTS / "kbs", "--namespace", "kbs", "--set", "exposure=ingress",
                   "--set-file", f"adminPublicKey={tmp / 'admin.key'}", "--set-string", "inlineResources.kbsres1.key3=x"])
        (tmp / "kbs-variant.yaml").write_text(out)
        r = subprocess.run([checker, tmp / "kbs-variant.yaml"], capture_output=True, text=True)
        print(f"{'variant':12} {'kbs':10} {'ok' if r.returncode == 0 else 'INVALID'}: {r.stdout.strip().splitlines()[-1]}")
        failures += r.returncode != 0
        if "kind: Ingress" not in out or "kind: ExternalSecret" in out:
            print("kbs variant: expected an Ingress and plain Secrets", file=sys.stderr)
            failures += 1

        # The init-data in the pod annotations is exactly what coco rendered.
        ann = re.findall(r'io\.katacontainers\.config\.hypervisor\.cc_init_data: "([^"]+)"',
                         renders[("simple", "workloads")])
        if sorted(set(ann)) != sorted({secure, permissive}) or len(ann) != 3:
            print(f"workloads: expected the secure and permissive init-data on 3 pods, got {len(ann)}", file=sys.stderr)
            failures += 1
        for value, src in ((secure, "initdata.toml"), (permissive, "debug.toml")):
            (tmp / "ann").write_text(value)
            if run([coco, "initdata", "decode", tmp / "ann"]) != (tmp / src).read_text():
                print(f"workloads: annotation does not decode to {src}", file=sys.stderr)
                failures += 1
        if f'PCR8_HASH: "{pcr8}"' not in renders[("simple", "sandbox")]:
            print("sandbox: PCR8_HASH missing from the initdata ConfigMap", file=sys.stderr)
            failures += 1
        hub = renders[("trusted-hub", "sandbox")]
        if "{{hub fromConfigMap \"imperative\" \"initdata\" \"INITDATA\" hub}}" not in hub or "kind: KataConfig" in hub:
            print("trusted-hub sandbox: expected the ACM hub template and no KataConfig", file=sys.stderr)
            failures += 1

        # The KBS finds what its configuration names (and the check bites on a missing mount).
        for key in (("simple", "kbs"), ("trusted-hub", "kbs")):
            for problem in kbs_config_problems(renders[key]):
                print(f"{key[0]} kbs: {problem}", file=sys.stderr)
                failures += 1
        missing = renders[("simple", "kbs")].replace("mountPath: /etc/kbs/attestation-policy/opa", "mountPath: /opa", 1)
        if not any("policy_dir" in p for p in kbs_config_problems(missing)):
            print("kbs_config_problems missed an unmounted policy_dir", file=sys.stderr)
            failures += 1

        # The validator refuses what the API server would refuse.
        bad = renders[("simple", "kbs")].replace("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1)
        (tmp / "bad.yaml").write_text(bad)
        r = subprocess.run([checker, tmp / "bad.yaml"], capture_output=True, text=True)
        if r.returncode == 0 or "readOnlyRootFileSystem" not in r.stdout:
            print("k8scheck accepted a misspelt field", file=sys.stderr)
            failures += 1
        bad = renders[("simple", "sandbox")].replace("enablePeerPods", "enablePeerPod", 1)
        (tmp / "bad.yaml").write_text(bad)
        r = subprocess.run([checker, tmp / "bad.yaml"], capture_output=True, text=True)
        if r.returncode == 0 or 'unknown field "enablePeerPod"' not in r.stdout:
            print("k8scheck accepted a misspelt KataConfig field", file=sys.stderr)
            failures += 1
    print(f"check_charts: {'ok' if failures == 0 else 'FAILED'} ({failures} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
