#!/usr/bin/env python3
"""Differential test: the coco-trust `rego` CLI against the real `opa` binary.

For every shipped policy (policies/attestation/*.rego, policies/resource/*.rego) and every test
policy in tests/rego/diff_policies/, random inputs (fixed seed; REGO_DIFF_SEED to change,
REGO_DIFF_N for the count) are evaluated with `eval --format json data.policy` by both engines;
their outputs must be identical JSON. query_reference_value (a host function in the service) is
defined in Rego over data.reference for both engines. PROGRAMS and QUERIES, small fixed ones,
pin down the forms random inputs do not reach (negation rules, compile-time errors).
Exit 77 (ctest skip) when opa is absent outside CI.
"""
import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

RV_HELPER = "package policy\n\nquery_reference_value(id) := data.reference[id]\n"

POOL = ["a", "b", "abcde", "1", "81000000", "939a7233f79c4ca9940a0db3957f0607", "UpToDate", "OutOfDate",
        "0", "affirming", "warning", "contraindicated", 0, 1, 2, 3, 2.5, -18, True, False, None]

CPU_PATHS = {
    "sample": ["debug", "launch_digest", "platform_version.major", "platform_version.minor", "svn"],
    "snp": ["measurement", "platform_smt_enabled", "platform_tsme_enabled", "policy_abi_major",
            "policy_abi_minor", "policy_debug_allowed", "policy_migrate_ma", "policy_single_socket",
            "policy_smt_allowed", "reported_tcb_bootloader", "reported_tcb_microcode", "reported_tcb_snp",
            "reported_tcb_tee"],
    "tdx": ["collateral_expiration_status", "quote.body.mr_td", "quote.body.rtmr_1", "quote.body.rtmr_2",
            "quote.body.xfam", "quote.header.tee_type", "quote.header.vendor_id", "tcb_status",
            "td_attributes.debug"],
    "tpm": ["ak_public", "pcr11"],
    "se": ["version"],
    "az-snp-vtpm": ["measurement", "platform_smt_enabled", "platform_tsme_enabled", "policy_abi_major",
                    "policy_abi_minor", "policy_single_socket", "policy_smt_allowed", "reported_tcb_bootloader",
                    "reported_tcb_microcode", "reported_tcb_snp", "reported_tcb_tee", "tpm.pcr11"],
    "az-tdx-vtpm": ["quote.body.mr_td", "quote.body.xfam", "quote.header.tee_type", "quote.header.vendor_id",
                    "tcb_status", "tpm.pcr11"],
}
RV_IDS = ["abi_major", "abi_minor", "launch_digest", "major_version", "measurement", "minimum_minor_version",
          "mr_td", "rtmr_1", "rtmr_2", "single_socket", "smt_allowed", "smt_enabled", "snp_bootloader",
          "snp_guest_abi_major", "snp_guest_abi_minor", "snp_launch_measurement", "snp_microcode", "snp_pcr11",
          "snp_single_socket", "snp_smt_allowed", "snp_smt_enabled", "snp_snp_svn", "snp_tee_svn",
          "snp_tsme_enabled", "svn", "tcb_bootloader", "tcb_microcode", "tcb_snp", "tcb_tee", "tdvfkernel",
          "tdvfkernelparams", "tdx_pcr11", "tpm_pcr11", "trusted_aks", "tsme_enabled", "xfam"]


def rv(r):
    return r.choice(POOL)


def set_path(obj, path, value):
    parts = path.split(".")
    for p in parts[:-1]:
        obj = obj.setdefault(p, {})
    obj[parts[-1]] = value


def cpu_case(r):
    inp = {}
    for tee in r.sample(sorted(CPU_PATHS), r.randint(0, 2)):
        claims = {}
        for p in CPU_PATHS[tee]:
            if r.random() < 0.85:
                set_path(claims, p, rv(r))
        if tee == "tdx" and r.random() < 0.7:
            claims["uefi_event_logs"] = [
                {"type_name": r.choice(["EV_EFI_BOOT_SERVICES_APPLICATION", "EV_EVENT_TAG", "EV_OTHER"]),
                 "details": {"device_paths": r.sample(["File(kernel)", "x"], r.randint(0, 2)),
                             "string": r.choice(["LOADED_IMAGE::LoadOptions", "x"])},
                 "digests": [{"digest": rv(r)} for _ in range(r.randint(0, 2))]}
                for _ in range(r.randint(0, 3))]
        inp[tee] = claims
    if r.random() < 0.6:
        inp["init_data_claims"] = {"agent_policy_claims": {"containers": [
            {"OCI": {"Annotations": {"io.kubernetes.cri.image-name": r.choice(["pause", "nginx", "busybox"])},
                     "Process": {"User": {"UID": r.choice([0, 1000, 65535])}}}}
            for _ in range(r.randint(0, 3))]}}
    ref = {}
    for i in RV_IDS:
        if r.random() < 0.8:
            ref[i] = [rv(r) for _ in range(r.randint(1, 3))] if r.random() < 0.6 else rv(r)
    return inp, {"reference": ref}


