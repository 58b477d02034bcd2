"""`kbs verify`: offline evidence checks that print the claims or exactly why evidence is refused."""
import json
import os
from pathlib import Path

import pytest

from conftest import BIN, run

VECTORS = Path(os.environ.get("CT_VECTORS_DIR", Path(__file__).resolve().parents[3] / "shared" / "vectors"))


@pytest.fixture
def az_v1():
    path = VECTORS / "az-snp-vtpm" / "evidence-v1.json"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"test vector {path} missing in CI")
        pytest.skip(f"test vector {path} not present")
    return path


def test_accepted_evidence_prints_claims(az_v1):
    out = run([BIN / "kbs", "verify", "--tee", "az-snp-vtpm", "--evidence", az_v1, "--report-data",
               b"challenge".hex()])
    claims = json.loads(out.stdout)
    assert claims["report_data"] == "6368616c6c656e6765"
    assert claims["tpm"]["pcr00"] == "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"


def test_refusal_names_the_check(az_v1):
    out = run([BIN / "kbs", "verify", "--tee", "az-snp-vtpm", "--evidence", az_v1, "--report-data",
               b"challengf".hex()], check=False)
    assert out.returncode != 0 and out.stdout == ""
    assert "nonce" in out.stderr and "expected 6368616c6c656e6766" in out.stderr


def test_bad_usage_exits_2():
    assert run([BIN / "kbs", "verify", "--tee", "snp"], check=False).returncode == 2
