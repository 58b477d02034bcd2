"""ctest entry `interop`: unpacks the upstream Trustee binaries and runs tests/interop with pytest.

Without ../shared/upstream it tells ctest the suite was skipped (exit 77) and why; under CI
(env CI set) a missing upstream directory is a failure instead. Every case is listed (-v) so
the log shows exactly which flows were proven.
"""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import upstream  # noqa: E402


def main():
    if not upstream.available():
        msg = (f"interop: upstream Trustee binaries not found in {upstream.source_dir()} "
               "(kbs.xz, kbs-client.xz, trustee-attester.xz, upstream-claims.xz, SHA256SUMS)")
        if os.environ.get("CI"):
            print(msg + " -- required under CI", file=sys.stderr)
            return 1
        print(msg + " -- skipped")
        return upstream.SKIP
    build = Path(os.environ.get("CT_BUILD_DIR", HERE.parents[1] / "build"))
    try:
        out = upstream.unpack(build)
    except (OSError, RuntimeError) as e:
        print(f"interop: cannot unpack the upstream binaries: {e}", file=sys.stderr)
        return 1
    env = dict(os.environ, CT_UPSTREAM_BIN=str(out))
    args = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-rfEs", str(HERE)]
    rc = subprocess.call(args + sys.argv[1:], env=env)
    # pytest: 5 = nothing collected, which must not pass as success.
    return 1 if rc == 5 else rc


if __name__ == "__main__":
    sys.exit(main())