def resource_case(r):
    subs = {}
    for name in r.sample(["cpu0", "gpu0", "cpu1"], r.randint(0, 3)):
        s = {}
        if r.random() < 0.9:
            s["ear.status"] = r.choice(["affirming", "warning", "contraindicated", "none"])
        subs[name] = s
    inp = {"submods": subs} if r.random() < 0.9 else {}
    if r.random() < 0.5:
        inp["trust_context"] = {"attestation_summary": {"verification_result": r.choice([True, False]),
                                                        "tee_type": [r.choice(["tdx", "snp", "sample"])]}}
    data = {"plugin": r.choice(["resource", "resource", "other"]),
            "resource-path": [r.choice(["repo", "default"]), r.choice(["key", "cert"]), r.choice(["1", "2"])],
            "query": {}}
    return inp, data


def mix_case(r):
    keys = ["a1", "a2", "b1", "b2", "c"]
    claims = {k: r.choice(POOL + [[1, 2], {"x": 1}]) for k in r.sample(keys, r.randint(0, len(keys)))}
    return {"claims": claims, "values": [rv(r) for _ in range(r.randint(0, 4))]}, {}


# Fixed programs for what random inputs do not reach: how `not` treats undefined operands in
# each expression form (OPA evaluates call arguments that are refs, nested calls and ref indexes
# before the negation; operands of =/== and plain terms stay inside), the compile-time errors of
# negation, modules importing the `not` keyword (where the negation covers its operands), and
# queries (where == stays a call). A program's forms become rules r0, r1, ... of one module;
# a form that fails to compile gets a module of its own.
NOT_FORMS = ["not input.x in [1]", "not input.x == 1", "not input.x = 1", "not input.x != 1", "not input.x < 1",
             "not f(input.x)", "not is_string(data.snip.nothing)", "not input.x.y", "not input.x",
             "not count(input.xs) == 1", "not input.x + 1 == 2", "not [input.x][0] == 1",
             "not {\"a\": input.x} == {\"a\": 1}", "not input.y[input.k]", "x := input.y; not x.b in [1]",
             "not is_object(input)", "not input.x in [1] with input.x as 2", "not count(input.xs[_]) == 1"]
UNSAFE_FORMS = ["not input.xs[_] == [1]", "not f(_)", "not [_, 1] = input.xs", "some i; not input.xs[i] == [1]"]
NOT_BODY_FORMS = ["not input.x in [1]", "not f(input.x)", "not count(input.xs) == 1"]
NOT_BODY_IMPORTS = ["import future.keywords.not", "import future.keywords", "import rego.v2"]
SNIPPET_INPUTS = [{}, {"x": 1, "xs": [[1], [1, 2]], "y": {"a": 1}, "k": "b"}]
PROGRAMS = ([("", NOT_FORMS, SNIPPET_INPUTS)] +
            [("", [u], SNIPPET_INPUTS[:1]) for u in UNSAFE_FORMS] +
            [(imp, NOT_BODY_FORMS, SNIPPET_INPUTS) for imp in NOT_BODY_IMPORTS] +
            [(NOT_BODY_IMPORTS[0], [u], SNIPPET_INPUTS[:1]) for u in ["not count(input.xs[_]) == 1",
                                                                    "not input.xs[_] == [1]"]])
QUERIES = ["not input.x in [1]", "not input.x == 1", "not input.x = 1", "not count(input.xs) == 1",
           "x := \"a\"; not input.y[x]"]


