"""``python -m bench --quick`` runs and writes its JSON (no timing is checked: the benchmark
is its own command; this only keeps it from rotting)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_a_quick_run_of_conveyor_on_sqlite_exits_cleanly_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-results", "--out", str(out),
         "--dir", str(tmp_path), "--system", "conveyor/sqlite-normal"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [written] = out.glob("results-*.json")
    document = json.loads(written.read_text())
    assert "conveyor/sqlite-normal" in document["summary"]


def test_a_peer_that_is_not_installed_is_skipped_not_fatal(tmp_path: Path) -> None:
    from bench.__main__ import select

    targets = select(["conveyor/sqlite-normal", "celery", "dramatiq", "huey", "rq"], None)
    assert "conveyor/sqlite-normal" in [t.name for t in targets]


@pytest.mark.timeout(300)
def test_the_like_for_like_run_reports_overhead_against_the_yardstick() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.like", "--jobs", "300", "--reps", "1", "--no-results",
         "--target", "conveyor/sqlite-normal"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ThreadPoolExecutor(8)" in done.stdout
    assert "| conveyor/sqlite-normal" in done.stdout
    for body in ("no-op body", "one pipelined Redis round trip"):
        assert body in done.stdout


@pytest.mark.timeout(300)
def test_the_worker_rss_run_reports_the_worker_memory_after_each_body() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker_rss", "--jobs", "200", "--reps", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for body in ("noop", "roundtrip"):
        assert f"{body:9} worker RSS " in done.stdout


@pytest.mark.timeout(300)
def test_the_flower_bench_finds_every_conveyor_job_again_after_the_dashboard_restarts(
    fresh_redis_server: RedisServer, tmp_path: Path
) -> None:
    from bench.flower import measure_conveyor

    url = fresh_redis_server.url.rsplit("/", 1)[0] + "/1"
    result = measure_conveyor(url, 200, 5, tmp_path)
    assert result["listed"] == result["restart_listed"] == 200
    assert result["page"]["n"] >= 5 and result["api"]["n"] >= 5
    assert result["rss_before"] > 0 and result["restart_rss"] > 0


@pytest.mark.timeout(300)
def test_the_flower_bench_sees_flower_forget_its_tasks_on_a_restart_without_persistence(
    fresh_redis_server: RedisServer, tmp_path: Path
) -> None:
    if importlib.util.find_spec("flower") is None or importlib.util.find_spec("celery") is None:
        pytest.skip("Flower and Celery are not installed here; the bench's environment has them")
    from bench.flower import measure_flower

    result = measure_flower(fresh_redis_server.url, 200, 5, tmp_path)
    assert result["listed"] == result["persistent_listed"] == 200
    assert result["restart_listed"] == 0


def test_the_main_report_keeps_the_sections_other_benches_wrote() -> None:
    from bench import report

    current = (
        "# Benchmark results\n\nold table\n\n<!-- like-for-like: begin -->\n## Like\nrows\n"
        "<!-- like-for-like: end -->\n\n<!-- flower: begin -->\nflower rows\n<!-- flower: end -->\n"
    )
    kept = report.marked_sections(current)
    assert "old table" not in kept
    assert kept.count("begin -->") == 2 and "rows\n<!-- like-for-like: end -->" in kept
    assert "flower rows" in kept


@pytest.mark.timeout(120)
def test_the_store_cost_child_finishes_its_jobs_in_batches_between_the_handshakes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.store_cost", "--child", "4", "40"],
        cwd=ROOT,
        input="go\ngo\n",
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["ready", "done"]
