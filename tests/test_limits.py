"""Limits from the app's side: declaring them, what a job carries, app.limits(); and the
issue's neighbours: task_defaults, periodic args/kwargs, current_job().due."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import conveyor
from conveyor.limits import Rate, free_permits, make_limit, parse_rate, refs_of


@pytest.fixture
def app(backend_url: str, namespace: str) -> Iterator[conveyor.App]:
    a = conveyor.App(backend_url, namespace=namespace)
    yield a
    a.close()


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10/s", Rate(10, 1.0)), ("50/m", Rate(50, 60.0)), (" 3 / h ", Rate(3, 3600.0))],
)
def test_rates_read_as_starts_per_period(text: str, rate: Rate) -> None:
    assert parse_rate(text, owner="x") == rate


@pytest.mark.parametrize("text", ["10", "10/d", "ten/s", "-1/s", "0/m", ""])
def test_a_malformed_rate_says_how_to_write_one(text: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=r"limit 'x': rate"):
        make_limit("x", rate=text)


def test_free_permits_is_the_tighter_of_rate_and_concurrency() -> None:
    spec = make_limit("x", rate="5/s", concurrency=2)
    assert free_permits(spec, running=0, started=0) == 2
    assert free_permits(spec, running=1, started=4) == 1
    assert free_permits(spec, running=2, started=0) == 0
    assert free_permits(spec, running=0, started=5) == 0


def test_app_limit_refuses_nonsense_with_clear_errors(app: conveyor.App) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=r"give rate=\.\.\., concurrency"):
        app.limit("api")
    with pytest.raises(conveyor.ConfigurationError, match="belong to tasks' own"):
        app.limit("task:x", concurrency=1)
    with pytest.raises(conveyor.ConfigurationError, match="concurrency must be"):
        app.limit("api", concurrency=-1)


def test_a_job_carries_its_limits_and_key_computed_at_enqueue(app: conveyor.App) -> None:
    app.limit("bedrock", rate="50/m", concurrency=4)

    @app.task(
        name="summarise",
        limits=["bedrock"],
        rate_limit="10/s",
        concurrency=2,
        limit_key=lambda user_id, *a, **kw: f"user:{user_id}",
    )
    def summarise(user_id: int, doc_id: int) -> None: ...

    job = summarise.delay(7, 1)
    refs = refs_of(app.backend.get(job.id).meta)  # type: ignore[union-attr]
    assert refs == [("task:summarise", "user:7"), ("bedrock", "user:7")]
    infos = {i.name: i for i in app.limits()}
    assert (infos["bedrock"].rate, infos["bedrock"].concurrency) == ("50/m", 4)
    assert (infos["task:summarise"].rate, infos["task:summarise"].concurrency) == ("10/s", 2)


def test_a_bad_limit_key_fails_at_the_call_site(app: conveyor.App) -> None:
    @app.task(concurrency=1, limit_key=lambda x: x)
    def f(x: object) -> None: ...

    with pytest.raises(conveyor.ConfigurationError, match="limit_key returned 3"):
        f.delay(3)


def test_naming_an_undeclared_limit_fails_at_enqueue(app: conveyor.App) -> None:
    @app.task(limits=["nowhere"])
    def f() -> None: ...

    with pytest.raises(conveyor.ConfigurationError, match=r"app.limit\('nowhere'"):
        f.delay()


def test_app_limit_again_changes_the_stored_limit_for_everyone(
    backend_url: str, namespace: str
) -> None:
    if backend_url == "memory://":
        pytest.skip("memory:// is one process: there is no second app to see it")
    one = conveyor.App(backend_url, namespace=namespace)
    two = conveyor.App(backend_url, namespace=namespace)
    try:
        one.limit("api", concurrency=1)
        one.backend  # noqa: B018 - opening the backend stores the declared limits
        two.limit("api", concurrency=5, rate="3/s")
        two.backend  # noqa: B018
        [api] = one.limits()
        assert (api.concurrency, api.rate) == (5, "3/s")
        one.limit("api", concurrency=2)
        [api] = two.limits()
        assert (api.concurrency, api.rate) == (2, None)
    finally:
        one.close()
        two.close()


def test_task_defaults_apply_to_every_task_and_decorator_keywords_win() -> None:
    app = conveyor.App("memory://", task_defaults={"retries": 3, "queue": "bulk", "timeout": 90})

    @app.task
    def plain() -> None: ...

    @app.task(queue="fast")
    def fast() -> None: ...

    assert (plain.options.retries, plain.options.queue, plain.options.timeout) == (3, "bulk", 90)
    assert (fast.options.retries, fast.options.queue) == (3, "fast")


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ({"colour": "red"}, "unknown option"),
        ({"retries": -1}, "task_defaults: retries must be 0 or more"),
        ({"name": "x"}, "cannot set name"),
    ],
)
def test_bad_task_defaults_fail_when_the_app_is_made(
    defaults: dict[str, object], message: str
) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=message):
        conveyor.App("memory://", task_defaults=defaults)


def test_periodic_args_and_kwargs_reach_the_job() -> None:
    app = conveyor.App("memory://")

    @app.periodic(every=timedelta(hours=1), args=(48,), kwargs={"dry": True})
    def cleanup(max_age_hours: int, dry: bool = False) -> None: ...

    [spec] = app.registry.periodic
    job = app.job(app.backend.enqueue([app.periodic_record(spec, 1_700_000_000.0)])[0].id)
    info = job.info()
    assert (info.args, info.kwargs) == ((48,), {"dry": True})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"args": (1, 2, 3)}, "do not fit the function"),
        ({"args": (object(),)}, "must be JSON"),
    ],
)
def test_periodic_args_are_checked_at_declaration(kwargs: dict[str, object], message: str) -> None:
    app = conveyor.App("memory://")
    with pytest.raises(conveyor.ConfigurationError, match=message):
        app.periodic(every=60, **kwargs)(lambda x: None)  # type: ignore[call-overload]


def test_current_job_due_is_the_due_time_of_a_periodic_job() -> None:
    app = conveyor.App("memory://")
    seen: list[object] = []

    @app.periodic(every=60)
    def tick() -> None:
        ctx = conveyor.current_job()
        assert ctx is not None
        seen.append(ctx.due)

    @app.task
    def plain() -> None:
        ctx = conveyor.current_job()
        assert ctx is not None
        seen.append(ctx.due)

    [spec] = app.registry.periodic
    due = 1_700_000_040.0
    app.backend.enqueue([app.periodic_record(spec, due)])
    plain.delay()
    with app.worker(concurrency=1, schedule=False):
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while len(seen) < 2 and datetime.now(UTC) < deadline:
            import time

            time.sleep(0.02)
    assert datetime.fromtimestamp(due, UTC) in seen and None in seen


def test_a_worker_runs_a_concurrency_one_task_one_at_a_time(app: conveyor.App) -> None:
    import itertools
    import threading
    import time

    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    @app.task(name="solo", concurrency=1)
    def solo() -> None:
        start = time.monotonic()
        time.sleep(0.05)
        with lock:
            spans.append((start, time.monotonic()))

    @app.task(name="free")
    def free() -> int:
        return 1

    jobs = [solo.delay() for _ in range(5)]
    other = free.delay()
    with app.worker(concurrency=4, schedule=False):
        assert other.result(timeout=30) == 1
        for job in jobs:
            job.result(timeout=60)
    spans.sort()
    assert all(later[0] >= first[1] for first, later in itertools.pairwise(spans))
    assert all(job.info().attempts == 1 for job in jobs)
