"""app.executor(): a concurrent.futures.Executor whose submissions are durable jobs.

The standard library's own suite runs in test_stdlib_suite.py; these check what it cannot:
jobs, pickling whatever the serializer, run_here=False, interpreter exit, and a submitter
killed with -9 whose work ``conveyor worker`` processes finish."""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import conveyor
from conveyor import State
from conveyor.executor import EXECUTOR_QUEUE, RemoteTraceback
from tests.executor.work import Greeter, fail
from tests.worker.procs import ROOT, wait_for


@pytest.fixture
def app(tmp_path: Path) -> Iterator[conveyor.App]:
    app = conveyor.App(f"sqlite:///{tmp_path}/jobs.db")
    yield app
    app.close()


def test_submit_returns_a_real_future_whose_job_succeeded(app: conveyor.App) -> None:
    with app.executor(max_workers=2) as ex:
        future = ex.submit(pow, 2, 10)
        assert type(future) is cf.Future
        assert future.result(timeout=30) == 1024
    assert future.job.state is State.SUCCEEDED
    assert future.job.info().queue == EXECUTOR_QUEUE


def test_values_and_callables_travel_pickled_whatever_the_serializer(app: conveyor.App) -> None:
    assert app.serializer.name == "json"
    when = datetime(2030, 1, 2, tzinfo=UTC)
    with app.executor(max_workers=2) as ex:
        assert ex.submit(frozenset, {1, 2}).result(30) == frozenset({1, 2})
        assert ex.submit(Greeter("Hello").greet, "Ada").result(30) == "Hello, Ada"
        assert ex.submit(when.replace, year=2031).result(30) == when.replace(year=2031)


def test_an_exception_is_the_original_and_the_job_failed(app: conveyor.App) -> None:
    with app.executor(max_workers=1) as ex:
        future = ex.submit(fail, "nope")
        with pytest.raises(KeyError, match="nope") as raised:
            future.result(timeout=30)
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "in fail" in str(raised.value.__cause__)
    info = future.job.info()
    assert info.state is State.FAILED
    assert info.error is not None and info.error.type == "KeyError"


def test_an_unpicklable_call_fails_at_the_call_site(app: conveyor.App) -> None:
    with app.executor(max_workers=1) as ex, pytest.raises((AttributeError, pickle_error())):
        ex.submit(lambda: 1)


def pickle_error() -> type[Exception]:
    return pickle.PicklingError


def test_map_with_chunks_keeps_order_in_fewer_jobs(app: conveyor.App) -> None:
    with app.executor(max_workers=2) as ex:
        assert list(ex.map(abs, range(-7, 7), chunksize=4)) == [abs(i) for i in range(-7, 7)]
    assert len(app.backend.list_jobs(queue=EXECUTOR_QUEUE)) == 4