def snippets(rego, opa, tmp):
    """Runs PROGRAMS and QUERIES through both engines; returns (evaluations, mismatches)."""
    cases = []
    for i, (imports, forms, inputs) in enumerate(PROGRAMS):
        mod = os.path.join(tmp, "snippet%d.rego" % i)
        with open(mod, "w") as f:
            f.write("package snip\n\nimport rego.v1\n%s\n\nf(x) if x\n" % imports)
            for j, form in enumerate(forms):
                f.write("\nr%d if {\n\t%s\n}\n" % (j, form.replace("; ", "\n\t")))
        cases += [("%s %s" % (imports, forms if len(forms) == 1 else "NOT_FORMS"), ["-d", mod, "data.snip"], inp)
                  for inp in inputs]
    cases += [(q, [q], inp) for q in QUERIES for inp in SNIPPET_INPUTS]
    failures = 0
    for label, args, inp in cases:
        ip = os.path.join(tmp, "input.json")
        with open(ip, "w") as f:
            json.dump(inp, f)
        ours = run([rego, "eval", "--format", "json", "-i", ip] + args)
        theirs = run([opa, "eval", "--format", "json", "-i", ip] + args)
        if normalize(ours) != normalize(theirs):
            failures += 1
            print("MISMATCH %s on input %s\n  ours:   %s\n  opa:    %s" %
                  (label, json.dumps(inp), json.dumps(ours)[:600], json.dumps(theirs)[:600]))
    return len(cases), failures


def normalize(out):
    """Errors compare by code and location (opa adds detail lines and stack traces)."""
    if isinstance(out, dict) and "errors" in out:
        return {"errors": [e.get("code") for e in out["errors"]][:1]}
    return out


def find_opa():
    for c in [shutil.which("opa"), os.path.expanduser("~/go/bin/opa"), "/root/go/bin/opa"]:
        if c and os.path.exists(c):
            return c
    return None


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    try:
        return json.loads(p.stdout) if p.stdout.strip() else {"stderr": p.stderr.strip()[:300]}
    except ValueError:
        return {"unparsable": p.stdout[:300]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rego", required=True)
    ap.add_argument("--source", required=True)
    args = ap.parse_args()
    opa = find_opa()
    if not opa:
        msg = "differential: opa binary not found (scripts/install-test-tools)"
        if os.environ.get("CI"):
            print(msg)
            return 1
        print("SKIP: " + msg)
        return 77
    seed = int(os.environ.get("REGO_DIFF_SEED", "20261127"))
    n = int(os.environ.get("REGO_DIFF_N", "25"))
    policies = []
    for p in sorted(glob.glob(os.path.join(args.source, "policies", "attestation", "*.rego"))):
        policies.append((p, cpu_case, True))
    for p in sorted(glob.glob(os.path.join(args.source, "policies", "resource", "*.rego"))):
        policies.append((p, resource_case, False))
    here = os.path.dirname(os.path.abspath(__file__))
    for p in sorted(glob.glob(os.path.join(here, "diff_policies", "*.rego"))):
        policies.append((p, mix_case, False))
    if not policies:
        print("differential: no policies found")
        return 1
    failures = 0
    runs = 0
    with tempfile.TemporaryDirectory() as tmp:
        helper = os.path.join(tmp, "rv_helper.rego")
        with open(helper, "w") as f:
            f.write(RV_HELPER)
        for path, gen, needs_helper in policies:
            r = random.Random("%d:%s" % (seed, os.path.basename(path)))
            for i in range(n):
                inp, data = gen(r)
                ip, dp = os.path.join(tmp, "input.json"), os.path.join(tmp, "data.json")
                with open(ip, "w") as f:
                    json.dump(inp, f)
                with open(dp, "w") as f:
                    json.dump(data, f)
                common = ["-d", path, "-d", dp, "-i", ip]
                if needs_helper:
                    common += ["-d", helper]
                ours = run([args.rego, "eval", "--format", "json"] + common + ["data.policy"])
                theirs = run([opa, "eval", "--format", "json"] + common + ["data.policy"])
                runs += 1
                if normalize(ours) != normalize(theirs):
                    failures += 1
                    if failures <= 10:
                        print("MISMATCH %s case %d\n  input: %s\n  data: %s\n  ours:   %s\n  opa:    %s" %
                              (os.path.relpath(path, args.source), i, json.dumps(inp)[:500],
                               json.dumps(data)[:300], json.dumps(ours)[:800], json.dumps(theirs)[:800]))
        sruns, sfail = snippets(args.rego, opa, tmp)
    print("differential: %d policies, %d evaluations, %d mismatches; fixed programs: %d evaluations, %d mismatches" %
          (len(policies), runs, failures, sruns, sfail))
    failures += sfail
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
