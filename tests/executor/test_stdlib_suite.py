"""The bar of API.md's Executor section: CPython 3.13's own test.test_concurrent_futures
classes, built over app.executor by their executor mixin (stdlib_suite.py), pass."""

from __future__ import annotations

import subprocess

import pytest

from tests.py313 import ROOT, interpreter_env, python313


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cpython_concurrent_futures_suite_passes_on_app_executor() -> None:
    python = python313()
    done = subprocess.run(
        [str(python), "-m", "unittest", "-v", "tests.executor.stdlib_suite"],
        cwd=ROOT,
        env=interpreter_env(),
        capture_output=True,
        text=True,
        timeout=540,
    )
    report = done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "Ran " in report and "OK" in report.splitlines()[-1]
    ran = int(report.split("Ran ")[1].split()[0])
    assert ran >= 30  # every adapted class was collected