def test_bad_max_workers_and_late_submit_have_the_standard_messages(app: conveyor.App) -> None:
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        app.executor(max_workers=0)
    ex = app.executor(max_workers=1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(pow, 2, 2)


def test_a_failing_initializer_breaks_the_executor(app: conveyor.App) -> None:
    ex = app.executor(max_workers=1, initializer=fail, initargs=("init",))
    future = ex.submit(pow, 2, 2)
    with pytest.raises(cf.BrokenExecutor):
        future.result(timeout=30)
    with pytest.raises(cf.BrokenExecutor):
        ex.submit(pow, 2, 2)
    ex.shutdown()
    assert future.job.state is State.CANCELLED  # the job does not run behind a failed future


def test_run_here_false_only_submits_and_any_worker_settles_the_futures(
    app: conveyor.App,
) -> None:
    ex = app.executor(run_here=False)
    future = ex.submit(pow, 3, 3)
    assert future.job.state is State.QUEUED and not future.done()
    with app.worker(concurrency=1):
        assert future.result(timeout=30) == 27
    ex.shutdown()


def test_cancelling_a_waiting_future_cancels_its_job(app: conveyor.App) -> None:
    ex = app.executor(run_here=False)
    future = ex.submit(pow, 3, 3)
    assert future.cancel()
    wait_for(lambda: future.job.state is State.CANCELLED, what="the job cancelled")
    ex.shutdown()


def test_shutdown_cancel_futures_cancels_what_has_not_started(app: conveyor.App) -> None:
    import time

    ex = app.executor(max_workers=1)
    first = ex.submit(time.sleep, 1.0)
    wait_for(lambda: first.job.state is State.RUNNING, what="the first job to start")
    rest = [ex.submit(pow, 2, n) for n in range(10)]
    ex.shutdown(cancel_futures=True)
    assert first.result() is None and not first.cancelled()
    assert all(f.cancelled() for f in rest)
    for f in rest:
        wait_for(lambda f=f: f.job.state is State.CANCELLED, what="the waiting jobs cancelled")


def test_a_job_cancelled_elsewhere_cancels_its_future(app: conveyor.App) -> None:
    ex = app.executor(run_here=False)
    future = ex.submit(pow, 3, 3)
    assert app.job(future.job.id).cancel()
    wait_for(future.cancelled, what="the future cancelled")
    ex.shutdown()


def _python(code: str, url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONVEYOR_URL=url, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_interpreter_exit_finishes_the_work_run_here(tmp_path: Path) -> None:
    """The standard library's test_interpreter_shutdown, for app.executor."""
    done = _python(
        "from tests.executor.work import app, square_slowly\n"
        f"app.executor(5).submit(square_slowly, 7, {str(tmp_path)!r})\n",
        f"sqlite:///{tmp_path}/jobs.db",
    )
    assert done.returncode == 0, done.stderr
    assert not done.stderr
    assert len(list(tmp_path.glob("7-*"))) == 1


@pytest.mark.slow
def test_submit_after_interpreter_shutdown_is_a_runtime_error(tmp_path: Path) -> None:
    done = _python(
        "import atexit\n"
        "from tests.executor.work import app\n"
        "@atexit.register\n"
        "def last():\n"
        "    try:\n"
        "        ex.submit(id, None)\n"
        "    except RuntimeError as e:\n"
        "        print(e)\n"
        "ex = app.executor(5)\n"
        "ex.submit(id, 42).result()\n",
        f"sqlite:///{tmp_path}/jobs.db",
    )
    assert done.stdout.strip() == "cannot schedule new futures after interpreter shutdown"


@pytest.mark.slow
def test_work_of_a_submitter_killed_with_sigkill_is_finished_by_conveyor_workers(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    env = dict(os.environ, CONVEYOR_URL=url, PYTHONPATH=str(ROOT))
    count = 6
    submitter = subprocess.Popen(
        [sys.executable, "-m", "tests.executor.submitter", str(count), str(tmp_path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    workers: list[subprocess.Popen[bytes]] = []
    app = conveyor.App(url)
    try:
        assert submitter.stdout is not None
        ids = [submitter.stdout.readline().strip() for _ in range(count)]
        wait_for(
            lambda: any(app.job(i).state is State.RUNNING for i in ids),
            what="the submitter's embedded worker running a call",
        )
        submitter.send_signal(signal.SIGKILL)
        submitter.wait(30)
        assert not all(app.job(i).state is State.SUCCEEDED for i in ids)
        cli = [sys.executable, "-m", "conveyor", "-A", "tests.executor.work:app", "worker"]
        for _ in range(2):
            workers.append(
                subprocess.Popen([*cli, "-c", "2"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
            )
        results = [pickle.loads(app.job(i).result(timeout=90)) for i in ids]  # as pickled
        assert results == [i * i for i in range(count)]
        for i in range(count):  # every call ran to its end at least once
            assert list(tmp_path.glob(f"{i}-*"))
    finally:
        if submitter.poll() is None:
            submitter.kill()
            submitter.wait(10)
        if submitter.stdout is not None:
            submitter.stdout.close()
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)
        app.close()


def test_attach_gives_a_future_for_a_job_submitted_before(app: conveyor.App) -> None:
    first = app.executor(run_here=False)
    job_id = first.submit(pow, 2, 5).job.id
    first.shutdown(wait=False)
    with app.executor(max_workers=1) as ex:  # a later process, say, after a restart
        assert ex.attach(job_id).result(timeout=30) == 32
        with pytest.raises(conveyor.JobNotFound):
            ex.attach("unknown")


def test_the_executor_works_on_every_backend(backend_url: str, namespace: str) -> None:
    app = conveyor.App(backend_url, namespace=namespace)
    try:
        with app.executor(max_workers=2) as ex:
            assert list(ex.map(pow, [2, 3], [5, 2])) == [32, 9]
            done, _ = cf.wait([ex.submit(divmod, 7, 2), ex.submit(fail, "x")], timeout=30)
            assert len(done) == 2
    finally:
        app.close()
