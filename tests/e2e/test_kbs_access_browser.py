"""The kbs-access demo in a real browser: the pattern's secrets loaded into OpenBao with
`coco secrets load`, a KBS serving them from OpenBao (KV v2, the pattern's secret/hub/<name>
layout), a CDH configured only by the init-data `coco initdata render` made (sample attester), and
kbs-access on top; headless Chromium (Debian's chromium + chromedriver, driven by selenium) loads
the page, sees attestation succeeded and the secret masked, reveals it and reads exactly the value
OpenBao holds. The screenshot is kept under the build directory (test-artifacts/)."""
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, BUILD, bgcheck_config, run
from services import openbao  # noqa: F401 (fixture)
from test_cdh import admin

VALUES = """\
version: "2.0"
secrets:
  - name: kbsres1
    vaultPrefixes: [hub]
    fields:
      - name: key1
        onMissingValue: generate
      - name: key2
        onMissingValue: generate
      - name: key3
        onMissingValue: generate
"""


def browser_or_skip():
    missing = [p for p in ("chromium", "chromedriver") if not shutil.which(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("python3-selenium")
    if missing:
        msg = f"headless browser test needs {', '.join(missing)} (scripts/install-deps)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


class Proc:
    """A program that prints '<name>: listening on HOST:PORT' when ready."""

    def __init__(self, cmd, log: Path, name):
        self.log = log
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                m = re.match(rf"{name}: listening on [0-9.]+:(\d+)", self.proc.stdout.readline())
                if m:
                    self.port = int(m.group(1))
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()}")
        self.proc.kill()
        raise RuntimeError(f"{name} did not start: {log.read_text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        return self.proc.returncode


def chrome(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1000,800"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def wait_for(driver, element_id, attr, value, timeout=15):
    """The element once the page the browser navigated to shows attr == value (a form POST
    replaces the page: an element found too early belongs to the old one)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    last = None
    while True:
        try:
            el = driver.find_element(By.ID, element_id)
            last = el.get_attribute(attr)
            if last == value:
                return el
        except WebDriverException:  # stale, missing, or a node of the page being replaced
            pass
        if time.time() > deadline:
            raise AssertionError(f"#{element_id}[{attr}] is {last!r}, not {value!r}: {driver.page_source[:2000]}")
        time.sleep(0.05)


def test_kbs_access_page_in_headless_chromium(openbao, pki, start_kbs, tmp_path):  # noqa: F811
    browser_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Hub side: the pattern's secrets into OpenBao, a KBS that serves them from there.
    (tmp_path / "values-secret.yaml").write_text(VALUES)
    (tmp_path / "bao-token").write_text(openbao.token)
    run([BIN / "coco", "secrets", "load", tmp_path / "values-secret.yaml", "--vault-url", openbao.addr,
         "--vault-token-file", tmp_path / "bao-token"])
    key3 = openbao.api("GET", "secret/data/hub/kbsres1")[1]["data"]["data"]["key3"]
    vault = (f'storage_backend_type = "Vault"\nvault_url = "{openbao.addr}"\ntoken_file = "{tmp_path / "bao-token"}"\n'
             'kv_version = 2\nsecret_path = "hub/{type}"\nsecret_field = "{tag}"\n')
    kbs = start_kbs(bgcheck_config(pki, tmp_path / "storage", extra=vault))
    admin(kbs, pki, tmp_path, "set-resource-policy", "--allow-all")

    # The pod VM: init-data rendered for this KBS; the CDH takes its configuration from it.
    initdata = tmp_path / "initdata.toml"
    run([BIN / "coco", "initdata", "render", "--kbs-url", kbs.url(), "--kbs-cert", pki.tls_cert, "-o", initdata])
    # ttRPC sockets in the test's directory, not the init-data's upstream path another cdh may serve
    cdh = Proc([BIN / "cdh", "--initdata", initdata, "--tee", "sample", "--listen", "127.0.0.1:0",
                "--cdh-socket", tmp_path / "cdh.sock", "--aa-socket", tmp_path / "aa.sock"], tmp_path / "cdh.log", "cdh")
    access = Proc([BIN / "kbs-access", "--listen", "127.0.0.1:0", "--cdh-url", f"http://127.0.0.1:{cdh.port}",
                   "--resource", "default/kbsres1/key3", "--refresh", "300"], tmp_path / "kbs-access.log", "kbs-access")
    driver = None
    try:
        driver = chrome(tmp_path / "chromium-profile")
        driver.set_page_load_timeout(30)
        base = f"http://127.0.0.1:{access.port}"
        driver.get(base + "/healthz")
        assert driver.find_element(By.TAG_NAME, "body").text.strip() == "ok"
        deadline = time.time() + 30
        while True:
            driver.get(base + "/")
            status = driver.find_element(By.ID, "status")
            if status.get_attribute("data-attested") != "pending" or time.time() > deadline:
                break
            time.sleep(0.3)
        assert status.get_attribute("data-attested") == "yes", status.text
        assert "Attestation succeeded" in status.text
        secret = driver.find_element(By.ID, "secret")
        assert secret.get_attribute("data-revealed") == "no"
        assert key3 not in driver.page_source and set(secret.text) == {"*"}
        assert "24 bytes, masked." in driver.page_source
        driver.find_element(By.ID, "reveal").click()
        WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith("/reveal") and
                                        d.execute_script("return document.readyState") == "complete")
        secret = wait_for(driver, "secret", "data-revealed", "yes")
        assert secret.text == key3
        artifacts = BUILD / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = artifacts / "kbs-access.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        driver.find_element(By.ID, "hide").click()
        wait_for(driver, "secret", "data-revealed", "no")
    finally:
        if driver:
            driver.quit()
        assert access.stop() == 0, access.log.read_text()[-2000:]
        assert cdh.stop() == 0, cdh.log.read_text()[-2000:]
    # The secret never reaches a log.
    for log in (access.log, cdh.log, kbs.log):
        assert key3 not in log.read_text()


def test_kbs_access_says_why_when_not_attested(tmp_path):
    """No CDH listening: the page says the data hub cannot be reached, shows no secret, and
    /healthz stays up (liveness is not attestation)."""
    import json
    import socket
    import urllib.request

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    access = Proc([BIN / "kbs-access", "--listen", "127.0.0.1:0", "--cdh-url", f"http://127.0.0.1:{dead}"],
                  tmp_path / "kbs-access.log", "kbs-access")
    try:
        base = f"http://127.0.0.1:{access.port}"
        deadline = time.time() + 20
        while True:
            st = json.loads(urllib.request.urlopen(base + "/status", timeout=10).read())
            if st["fetches"] or time.time() > deadline:
                break
            time.sleep(0.2)
        assert st["attested"] is False and "cannot be reached" in st["detail"] and st["bytes"] == 0
        with urllib.request.urlopen(base + "/", timeout=10) as r:
            page = r.read().decode()
            assert r.headers["Cache-Control"] == "no-store" and "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert 'data-attested="no"' in page and 'id="secret"' not in page
        assert urllib.request.urlopen(base + "/healthz", timeout=10).read() == b"ok\n"
        req = urllib.request.Request(base + "/nope")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 404
    finally:
        assert access.stop() == 0
    r = run([BIN / "kbs-access", "--resource", "../etc/passwd"], check=False)
    assert r.returncode == 2 and "REPO/TYPE/TAG" in r.stderr
