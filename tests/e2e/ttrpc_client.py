"""Helpers for the ttRPC tests: the Go client built on containerd's ttrpc module
(tests/ttrpc-client, built once into the build directory and rebuilt only when its sources
change) and a raw-frame client for malformed input."""
import json
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD

SRC = Path(__file__).resolve().parents[1] / "ttrpc-client"
AA = "attestation_agent.AttestationAgentService"


def _go():
    for cand in (shutil.which("go"), "/usr/local/go/bin/go"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def build_client() -> Path:
    out = BUILD / "tests" / "ttrpc-call"
    sources = [SRC / n for n in ("main.go", "go.mod", "go.sum")]
    if out.exists() and out.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return out
    go = _go()
    if not go:
        if os.environ.get("CI"):
            pytest.fail("Go is not installed: the ttRPC interop client cannot be built (scripts/install-deps)")
        pytest.skip("Go is not installed: cannot build the containerd/ttrpc client")
    out.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([go, "build", "-buildvcs=false", "-o", str(out), "."], cwd=SRC, capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        msg = f"building the containerd/ttrpc client failed (modules not downloaded? scripts/install-test-tools): {r.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return out


class GoClient:
    def __init__(self, binary: Path):
        self.binary = binary

    def call(self, socket_path, service, method, req=None, timeout="60s", server_timeout=None):
        """Returns (code, body): code 0 and the response as a dict, or the status code and message.
        `server_timeout` (e.g. "800ms") is sent as the request's timeout_nano while the client itself
        waits up to `timeout`."""
        extra = ["-server-timeout", server_timeout] if server_timeout else []
        r = subprocess.run([str(self.binary), "-socket", str(socket_path), "-service", service, "-method", method,
                            "-json", json.dumps(req or {}), "-timeout", timeout, *extra], capture_output=True,
                           text=True, timeout=300)
        if r.returncode == 0:
            return 0, json.loads(r.stdout)
        if r.returncode == 3:
            st = json.loads(r.stdout)
            return st["code"], st["message"]
        raise AssertionError(f"ttrpc-call failed ({r.returncode}): {r.stderr}")


# --- raw frames ---------------------------------------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_bytes(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def request(service: str, method: str, payload: bytes = b"", timeout_nano=None) -> bytes:
    out = pb_bytes(1, service.encode()) + pb_bytes(2, method.encode()) + (pb_bytes(3, payload) if payload else b"")
    if timeout_nano is not None:  # int64 varint: negative values are ten bytes of two's complement
        out += varint(4 << 3) + varint(timeout_nano & 0xFFFFFFFFFFFFFFFF)
    return out


def frame(stream: int, data: bytes, typ: int = 1, flags: int = 0, length=None) -> bytes:
    return struct.pack(">IIBB", len(data) if length is None else length, stream, typ, flags) + data


def parse_fields(data: bytes) -> dict:
    """Length-delimited and varint fields of one message level: {num: value}."""
    i, out = 0, {}
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num], i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            out[num] = data[i:i + n]
            i += n
        else:
            raise ValueError(f"wire type {wire}")
    return out


def _read_varint(data, i):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


class RawConn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(20)
        self.s.connect(str(path))

    def send(self, b: bytes):
        self.s.sendall(b)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def response(self):
        """(stream, code, message, payload) of the next response frame, or None at EOF."""
        hdr = self.recv_exact(10)
        if hdr is None:
            return None
        length, stream, typ, flags = struct.unpack(">IIBB", hdr)
        assert typ == 2 and flags == 0, (typ, flags)
        body = self.recv_exact(length) if length else b""
        f = parse_fields(body)
        code, msg = 0, ""
        if 1 in f:
            st = parse_fields(f[1])
            code, msg = st.get(1, 0), st.get(2, b"").decode()
        return stream, code, msg, f.get(2, b"")

    def closed(self) -> bool:
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.s.close()
