"""Verifier parity: upstream's own verifier crate (`upstream-claims`, trustee 78962cd deps/verifier)
and our `kbs verify` on the same evidence, for every shared vector and derived cases (one bit
flipped in a signed part, wrong report data or init-data, re-labelled fields and chains).

Both accept: the claims must be identical, key for key. One accepts and the other refuses: the
case must name a difference documented in docs/compatibility.md (and the section must exist);
an undocumented difference fails, and so does a documented one that no longer happens.
"""
import base64
import copy
import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import BIN, HERE, UP, VECTORS, run

COMPAT_DOC = HERE.parents[1] / "docs" / "compatibility.md"
PARITY = []  # (case, ours, upstream, note) rows for the summary printed at the end

INIT_DATA = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"a.txt" = "parity"\n'
OTHER_INIT_DATA = INIT_DATA.replace("parity", "other")


@dataclass
class Case:
    id: str
    tee: str
    evidence: object                     # a JSON value, or a Path to a vector file
    report_data: bytes
    init_data: str = None                # TOML text; upstream gets its SHA-256 digest
    store: bool = False                  # SNP: the Genoa VCEK in an offline store for both
    trusted_ak: bool = True              # TPM: our trusted-AK directory holds the evidence's AK
    differs: tuple = None                # ("ours-accepts"|"ours-refuses", heading in compatibility.md)
    extra: dict = field(default_factory=dict)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"vector {path} missing") if _ci() else pytest.skip(f"vector {path} absent")
    return path


def _ci():
    import os
    return bool(os.environ.get("CI"))


def load(rel):
    return json.loads(need(VECTORS / rel).read_text())


# --- SNP ---------------------------------------------------------------------------------------

def genoa():
    return load("snp/genoa-evidence-with-vcek.json")


def genoa_rd():
    return bytes(genoa()["attestation_report"]["report_data"])


