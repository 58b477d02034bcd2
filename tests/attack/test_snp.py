"""SEV-SNP evidence attacks, on forged evidence from the TEST-ONLY signer (the KBS runs the real
SNP verification path: VEK chain, AMD extensions, P-384 report signature, report checks)."""
import base64
import hashlib

import pytest

import rcar
from conftest import SECRET, attest_body, report_data

INIT_DATA = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"aa.toml" = \'\'\'\n[token_configs]\n\'\'\'\n'


def attest(target, attack, expect_status=401, detail=None, init_data=None, tamper=None, **ev_opts):
    """/auth + /attest with forged SNP evidence; returns (session, key, response)."""
    key = rcar.TeeKey()
    s, nonce = target.snp_auth()
    ev = target.snp.evidence(report_data(nonce, key.jwk), **ev_opts)
    if tamper:
        tamper(ev)
    before = target.state()
    r = s.http.post(f"{target.url}/kbs/v0/attest", json=attest_body(nonce, key, ev, init_data=init_data))
    if expect_status == 401:
        attack.refused(r, 401, "AttestationError", detail)
        target.assert_not_attested(s)
        target.assert_unchanged(before)
    else:
        assert r.status_code == expect_status, r.text
    return s, key, r


def denied_by_policy(target, attack, s, why):
    """The token was issued (the evidence is genuine) but the appraisal keeps the secret locked."""
    before = target.state()
    r = s.resource("attack/secret/key")
    attack.refused(r, 401, "PolicyDeny", why)
    target.assert_unchanged(before)


def test_snp_debug_enabled(target, attack):
    """A guest launched with the debug policy bit (its memory is readable by the host)."""
    attack.expect("token issued with configuration=36 (warning); resource GET 401 PolicyDeny")
    s, _, r = attest(target, attack, expect_status=200, policy=hex(0x30000 | 1 << 19))
    denied_by_policy(target, attack, s, "ear.status=warning")


def test_snp_migration_agent_allowed(target, attack):
    """A guest whose policy allows a migration agent (its memory can leave the machine)."""
    attack.expect("token issued with configuration=36 (warning); resource GET 401 PolicyDeny")
    s, _, r = attest(target, attack, expect_status=200, policy=hex(0x30000 | 1 << 18))
    denied_by_policy(target, attack, s, "ear.status=warning")


def test_snp_vmpl_not_zero(target, attack):
    """A report requested from VMPL 1 (not the guest kernel's privilege level)."""
    attack.expect("401 AttestationError: VMPL check failed: expected 0, found 1")
    attest(target, attack, detail="VMPL check failed", vmpl=1)


def test_snp_tcb_below_policy(target, attack):
    """A genuine VCEK for an older, vulnerable TCB (bootloader SPL 3 < the reference 4)."""
    attack.expect("token issued with hardware=97 (contraindicated); resource GET 401 PolicyDeny")
    s, _, r = attest(target, attack, expect_status=200, vek="lowtcb")
    denied_by_policy(target, attack, s, "hardware=97")


def test_snp_reported_tcb_above_vcek(target, attack):
    """A report claiming a newer TCB than its VCEK certifies (TCB rollback disguised)."""
    attack.expect("401 AttestationError: Boot loader version mismatch")
    attest(target, attack, detail="version mismatch", vek="lowtcb", tcb="4,0,22,213")


def test_snp_measurement_not_reference(target, attack):
    """A genuine report of an unknown launch measurement (another guest image)."""
    attack.expect("token issued with executables=33; resource GET 401 PolicyDeny")
    s, _, r = attest(target, attack, expect_status=200, measurement="ee" * 48)
    denied_by_policy(target, attack, s, "executables=33")


def test_snp_report_tampered(target, attack):
    """One bit of the signed report flipped after signing (the measurement)."""
    attack.expect("401 AttestationError: signature does not verify with the VCEK")
    attest(target, attack, detail="does not verify", flip_byte=0x90)


def test_snp_signature_stripped(target, attack):
    """The report's signature zeroed."""
    attack.expect("401 AttestationError: signature does not verify")

    def zero(ev):
        ev["attestation_report"]["signature"]["r"] = [0] * 72
        ev["attestation_report"]["signature"]["s"] = [0] * 72
    attest(target, attack, detail="signature", tamper=zero)


def test_snp_untrusted_root(target, attack):
    """A VCEK from an attacker's own ARK/ASK (same names, different keys)."""
    attack.expect("401 AttestationError: certificate does not chain to the ARK")
    attest(target, attack, detail="does not chain", evil=True)


def test_snp_attacker_ark_in_chain(target, attack):
    """The evidence's cert_chain carries the attacker's ARK and ASK next to the attacker's VCEK."""
    attack.expect("401 AttestationError: the ARK it carries is not the pinned ARK")
    snp = target.snp

    def add(ev):
        for t in ("ASK", "ARK"):
            ev["cert_chain"].append({"cert_type": t, "data": list(snp.der(t, evil=True))})
    attest(target, attack, detail="not AMD's pinned", evil=True, tamper=add)


