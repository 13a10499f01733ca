"""``make dist``: an sdist and a wheel that ``twine check`` passes, and a wheel that installs
the ``conveyor`` command (what the README's install lines rely on)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_make_dist_builds_an_sdist_and_a_wheel_that_twine_check_passes(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv_bin = Path(sys.executable).parent
    done = subprocess.run(
        ["make", "--no-print-directory", "dist", f"DIST={tmp_path}/dist",
         f"VENV={venv_bin.parent}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    built = sorted(p.name for p in (tmp_path / "dist").iterdir())
    assert [n.split("-", 1)[0] for n in built] == ["conveyor", "conveyor"], built
    assert built[0].endswith(".whl") and built[1].endswith(".tar.gz")
    assert done.stdout.count("PASSED") == 2, done.stdout
    wheel = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(tmp_path / "dist" / built[0])],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for inside in ("conveyor/backends/sqlite/queries.sql", "conveyor/py.typed", "entry_points"):
        assert inside in wheel.stdout


def test_pip_install_from_the_checkout_gives_a_working_conveyor(tmp_path: Path) -> None:
    """The README's first install line, ``pip install .``, minus the dependencies (this
    environment has them): conveyor then runs from the installed copy, not the checkout."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    code = "import conveyor, sys; print(conveyor.__file__); sys.argv[1:] = ['--version']; "
    code += "from conveyor.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    installed, version = done.stdout.splitlines()
    assert installed.startswith(str(target)) and version.startswith("conveyor, version ")
