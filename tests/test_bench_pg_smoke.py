"""The PostgreSQL benchmarks run (no timing is checked: they are their own commands; this
only keeps them from rotting): conveyor's rows of ``bench.pg`` and a small ``bench.pg_table``.
The peers (Procrastinate, pgqueuer) live in the bench's own environment, not here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import postgres_bindir

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(*args: str) -> str:
    postgres_bindir()  # skips (or fails under CI=true) without PostgreSQL
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.timeout(300)
def test_a_quick_run_of_bench_pg_for_conveyor_prints_every_row() -> None:
    out = run("bench.pg", "--quick", "--system", "conveyor", "--concurrency", "4")
    for row in ("enqueue single", "enqueue bulk", "1 process", "2 processes", "pickup p50"):
        assert row in out, out


@pytest.mark.timeout(300)
def test_a_small_run_of_bench_pg_table_measures_both_settings() -> None:
    out = run("bench.pg_table", "--retained", "2000", "--churn", "2000", "--backlog", "1000")
    assert "bytes per finished job" in out
    assert "conveyor's settings" in out and "PostgreSQL defaults" in out


@pytest.mark.timeout(300)
def test_the_like_for_like_run_measures_conveyor_on_postgres_in_both_tables() -> None:
    out = run("bench.like", "--jobs", "300", "--reps", "1", "--no-results",
              "--target", "conveyor/postgres")  # fmt: skip
    assert "| conveyor/postgres" in out
    assert "1 process, 8 threads" in out and "2 processes × 16 threads" in out
    assert "Not like for like" in out
