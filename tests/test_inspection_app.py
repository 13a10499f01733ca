"""The Python inspection API of API.md ("Looking around from Python") on every backend."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

import conveyor
from conveyor.inspection import InspectionApp


@pytest.fixture
def app(backend_url: str, namespace: str) -> Iterator[conveyor.App]:
    a = conveyor.App(backend_url, namespace=namespace)

    @a.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @a.task(name="t.other", queue="other")
    def other() -> None:
        return None

    @a.periodic(cron="*/5 * * * *", name="t.cron")
    def every_five() -> None:
        return None

    @a.periodic(every=timedelta(hours=1), name="t.hourly")
    def hourly() -> None:
        return None

    try:
        yield a
    finally:
        a.close()


def test_the_app_is_what_the_web_layer_is_typed_against(app: conveyor.App) -> None:
    face: InspectionApp = app  # mypy checks the Protocol; this checks the names exist
    assert callable(face.jobs) and callable(face.aread_events)


def test_jobs_pages_newest_first_with_a_cursor(app: conveyor.App) -> None:
    jobs = app.enqueue_many(conveyor.Signature("t.add", (i, i)) for i in range(5))
    first = app.jobs(limit=2)
    assert [i.id for i in first.items] == [jobs[4].id, jobs[3].id]
    assert first.items[0].args == (4, 4) and first.items[0].state is conveyor.State.QUEUED
    app.enqueue_many(conveyor.Signature("t.add", (9, 9)) for _ in range(3))
    second = app.jobs(limit=2, cursor=first.next_cursor)
    assert [i.id for i in second.items] == [jobs[2].id, jobs[1].id]
    last = app.jobs(limit=2, cursor=second.next_cursor)
    assert [i.id for i in last.items] == [jobs[0].id]
    assert last.next_cursor is None
    exact = app.jobs(limit=8)
    assert len(exact.items) == 8 and exact.next_cursor is None


def test_jobs_filters_by_state_task_and_queue(app: conveyor.App) -> None:
    a = app.enqueue_many([conveyor.Signature("t.add", (1, 2))])[0]
    o = app.enqueue_many([conveyor.Signature("t.other", ())])[0]
    assert [i.id for i in app.jobs(task="t.other").items] == [o.id]
    assert [i.id for i in app.jobs(queue="default").items] == [a.id]
    assert [i.id for i in app.jobs(state="queued", task="t.add").items] == [a.id]
    assert app.jobs(state=conveyor.State.FAILED).items == []


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"state": "stuck"}, "state"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"cursor": "no such thing!"}, "cursor"),
        ({"cursor": ""}, "cursor"),
    ],
)
def test_jobs_refuses_bad_arguments_with_a_clear_error(
    app: conveyor.App, kwargs: dict[str, object], word: str
) -> None:
    with pytest.raises(conveyor.InvalidArgument, match=word):
        app.jobs(**kwargs)  # type: ignore[arg-type]
    assert issubclass(conveyor.InvalidArgument, ValueError)


def test_queues_workers_and_purge(app: conveyor.App) -> None:
    app.enqueue_many(conveyor.Signature("t.add", (i, i)) for i in range(3))
    app.enqueue_many([conveyor.Signature("t.other", ())])
    assert app.queues() == {
        "default": {conveyor.State.QUEUED: 3},
        "other": {conveyor.State.QUEUED: 1},
    }
    assert app.purge("default") == 3
    assert app.queues() == {"other": {conveyor.State.QUEUED: 1}}
    assert app.workers() == []


def test_workers_show_what_runs_and_stats_count_them(app: conveyor.App) -> None:
    release = threading.Event()

    @app.task(name="t.block")
    def block() -> None:
        release.wait(10)

    job = block.delay()
    with app.worker(concurrency=2, schedule=False, lease_seconds=2.0):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = app.workers()
            if found and job.id in found[0].running:
                break
            time.sleep(0.05)
        [info] = app.workers()
        assert isinstance(info, conveyor.WorkerInfo)
        assert info.running == [job.id] and info.concurrency == 2
        stats = app.stats()
        assert (stats.workers, stats.slots, stats.busy_slots) == (1, 2, 1)
        release.set()
        job.result(timeout=10)
    stats = app.stats()
    assert stats.tasks["t.block"].succeeded == 1
    assert stats.tasks["t.block"].runtime_count == 1


def test_schedules_show_cron_every_next_and_last_run(app: conveyor.App) -> None:
    by_task = {s.task: s for s in app.schedules()}
    assert by_task["t.cron"].cron == "*/5 * * * *" and by_task["t.cron"].every is None
    assert by_task["t.hourly"].every == 3600.0 and by_task["t.hourly"].cron is None
    assert by_task["t.cron"].next_run is not None and by_task["t.cron"].last_run is None
    [spec] = [p for p in app.registry.periodic if p.task_name == "t.hourly"]
    now = time.time()
    due = now - 60
    app.backend.record_due(
        "t.hourly", due, app.periodic_record(spec, due), skip_if_active=False, now=now
    )
    hourly = {s.task: s for s in app.schedules()}["t.hourly"]
    assert hourly.last_run is not None and abs(hourly.last_run.timestamp() - now) < 1
    assert hourly.last_job_id == app.jobs(task="t.hourly").items[0].id


def test_stats_report_depth_and_the_age_of_the_oldest_waiting_job(app: conveyor.App) -> None:
    app.enqueue_many(conveyor.Signature("t.add", (i, i)) for i in range(2))
    time.sleep(0.05)
    stats = app.stats()
    default = stats.queues["default"]
    assert default.depth == 2 and default.counts == {conveyor.State.QUEUED: 2}
    assert default.oldest_waiting_seconds is not None
    assert 0.04 < default.oldest_waiting_seconds < 60


def test_events_follow_a_job_until_it_is_final(app: conveyor.App) -> None:
    @app.task(name="t.steps")
    def steps() -> str:
        conveyor.progress(50, "half")
        return "done"

    job = steps.delay()
    seen: list[conveyor.Event] = []

    def follow() -> None:
        seen.extend(app.events(job_id=job.id, after=0))

    reader = threading.Thread(target=follow)
    reader.start()
    with app.worker(concurrency=1, schedule=False):
        job.result(timeout=10)
        reader.join(10)
    assert not reader.is_alive()
    assert [e.state.value for e in seen] == ["queued", "running", "running", "succeeded"]
    assert seen[2].progress is not None and seen[2].progress.message == "half"
    assert list(app.events(job_id=job.id)) == []  # final already: nothing more to wait for


def test_read_events_resumes_and_refuses_a_bad_event_id(app: conveyor.App) -> None:
    events, position = app.read_events()
    assert events == []
    job = app.enqueue_many([conveyor.Signature("t.add", (1, 1))])[0]
    events, after = app.read_events(position)
    assert [(e.job_id, e.state.value) for e in events] == [(job.id, "queued")]
    assert after == events[0].id
    assert app.read_events(str(position))[0] == events  # as SSE's Last-Event-ID gives it
    assert app.read_events(after, timeout=0.1) == ([], after)
    with pytest.raises(conveyor.InvalidArgument):
        app.read_events("abc")


def test_async_readers_share_one_follower_and_wake_on_new_events(app: conveyor.App) -> None:
    async def scenario() -> list[list[str]]:
        _, start = await app.aread_events()

        async def reader() -> list[str]:
            events, _ = await app.aread_events(start, timeout=10.0)
            return [e.job_id for e in events]

        readers = [asyncio.create_task(reader()) for _ in range(20)]
        await asyncio.sleep(0.2)
        await asyncio.to_thread(app.enqueue_many, [conveyor.Signature("t.add", (1, 1))])
        return await asyncio.gather(*readers)

    results = asyncio.run(scenario())
    assert len({tuple(r) for r in results}) == 1 and len(results[0]) == 1


def test_aevents_iterates_a_jobs_changes(app: conveyor.App) -> None:
    async def scenario() -> list[str]:
        job = app.enqueue_many([conveyor.Signature("t.add", (2, 3))])[0]
        states: list[str] = []

        async def follow() -> None:
            async for event in app.aevents(job_id=job.id, after=0):
                states.append(event.state.value)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        assert job.cancel()
        await asyncio.wait_for(follower, 10)
        return states

    assert asyncio.run(scenario()) == ["queued", "cancelled"]
