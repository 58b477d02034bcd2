"""The REST front end serves callers concurrently: behind a KBS that answers slowly (a proxy
that holds every server flight back), identical concurrent requests share one KBS fetch and
distinct ones run in parallel, so neither waits for the other's round trip."""
import http.client
import json
import os
import re
import ssl
import threading
import time

import pytest

from conftest import bgcheck_config
from slow_proxy import SlowProxy
from test_cdh import cdh_toml, set_policy, set_resource, start_cdh  # noqa: F401 (fixture)

DELAY = 0.4


def resource_reads(kbs, pki, path) -> int:
    ctx = ssl.create_default_context(cafile=str(pki.tls_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", kbs.port, context=ctx, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search(r'^kbs_resource_reads_total\{resource_path="%s"\} (\d+)$' % re.escape(path), text, re.M)
    return int(m.group(1)) if m else 0


def concurrent_get(cdh, paths):
    """GETs every path at once (a barrier releases all threads together); returns the results
    and the wall time of the whole batch."""
    results = [None] * len(paths)
    barrier = threading.Barrier(len(paths) + 1)

    def one(i, p):
        conn = http.client.HTTPConnection("127.0.0.1", cdh.port, timeout=60)
        conn.connect()
        barrier.wait()
        conn.request("GET", p)
        r = conn.getresponse()
        results[i] = (r.status, r.read())
        conn.close()

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join(120)
    return results, time.monotonic() - t0


@pytest.fixture
def slow_setup(pki, start_kbs, start_cdh, tmp_path):
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage"))
    secrets = {f"app/key/k{i}": os.urandom(16) for i in range(8)}
    for p, v in secrets.items():
        set_resource(kbs, pki, tmp_path, p, v)
    set_policy(kbs, pki, tmp_path)
    proxy = SlowProxy(kbs.port, DELAY)
    cdh = start_cdh(cdh_toml(proxy.url(), pki))
    # Warm up: attest once and keep a connection open.
    status, body = cdh.get("/cdh/resource/app/key/k0")
    assert status == 200 and body == secrets["app/key/k0"], body
    yield kbs, cdh, secrets
    proxy.stop()


def test_identical_requests_share_one_kbs_fetch(slow_setup, pki):
    kbs, cdh, secrets = slow_setup
    before = resource_reads(kbs, pki, "app/key/k1")
    results, elapsed = concurrent_get(cdh, ["/cdh/resource/app/key/k1"] * 32)
    assert all(r == (200, secrets["app/key/k1"]) for r in results), results[:2]
    # One KBS round trip (plus, at most, a new TLS connection), not 32 of them.
    assert resource_reads(kbs, pki, "app/key/k1") - before == 1
    print(f"identical: {elapsed:.2f}s")
    assert elapsed < 4 * DELAY, f"32 identical requests took {elapsed:.2f}s with a {DELAY}s KBS"
    info = json.loads(cdh.get("/info")[1])
    assert info["coalesced_requests"] >= 31 and info["attestations"] == 1, info


def test_distinct_requests_do_not_wait_for_each_other(slow_setup, pki):
    kbs, cdh, secrets = slow_setup
    paths = [f"app/key/k{i}" for i in range(1, 8)]
    results, elapsed = concurrent_get(cdh, ["/cdh/resource/" + p for p in paths])
    assert [r[1] for r in results] == [secrets[p] for p in paths]
    # Serialised, seven fetches would take at least 7 delays; in parallel each costs a new TLS
    # connection (one delay) and the fetch (one delay).
    print(f"distinct: {elapsed:.2f}s")
    assert elapsed < 5 * DELAY, f"7 distinct requests took {elapsed:.2f}s with a {DELAY}s KBS"
    # A request for /info is answered at once even while fetches are in flight.
    t = threading.Thread(target=concurrent_get, args=(cdh, ["/cdh/resource/app/key/k2"] * 4))
    t.start()
    time.sleep(DELAY / 4)
    t0 = time.monotonic()
    assert cdh.get("/info")[0] == 200
    assert time.monotonic() - t0 < DELAY / 2
    t.join()
