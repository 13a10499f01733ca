"""A Python 3.13 virtualenv beside the main one (``.venv313``), for what only 3.13 has: the
standard library's ``test.test_concurrent_futures`` and Django 6's ``django.tasks``.

Made on first use from ``python3.13`` (on pyenv machines ``PYENV_VERSION=3.13.0``), with
conveyor installed editable and ``PACKAGES``; a stamp remembers what it was made from. Also
``make venv313``. A missing python3.13 skips locally and fails under CI=true.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv313"
PACKAGES = ("django>=6.0,<6.1",)


def interpreter_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYENV_VERSION", "3.13.0")
    return env


def _stamp() -> str:
    text = (ROOT / "pyproject.toml").read_bytes() + repr(PACKAGES).encode()
    return hashlib.sha256(text).hexdigest()


def ensure() -> Path:
    """The venv's python, made or refreshed when needed. Raises RuntimeError if it cannot be."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == _stamp():
        return python
    base = shutil.which("python3.13")
    if base is None:
        raise RuntimeError("python3.13 is not on PATH")
    VENV.parent.mkdir(exist_ok=True)
    with open(ROOT / ".venv313.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes never build it at once
        if stamp.exists() and stamp.read_text() == _stamp():
            return python
        env = interpreter_env()
        if not python.exists():
            subprocess.run([base, "-m", "venv", str(VENV)], check=True, env=env)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-e", str(ROOT), *PACKAGES], check=True, env=env)
        stamp.write_text(_stamp())
    return python


def python313() -> Path:
    """For tests: the venv's python; skips (locally) or fails (CI=true) without 3.13."""
    try:
        return ensure()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        reason = f"no Python 3.13 virtualenv: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


if __name__ == "__main__":
    print(ensure())
    sys.exit(0)
