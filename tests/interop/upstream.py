"""The upstream Trustee binaries (../shared/upstream): where they are, and unpacking them.

`../shared/upstream` holds `kbs`, `kbs-client`, `trustee-attester` and `upstream-claims`
xz-compressed, with `SHA256SUMS` over the uncompressed files. They are unpacked into
`<build>/upstream` and every digest is checked there; an unpacked file whose digest already
matches is left alone, so repeated runs cost one hash per binary.

    python3 upstream.py unpack BUILD_DIR     # prints the directory, exit 0; 77 when absent
"""
import hashlib
import lzma
import os
import sys
from pathlib import Path

BINARIES = ("kbs", "kbs-client", "trustee-attester", "upstream-claims")
SKIP = 77


def source_dir() -> Path:
    env = os.environ.get("CT_UPSTREAM_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "upstream"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sums(src: Path) -> dict:
    sums = {}
    for line in (src / "SHA256SUMS").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0]
    return sums


def unpack(build: Path) -> Path:
    """Unpacks (or re-checks) every binary into build/upstream; raises on a digest mismatch."""
    src = source_dir()
    sums = _sums(src)
    out = build / "upstream"
    out.mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        want = sums.get(name)
        if not want:
            raise RuntimeError(f"{src}/SHA256SUMS has no digest for {name}")
        dst = out / name
        if dst.exists() and _sha256(dst) == want:
            continue
        tmp = out / f".{name}.{os.getpid()}"
        with lzma.open(src / f"{name}.xz") as fin, open(tmp, "wb") as fout:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                fout.write(chunk)
        got = _sha256(tmp)
        if got != want:
            tmp.unlink()
            raise RuntimeError(f"{name}: SHA-256 {got} does not match SHA256SUMS ({want})")
        tmp.chmod(0o755)
        os.replace(tmp, dst)
    return out


def available() -> bool:
    src = source_dir()
    return (src / "SHA256SUMS").exists() and all((src / f"{b}.xz").exists() for b in BINARIES)


def main(argv):
    if len(argv) != 3 or argv[1] != "unpack":
        print("usage: upstream.py unpack BUILD_DIR", file=sys.stderr)
        return 2
    if not available():
        print(f"upstream Trustee binaries not found in {source_dir()}", file=sys.stderr)
        return SKIP
    print(unpack(Path(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
