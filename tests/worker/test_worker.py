"""The worker in this process, on every backend: what users see through the public API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import conveyor
from conveyor import State
from tests.worker.procs import wait_for


@pytest.fixture
def app(backend_url: str, namespace: str) -> Iterator[conveyor.App]:
    a = conveyor.App(backend_url, namespace=namespace)
    yield a
    a.close()


def test_delay_runs_the_task_and_result_returns_its_value(app: conveyor.App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with app.worker(concurrency=2):
        job = add.delay(2, 3)
        assert job.result(timeout=30) == 5
    info = job.info()
    assert info.state is State.SUCCEEDED
    assert (info.args, info.kwargs, info.attempts) == ((2, 3), {}, 1)
    assert info.task == add.name
    assert add.name.startswith(f"{__name__}.") and add.name.endswith("<locals>.add")
    assert info.started_at is not None and info.finished_at is not None
    assert info.started_at <= info.finished_at
    assert info.finished_at is not None and info.finished_at.tzinfo is UTC
    assert info.worker is not None  # which worker ran it stays on show


def test_a_flaky_task_succeeds_on_its_third_attempt(app: conveyor.App) -> None:
    @app.task(retries=3, retry_on=(ConnectionError,), retry_delay=0.05, retry_jitter=False)
    def flaky() -> int:
        ctx = conveyor.current_job()
        assert ctx is not None
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt} fails")
        return ctx.attempt

    with app.worker():
        job = flaky.delay()
        assert job.result(timeout=30) == 3
    assert job.info().attempts == 3


def test_an_exception_outside_retry_on_fails_at_once_with_its_traceback(app: conveyor.App) -> None:
    @app.task(retries=5, retry_on=(ConnectionError,))
    def broken() -> None:
        raise ValueError("bad input")

    with app.worker():
        job = broken.delay()
        with pytest.raises(conveyor.JobFailed) as failed:
            job.result(timeout=30)
    assert failed.value.error_type == "ValueError"
    assert failed.value.message == "bad input"
    assert failed.value.traceback is not None and "in broken" in failed.value.traceback
    assert job.info().attempts == 1
    assert job.state is State.FAILED


def test_retry_signal_uses_its_delay_and_counts_against_retries(app: conveyor.App) -> None:
    @app.task(retries=1)
    def again() -> None:
        raise conveyor.Retry(delay=0.01)

    with app.worker():
        job = again.delay()
        with pytest.raises(conveyor.JobFailed) as failed:
            job.result(timeout=30)
    assert failed.value.error_type == "Retry"
    assert job.info().attempts == 2


def test_priority_orders_jobs_across_all_queues_a_worker_serves(app: conveyor.App) -> None:
    order: list[str] = []

    @app.task(queue="a")
    def in_a(tag: str) -> None:
        order.append(tag)

    @app.task(queue="b")
    def in_b(tag: str) -> None:
        order.append(tag)

    in_a.apply_async(("a-low-1",), priority=1)
    in_b.apply_async(("b-high",), priority=50)
    in_a.apply_async(("a-low-2",), priority=1)
    in_b.apply_async(("b-low",), priority=1)
    last = in_a.apply_async(("a-top",), priority=90)
    with app.worker(queues=["a", "b"], concurrency=1):
        wait_for(lambda: len(order) == 5, what="five jobs")
    assert order == ["a-top", "b-high", "a-low-1", "a-low-2", "b-low"]
    assert last.state is State.SUCCEEDED


def test_a_countdown_job_is_scheduled_and_starts_on_time(app: conveyor.App) -> None:
    started: list[float] = []

    @app.task
    def later() -> None:
        started.append(time.time())

    with app.worker():
        enqueued = time.time()
        job = later.apply_async(countdown=1.0)
        assert job.state is State.SCHEDULED
        assert job.info().eta is not None
        job.result(timeout=30)
    assert started[0] >= enqueued + 1.0


def test_an_eta_in_the_past_runs_at_once(app: conveyor.App) -> None:
    @app.task
    def now() -> str:
        return "ran"

    with app.worker():
        job = now.apply_async(eta=datetime.now(UTC) - timedelta(seconds=5))
        assert job.result(timeout=30) == "ran"


def test_a_job_past_its_expiry_never_runs_and_becomes_expired(app: conveyor.App) -> None:
    ran: list[int] = []

    @app.task(expires=0.2)
    def stale() -> None:
        ran.append(1)

    job = stale.delay()
    time.sleep(0.4)
    with app.worker(), pytest.raises(conveyor.JobExpired):
        job.result(timeout=30)
    assert ran == []


def test_cancel_a_queued_job_and_it_never_runs(app: conveyor.App) -> None:
    @app.task
    def never() -> None:
        raise AssertionError("a cancelled job ran")

    job = never.apply_async(countdown=60)
    assert job.cancel() is True
    assert job.state is State.CANCELLED
    assert job.cancel() is False
    with pytest.raises(conveyor.JobCancelled):
        job.result(timeout=1)


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_cancel_a_running_job_stops_it_before_its_end(app: conveyor.App, pool: str) -> None:
    reached_end = threading.Event()
    started = threading.Event()

    @app.task
    def long_sync() -> None:
        started.set()
        for _ in range(1000):
            time.sleep(0.01)
        reached_end.set()

    @app.task
    async def long_async() -> None:
        started.set()
        await asyncio.sleep(10)
        reached_end.set()

    task = long_async if pool == "async" else long_sync
    with app.worker(pool=pool):
        job = task.delay()
        assert started.wait(30)
        assert job.cancel() is True
        with pytest.raises(conveyor.JobCancelled):
            job.result(timeout=30)
    assert not reached_end.is_set()


def test_async_tasks_run_in_the_thread_pool_and_sync_tasks_in_the_async_pool(
    app: conveyor.App,
) -> None:
    @app.task
    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        ctx = conveyor.current_job()
        assert ctx is not None
        return x * 2

    @app.task
    def triple(x: int) -> int:
        return x * 3

    for pool in ("thread", "async"):
        with app.worker(pool=pool):
            assert double.delay(4).result(timeout=30) == 8
            assert triple.delay(4).result(timeout=30) == 12


def test_no_pool_runs_more_jobs_at_once_than_its_concurrency_while_it_claims_ahead(
    app: conveyor.App,
) -> None:
    lock = threading.Lock()
    running, most = [0], [0]

    def enter() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])

    def leave() -> None:
        with lock:
            running[0] -= 1

    @app.task
    async def short_async() -> None:  # short runs: the worker claims ahead of its slots
        enter()
        await asyncio.sleep(0.001)
        leave()

    @app.task
    def short_sync() -> None:
        enter()
        time.sleep(0.001)
        leave()

    for pool, task in (("async", short_async), ("thread", short_sync), ("async", short_sync)):
        most[0] = 0
        jobs = app.enqueue_many([task.s() for _ in range(120)])
        with app.worker(pool=pool, concurrency=2):
            for job in jobs:
                job.result(timeout=30)
        assert most[0] <= 2, (pool, task.name, most[0])


def test_progress_is_visible_while_running_and_kept_after(app: conveyor.App) -> None:
    go = threading.Event()

    @app.task
    def steps() -> str:
        conveyor.progress(40, "Executing agents", step=3)
        go.wait(30)
        return "done"

    with app.worker():
        job = steps.delay()
        wait_for(lambda: job.progress is not None, what="progress")
        assert job.progress == conveyor.Progress(40.0, "Executing agents", {"step": 3})
        assert job.state is State.RUNNING
        go.set()
        assert job.result(timeout=30) == "done"


def test_soft_timeout_lets_the_task_clean_up_and_hard_timeout_fails_it(app: conveyor.App) -> None:
    @app.task(soft_timeout=0.2, timeout=10)
    def polite() -> str:
        try:
            while True:
                time.sleep(0.01)
        except conveyor.SoftTimeLimitExceeded:
            return "cleaned up"

    @app.task(timeout=0.3)
    def stuck() -> None:
        while True:
            time.sleep(0.01)

    with app.worker():
        assert polite.delay().result(timeout=30) == "cleaned up"
        with pytest.raises(conveyor.JobFailed) as failed:
            stuck.delay().result(timeout=30)
    assert failed.value.error_type == "TimeLimitExceeded"


def test_key_returns_the_first_job_and_unique_dedupes_while_active(app: conveyor.App) -> None:
    @app.task(unique=True)
    def report(n: int) -> int:
        return n

    first = report.apply_async((1,), key="order-42", countdown=30)
    assert report.apply_async((9,), key="order-42").id == first.id
    again = report.delay(1)
    assert again.id == first.id  # same arguments while the first is scheduled
    other = report.delay(2)
    assert other.id != first.id
    first.cancel()
    assert report.delay(1).id != first.id  # unique frees once the job is final


def test_retry_sends_a_failed_job_back_with_a_fresh_budget(app: conveyor.App) -> None:
    calls: list[int] = []

    @app.task
    def once_bad() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return "second time"

    with app.worker():
        job = once_bad.delay()
        with pytest.raises(conveyor.JobFailed):
            job.result(timeout=30)
        assert job.retry() is True
        assert job.result(timeout=30) == "second time"
    assert job.info().attempts == 2
    assert job.retry() is False


def test_finished_jobs_are_purged_after_their_result_ttl(app: conveyor.App) -> None:
    @app.task(result_ttl=0.5)
    def short_lived() -> int:
        return 1

    with app.worker():
        job = short_lived.delay()
        assert job.result(timeout=30) == 1
        wait_for(lambda: app.backend.get(job.id) is None, timeout=30, what="the purge")
    with pytest.raises(conveyor.JobNotFound):
        job.info()


def test_unserialisable_arguments_fail_at_the_call_site(app: conveyor.App) -> None:
    @app.task
    def takes(x: object) -> None: ...

    with pytest.raises(conveyor.SerializationError, match=r"args\[0\].*lock"):
        takes.delay(threading.Lock())
    assert app.backend.list_jobs() == []


def test_an_unserialisable_result_fails_the_job_clearly(app: conveyor.App) -> None:
    @app.task
    def gives() -> object:
        return threading.Lock()

    with app.worker(), pytest.raises(conveyor.JobFailed) as failed:
        gives.delay().result(timeout=30)
    assert failed.value.error_type == "SerializationError"


def test_enqueue_many_and_adelay_and_aresult(app: conveyor.App) -> None:
    @app.task
    def square(x: int) -> int:
        return x * x

    jobs = app.enqueue_many(square.s(i) for i in range(200))
    assert len({j.id for j in jobs}) == 200
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)

    async def via_asyncio() -> int:
        job = await square.adelay(7)
        result: int = await job.aresult(timeout=30)
        return result

    with app.worker(concurrency=4):
        assert [j.result(timeout=30) for j in jobs] == [i * i for i in range(200)]
        assert asyncio.run(via_asyncio()) == 49


def test_a_running_worker_is_registered_and_leaves_the_registry_on_stop(
    app: conveyor.App,
) -> None:
    worker = app.worker(concurrency=3, queues=["default", "mail"])
    worker.start()
    try:
        (seen,) = app.backend.list_workers()
        assert (seen.id, seen.concurrency, seen.queues) == (worker.id, 3, ["default", "mail"])
    finally:
        worker.stop()
    assert app.backend.list_workers() == []


def test_result_timeout_raises_timeout_error(app: conveyor.App) -> None:
    @app.task
    def nobody_runs_me() -> None: ...

    job = nobody_runs_me.delay()
    with pytest.raises(TimeoutError):
        job.result(timeout=0.2)


def test_jobs_claimed_ahead_go_back_to_the_queue_when_a_run_turns_slow(app: conveyor.App) -> None:
    @app.task
    def quick() -> None: ...

    @app.task
    def slow() -> None:
        for _ in range(150):
            time.sleep(0.01)

    busy = app.worker(concurrency=1)
    with busy:
        for job in app.enqueue_many(quick.s() for _ in range(300)):
            job.result(timeout=30)  # the worker now sees short runs and claims ahead
        long_job = slow.delay()
        marker = quick.delay()
        with app.worker(concurrency=1):  # an idle worker that can take the marker
            assert marker.result(timeout=30) is None
            assert long_job.state is State.RUNNING  # the marker did not wait for it
        long_job.result(timeout=30)
    assert marker.info().attempts == 1