def test_snp_chip_id_mismatch(target, attack):
    """A report from another chip presented with this chip's VCEK."""
    attack.expect("401 AttestationError: chip ID mismatch")
    attest(target, attack, detail="chip ID mismatch", chip_id="ab" * 64)


def test_snp_vlek_as_vcek(target, attack):
    """A VLEK labelled as a VCEK in the cert_chain (key-type confusion)."""
    attack.expect("401 AttestationError: certificate given as VCEK is signed by the ASVK")

    def relabel(ev):
        ev["cert_chain"][0]["cert_type"] = "VCEK"
    attest(target, attack, detail="given as VCEK", vek="vlek0", tamper=relabel)


def test_snp_no_vcek_anywhere(target, attack):
    """No cert_chain and a VCEK in no configured source."""
    attack.expect("401 AttestationError: no VCEK ... not in the evidence or the offline store")
    attest(target, attack, detail="no VCEK", chain=False)


def test_snp_wrong_init_data(target, attack):
    """init-data whose digest is not the report's HOST_DATA (a swapped agent policy)."""
    attack.expect("401 AttestationError: HOST_DATA (init-data digest) mismatch")
    other = INIT_DATA.replace("[token_configs]", "[token_configs.evil]")
    host = hashlib.sha256(other.encode()).hexdigest()
    attest(target, attack, detail="HOST_DATA", init_data=INIT_DATA, host_data=host)


def test_snp_init_data_dropped(target, attack):
    """A report bound to init-data, presented without it: the policy never sees it."""
    attack.expect("init_data claims absent; the appraisal does not cover the policy")
    host = hashlib.sha256(INIT_DATA.encode()).hexdigest()
    s, _, r = attest(target, attack, expect_status=200, host_data=host)
    # Without the document nothing can be checked against HOST_DATA; the token must say so.
    claims = rcar_claims(r.json()["token"])
    annotated = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert "init_data_claims" not in annotated or not annotated["init_data_claims"], annotated
    attack.observed("token without init_data_claims")


def test_snp_right_init_data(target, attack):
    """Control: the same report with its init-data document is accepted and carries its claims."""
    attack.expect("200; token carries init_data_claims")
    host = hashlib.sha256(INIT_DATA.encode()).hexdigest()
    s, key, r = attest(target, attack, expect_status=200, init_data=INIT_DATA, host_data=host)
    annotated = rcar_claims(r.json()["token"])["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert "init_data_claims" in annotated, annotated
    assert target.get_secret(s, key) == SECRET
    attack.observed("200, init_data_claims present, secret released")


@pytest.mark.parametrize("version", [1, 6])
def test_snp_report_version(target, attack, version):
    """A report version outside 2-5."""
    attack.expect("401 AttestationError: version is not supported")

    def setv(ev):
        ev["attestation_report"]["version"] = version
    attest(target, attack, detail="version", tamper=setv)


def test_snp_report_wrong_size_base64(target, attack):
    """The base64 report form, truncated."""
    attack.expect("401 AttestationError: size is ... expected 1184")

    def trunc(ev):
        ev["attestation_report"] = base64.b64encode(b"\x03" + b"\0" * 1000).decode()
    attest(target, attack, detail="1184", tamper=trunc)


def test_snp_huge_cert_chain(target, attack):
    """A cert_chain of 200 entries (parser amplification)."""
    attack.expect("401 AttestationError: cert_chain must be null or an array of at most 8 entries")

    def grow(ev):
        ev["cert_chain"] = ev["cert_chain"] * 200
    attest(target, attack, detail="at most", tamper=grow)


def rcar_claims(token):
    p = token.split(".")[1]
    import json
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))



def test_test_only_roots_are_guarded(pki, snp, target, tmp_path, attack):
    """The TEST-ONLY root switch cannot quietly trust another PKI: a roots file whose ARK does not
    say TEST-ONLY stops the KBS at start-up, and the switch is logged loudly when used."""
    attack.expect("exit 2 naming insecure_test_only_roots; ERROR log line on every start with it")
    import subprocess
    import conftest
    d = tmp_path / "fake-amd"
    d.mkdir()
    pem = b""
    for cn in ("SEV-Milan", "ARK-Milan", "SEV-VLEK-Milan"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes",
                        "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem"), "-days", "2", "-subj",
                        f"/O=Advanced Micro Devices/CN={cn}"], check=True, capture_output=True)
        pem += (d / "c.pem").read_bytes()
    (d / "roots.pem").write_bytes(pem)
    cfg = conftest.kbs_config(pki, snp, tmp_path / "storage").replace(str(snp.roots_pem), str(d / "roots.pem"))
    (tmp_path / "kbs.toml").write_text(cfg)
    out = subprocess.run([str(conftest.BIN / "kbs"), "-c", str(tmp_path / "kbs.toml")], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2, (out.returncode, out.stderr[-500:])
    assert "insecure_test_only_roots" in out.stderr and "TEST-ONLY" in out.stderr, out.stderr[-500:]
    log = target.kbs.log.read_text()
    assert "INSECURE TEST-ONLY CONFIGURATION" in log
    attack.observed(f"exit {out.returncode}: {out.stderr.strip().splitlines()[-1][:200]}")