def amd_cert(gen, idx):
    """DER of the idx-th certificate (0 ASK, 1 ARK, 2 ASVK) of amd-roots/<gen>_ask_ark_asvk.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    pem = need(VECTORS / "amd-roots" / f"{gen}_ask_ark_asvk.pem").read_text()
    # One PEM block at a time: Debian 12's cryptography (38) has no load_pem_x509_certificates.
    end = "-----END CERTIFICATE-----"
    certs = [x509.load_pem_x509_certificate((block + end).encode())
             for block in pem.split(end) if "-----BEGIN CERTIFICATE-----" in block]
    return list(certs[idx].public_bytes(Encoding.DER))


def with_chain(chain):
    ev = genoa()
    ev["cert_chain"] = chain
    return ev


def genoa_flip(path, index=None, bit=0):
    """The Genoa evidence with one bit flipped in attestation_report[path...] (an int or a list)."""
    ev = genoa()
    obj = ev["attestation_report"]
    for k in path[:-1]:
        obj = obj[k]
    k = path[-1]
    if index is None:
        obj[k] ^= 1 << bit
    else:
        obj[k][index] ^= 1 << bit
    return ev


def snp_cases():
    vc = genoa()["cert_chain"][0]
    rd = genoa_rd()
    cases = [
        Case("snp-genoa", "snp", genoa(), rd),
        Case("snp-genoa-offline-store", "snp", with_chain(None), rd, store=True),
        Case("snp-genoa-chain-ask-ark", "snp", with_chain([{"cert_type": "ARK", "data": amd_cert("genoa", 1)},
                                                         {"cert_type": "ASK", "data": amd_cert("genoa", 0)}, vc]), rd),
        Case("snp-genoa-chain-twice", "snp", with_chain([vc, vc]), rd),
        Case("snp-genoa-chain-milan-ask", "snp", with_chain([vc, {"cert_type": "ASK", "data": amd_cert("milan", 0)}]), rd),
        Case("snp-genoa-chain-milan-ark", "snp", with_chain([vc, {"cert_type": "ARK", "data": amd_cert("milan", 1)}]), rd),
        Case("snp-genoa-chain-asvk-as-ask", "snp", with_chain([vc, {"cert_type": "ASK", "data": amd_cert("genoa", 2)}]),
             rd),
        Case("snp-genoa-chain-empty", "snp", with_chain([]), rd, store=True),
        Case("snp-genoa-chain-ask-only", "snp", with_chain([{"cert_type": "ASK", "data": amd_cert("genoa", 0)}]), rd,
             store=True),
        Case("snp-genoa-vcek-labelled-vlek", "snp", with_chain([dict(vc, cert_type="VLEK")]), rd),
        Case("snp-genoa-no-vcek-source", "snp", with_chain(None), rd),
        Case("snp-genoa-wrong-report-data", "snp", genoa(), bytes([rd[0] ^ 1]) + rd[1:]),
        Case("snp-genoa-short-report-data", "snp", genoa(), rd[:32]),
        Case("snp-genoa-init-data-mismatch", "snp", genoa(), rd, init_data=INIT_DATA),
    ]
    vcek_flip = copy.deepcopy(vc)
    vcek_flip["data"][42] ^= 1
    cases.append(Case("snp-genoa-vcek-byte42", "snp", with_chain([vcek_flip]), rd))
    for path, index in [(("measurement",), 0), (("host_data",), 7), (("chip_id",), 63), (("policy",), None),
                        (("vmpl",), None), (("guest_svn",), None), (("reported_tcb", "snp"), None),
                        (("reported_tcb", "microcode"), None), (("family_id",), 0), (("image_id",), 15),
                        (("report_id",), 1), (("signature", "r"), 0), (("signature", "s"), 47)]:
        name = "-".join(path) + (f"{index}" if index is not None else "")
        cases.append(Case(f"snp-genoa-flip-{name}", "snp", genoa_flip(list(path), index), rd))
    # The Milan vectors, turned into Trustee evidence by upstream's own helper.
    for rid, rep, cert, ctype, diff in [
            ("snp-milan-v2-report", "test-report.bin", "test-vcek.der", "VCEK", None),
            ("snp-milan-vlek-vmpl1", "test-vlek-report.bin", "test-vlek.der", "VLEK", None)]:
        cases.append(Case(rid, "snp", ("make-snp-evidence", rep, cert, ctype), None, differs=diff))
    return cases


# --- az-snp-vtpm -------------------------------------------------------------------------------

AZ_V2_RD = bytes.fromhex("982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9a"
                         "a398f647caa2338748cd0fd9f5f819ef")


def b64_flip(s: str, i: int, urlsafe=False) -> str:
    dec = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    b = bytearray(dec(s + "=" * (-len(s) % 4)))
    b[i % len(b)] ^= 1
    out = enc(bytes(b)).decode()
    return out if "=" in s else out.rstrip("=")


def hex_flip(s: str, i: int) -> str:
    b = bytearray(bytes.fromhex(s))
    b[i % len(b)] ^= 1
    return b.hex()


def az_cases():
    v1, v2 = load("az-snp-vtpm/evidence-v1.json"), load("az-snp-vtpm/evidence-v2.json")
    cases = [Case("az-snp-vtpm-v1", "az-snp-vtpm", v1, b"challenge"),
             Case("az-snp-vtpm-v2", "az-snp-vtpm", v2, AZ_V2_RD),
             Case("az-snp-vtpm-v1-wrong-report-data", "az-snp-vtpm", v1, b"challengf"),
             Case("az-snp-vtpm-v2-user-data-123abc", "az-snp-vtpm", v2, bytes.fromhex("123abc")),
             Case("az-snp-vtpm-v1-init-data-mismatch", "az-snp-vtpm", v1, b"challenge", init_data=INIT_DATA)]
    for ver in (0, 2, 3):
        ev = copy.deepcopy(v1)
        ev["version"] = ver
        cases.append(Case(f"az-snp-vtpm-v1-labelled-v{ver}", "az-snp-vtpm", ev, b"challenge"))
    ev = copy.deepcopy(v1)
    del ev["version"]
    cases.append(Case("az-snp-vtpm-v1-no-version", "az-snp-vtpm", ev, b"challenge"))
    for name, ev0, rd in (("v1", v1, b"challenge"), ("v2", v2, AZ_V2_RD)):
        urlsafe = "-" in ev0["hcl_report"] or "_" in ev0["hcl_report"]
        for off in (0x01a6, 0x0540, 0x06e0, 0x0030, 0x02c8):  # TCB, AK, var-data, report body, signature r
            ev = copy.deepcopy(ev0)
            ev["hcl_report"] = b64_flip(ev["hcl_report"], off, urlsafe)
            cases.append(Case(f"az-snp-vtpm-{name}-flip-hcl-0x{off:04x}", "az-snp-vtpm", ev, rd))
        for k, off in (("signature", 0), ("message", 20)):
            ev = copy.deepcopy(ev0)
            q = ev["tpm_quote"]
            q[k] = hex_flip(q[k], off)
            cases.append(Case(f"az-snp-vtpm-{name}-flip-quote-{k}", "az-snp-vtpm", ev, rd))
        ev = copy.deepcopy(ev0)
        pcrs = ev["tpm_quote"]["pcrs"]
        if isinstance(pcrs[0], list):
            pcrs[0][0] ^= 1
        else:
            pcrs[0] = ("0" if pcrs[0][0] != "0" else "1") + pcrs[0][1:]
        cases.append(Case(f"az-snp-vtpm-{name}-flip-pcr0", "az-snp-vtpm", ev, rd))
        ev = copy.deepcopy(ev0)
        ev["vcek"] = b64_flip(ev["vcek"], -10, "-" in ev["vcek"] or "_" in ev["vcek"])  # in its signature
        cases.append(Case(f"az-snp-vtpm-{name}-flip-vcek", "az-snp-vtpm", ev, rd))
    # az-snp-vtpm evidence offered to the bare-metal verifier and the other way round.
    cases.append(Case("az-snp-vtpm-v1-as-snp", "snp", v1, b"challenge"))
    cases.append(Case("snp-genoa-as-az-snp-vtpm", "az-snp-vtpm", genoa(), genoa_rd()))
    return cases


# --- TPM ---------------------------------------------------------------------------------------

class SyntheticTpm:
    """Generic TPM evidence {ak_public, tpm_quote{signature, message, pcrs}} signed by an RSA AK
    made here: the nonce length and PCR8 are ours to choose."""

    def __init__(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.spki = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        self.pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def evidence(self, nonce: bytes, pcr8: bytes = None):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        pcrs = [hashlib.sha256(b"pcr" + bytes([i])).digest() for i in range(24)]
        if pcr8 is not None:
            pcrs[8] = pcr8
        select = struct.pack(">IHB", 1, 0x000B, 3) + b"\xff\xff\xff"
        attest = (struct.pack(">IH", 0xFF544347, 0x8018) + struct.pack(">H", 2) + b"\x00\x0b" +
                  struct.pack(">H", len(nonce)) + nonce + struct.pack(">QIIB", 1, 0, 0, 1) + struct.pack(">Q", 0) +
                  select + struct.pack(">H", 32) + hashlib.sha256(b"".join(pcrs)).digest())
        sig = self.key.sign(attest, padding.PKCS1v15(), hashes.SHA256())
        tsig = struct.pack(">HHH", 0x0014, 0x000B, len(sig)) + sig
        return {"ak_public": base64.b64encode(self.spki).decode(),
                "tpm_quote": {"signature": base64.b64encode(tsig).decode(),
                              "message": base64.b64encode(attest).decode(), "pcrs": [p.hex() for p in pcrs]}}


def quote_nonce(ev) -> bytes:
    m = base64.b64decode(ev["tpm_quote"]["message"])
    i = 6 + 2 + int.from_bytes(m[6:8], "big")
    n = int.from_bytes(m[i:i + 2], "big")
    return m[i + 2:i + 2 + n]


def tpm_cases(tpm: SyntheticTpm):
    rd = hashlib.sha384(b"parity runtime data").digest()
    vec = load("tpm/tpm_evidence.json")
    vec_rd = quote_nonce(vec)[:48]
    init_pcr8 = hashlib.sha256(bytes(32) + hashlib.sha256(INIT_DATA.encode()).digest()).digest()
    cases = [
        Case("tpm-vector-64-byte-nonce", "tpm", vec, vec_rd,
             differs=("ours-accepts", "TPM report data in the quote nonce")),
        Case("tpm-vector-wrong-report-data", "tpm", vec, bytes([vec_rd[0] ^ 1]) + vec_rd[1:]),
        Case("tpm-32-byte-nonce", "tpm", tpm.evidence(rd[:32]), rd),
        Case("tpm-32-byte-nonce-init-data", "tpm", tpm.evidence(rd[:32], init_pcr8), rd, init_data=INIT_DATA),
        Case("tpm-32-byte-nonce-init-data-mismatch", "tpm", tpm.evidence(rd[:32], init_pcr8), rd,
             init_data=OTHER_INIT_DATA),
        Case("tpm-32-byte-nonce-wrong-report-data", "tpm", tpm.evidence(rd[:32]), bytes([rd[0] ^ 1]) + rd[1:]),
        Case("tpm-32-byte-nonce-untrusted-ak", "tpm", tpm.evidence(rd[:32]), rd, trusted_ak=False,
             differs=("ours-refuses", "TPM attestation key trust")),
        Case("tpm-48-byte-nonce", "tpm", tpm.evidence(rd), rd),
        Case("tpm-64-byte-nonce", "tpm", tpm.evidence(rd + bytes(16)), rd,
             differs=("ours-accepts", "TPM report data in the quote nonce")),
    ]
    base = tpm.evidence(rd[:32])
    for k, off in (("signature", 10), ("message", 12), ("message", 40)):
        ev = copy.deepcopy(base)
        ev["tpm_quote"][k] = b64_flip(ev["tpm_quote"][k], off)
        cases.append(Case(f"tpm-flip-{k}-{off}", "tpm", ev, rd))
    ev = copy.deepcopy(base)
    ev["tpm_quote"]["pcrs"][5] = "ff" + ev["tpm_quote"]["pcrs"][5][2:]
    cases.append(Case("tpm-flip-pcr5", "tpm", ev, rd))
    ev = copy.deepcopy(base)
    ev["ak_public"] = b64_flip(ev["ak_public"], 100)
    cases.append(Case("tpm-flip-ak", "tpm", ev, rd, trusted_ak=True))
    cases.append(Case("tpm-as-az-snp-vtpm", "az-snp-vtpm", base, rd))
    return cases


# --- running both --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("parity")


def materialise(case: Case, d: Path, tpm: SyntheticTpm):
    """Writes the evidence (and the collateral each side needs); returns (evidence path, report data)."""
    d.mkdir(parents=True, exist_ok=True)
    ev_path = d / "evidence.json"
    rd = case.report_data
    if isinstance(case.evidence, tuple) and case.evidence[0] == "make-snp-evidence":
        _, rep, cert, ctype = case.evidence
        out = run([UP / "upstream-claims", "make-snp-evidence", "--report", need(VECTORS / "snp" / rep), "--cert",
                   need(VECTORS / "snp" / cert), "--cert-type", ctype])
        ev_path.write_text(out.stdout)
        rd = bytes(json.loads(out.stdout)["attestation_report"]["report_data"])
    else:
        ev_path.write_text(json.dumps(case.evidence))
    return ev_path, rd


def run_upstream(case, ev_path, rd, d: Path):
    cmd = [UP / "upstream-claims", "verify", "--tee", case.tee, "--evidence", ev_path, "--report-data", rd.hex()]
    if case.init_data is not None:
        cmd += ["--init-data-hash", hashlib.sha256(case.init_data.encode()).hexdigest()]
    if case.store:
        cfg = d / "upstream-verifier.json"
        cfg.write_text(json.dumps({"snp_verifier": {"vcek_sources": [{"type": "OfflineStore",
                                                                       "path": str(d / "store")}]}}))
        cmd += ["--verifier-config", cfg]
    out = run(cmd, check=False)
    if out.returncode == 0:
        j = json.loads(out.stdout)
        assert len(j["claims"]) == 1, j
        return True, j["claims"][0]
    return False, out.stderr.strip()


def run_ours(case, ev_path, rd, d: Path, tpm: SyntheticTpm):
    collateral = d / "collateral"
    collateral.mkdir(exist_ok=True)
    cmd = [BIN / "kbs", "verify", "--tee", case.tee, "--evidence", ev_path, "--report-data", rd.hex(),
           "--collateral", collateral]
    if case.store:
        cmd[-1] = d / "store"
    if case.tee == "tpm" and case.trusted_ak:
        ak = json.loads(ev_path.read_text()).get("ak_public")
        if ak:
            from cryptography.hazmat.primitives import serialization
            try:
                key = serialization.load_der_public_key(base64.b64decode(ak))
                (collateral / "ak.pub").write_bytes(key.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            except ValueError:
                pass  # a tampered AK that no longer parses: trust nothing
    if case.init_data is not None:
        (d / "initdata.toml").write_text(case.init_data)
        cmd += ["--init-data", d / "initdata.toml"]
    out = run(cmd, check=False)
    if out.returncode == 0:
        return True, json.loads(out.stdout)
    assert out.returncode == 1, f"kbs verify exited {out.returncode}: {out.stderr}"
    return False, out.stderr.strip()


def offline_store(d: Path):
    ev = genoa()
    rep = ev["attestation_report"]
    tcb = rep["reported_tcb"]
    name = f"bl{tcb['bootloader']:02d}_tee{tcb['tee']:02d}_snp{tcb['snp']:02d}_ucode{tcb['microcode']:02d}_vcek.der"
    hw = bytes(rep["chip_id"]).hex()
    p = d / "store" / "vcek" / hw
    p.mkdir(parents=True, exist_ok=True)
    (p / name).write_bytes(bytes(ev["cert_chain"][0]["data"]))


def all_cases():
    # Built lazily at collection; a missing vector turns into a skip/fail inside the test.
    try:
        tpm = _tpm_for_collection()
        return snp_cases() + az_cases() + tpm_cases(tpm)
    except BaseException as e:  # noqa: BLE001 (pytest's skip/fail outcomes, raised by need())
        _MISSING.append(str(e))
        return [None]


_MISSING = []


_TPM = []


def _tpm_for_collection():
    if not _TPM:
        _TPM.append(SyntheticTpm())
    return _TPM[0]


CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id if isinstance(c, Case) else "vectors" for c in CASES])
def test_parity(case, work):
    if case is None or not (VECTORS / "README.md").exists():
        msg = _MISSING[0] if _MISSING else f"shared vectors absent ({VECTORS})"
        pytest.fail(msg) if _ci() else pytest.skip(msg)
    d = work / case.id
    ev_path, rd = materialise(case, d, _TPM[0])
    if case.store:
        offline_store(d)
    up_ok, up = run_upstream(case, ev_path, rd, d)
    our_ok, ours = run_ours(case, ev_path, rd, d, _TPM[0])
    verdict = {True: "accept", False: "refuse"}
    if up_ok and our_ok:
        note = f"claims identical ({len(ours)} keys)" if ours == up else "CLAIMS DIFFER"
    elif up_ok != our_ok:
        note = f"documented: {case.differs[1]}" if case.differs else "UNDOCUMENTED DIFFERENCE"
    else:
        note = up
    PARITY.append((case.id, verdict[our_ok], verdict[up_ok], note))
    if up_ok and our_ok:
        assert ours == up, f"claims differ:\nours     {json.dumps(ours, sort_keys=True)}\nupstream " \
                           f"{json.dumps(up, sort_keys=True)}"
    elif up_ok != our_ok:
        direction = "ours-accepts" if our_ok else "ours-refuses"
        assert case.differs, (f"undocumented difference: ours {verdict[our_ok]}s, upstream {verdict[up_ok]}s\n"
                              f"ours: {ours}\nupstream: {up}")
        assert case.differs[0] == direction, f"documented as {case.differs[0]}, found {direction}"
        heading = f"### {case.differs[1]}"
        listed = heading in COMPAT_DOC.read_text()
        assert listed, f"docs/compatibility.md lacks '{heading}'"
    if case.differs and up_ok == our_ok:
        pytest.fail(f"documented difference '{case.differs[1]}' no longer happens (both {verdict[our_ok]})")


def test_our_tpm_attester_accepted_by_both(swtpm, work):
    """Evidence from our guest's TPM attester (`cdh --tee tpm`, on swtpm) with init-data bound to
    PCR8: upstream's verifier and ours both accept it, with identical claims."""
    d = work / "guest-tpm-attester"
    d.mkdir()
    (d / "initdata.toml").write_text(INIT_DATA)
    runtime = "r" * 48  # as long as the SHA-384 report data the KBS protocol binds
    out = run([BIN / "cdh", "--tee", "tpm", "--tpm-tcti", swtpm, "--initdata", d / "initdata.toml", "evidence",
               runtime])
    ev = json.loads(out.stdout)
    assert len(quote_nonce(ev)) == 32, "our attester binds the 32-byte form upstream expects"
    case = Case("guest-tpm-attester", "tpm", ev, runtime.encode(), init_data=INIT_DATA)
    ev_path, rd = materialise(case, d, None)
    up_ok, up = run_upstream(case, ev_path, rd, d)
    our_ok, ours = run_ours(case, ev_path, rd, d, None)
    PARITY.append((case.id, "accept" if our_ok else "refuse", "accept" if up_ok else "refuse",
                   f"claims identical ({len(ours)} keys)" if up_ok and our_ok and ours == up else ""))
    assert up_ok, up
    assert our_ok, ours
    assert ours == up
