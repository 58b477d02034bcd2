"""Under CI (CI set) everything a test needs is installed: a skip there is a failure.

The e2e, interop and attack suites share this rule; their conftest.py import the hook (or, where
the conftest has its own report hook, call fail_skip_under_ci from it).
"""
import os

import pytest


def fail_skip_under_ci(rep):
    if os.environ.get("CI") and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped under CI, where nothing a test needs may be missing: {rep.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_skip_under_ci(outcome.get_result())
