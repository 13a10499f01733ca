"""What only the Redis backend promises on one server: several processes, server restarts,
lost connections, namespaces on one server, one Cluster slot per namespace, URLs, the warning
for a server that persists nothing. test_redis_cluster.py has what it promises on a Redis
Cluster; the conformance suite covers the contract itself (on one server and on the
Cluster)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from conveyor.backends import open_backend
from conveyor.backends.base import SweepResult
from conveyor.backends.redis import RedisBackend
from conveyor.errors import BackendUnavailable
from conveyor.job import ErrorInfo, Outcome, State
from tests.backends.helpers import (
    LEASE,
    NOW,
    StoreClock,
    make_record,
    make_worker,
    recover_at,
)
from tests.backends.racing import claim_in_processes
from tests.servers import RedisServer, redis_binary

pytestmark = pytest.mark.slow


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def backend(redis_server: RedisServer, ns: str) -> Iterator[RedisBackend]:
    b = RedisBackend(redis_server.url, namespace=ns)
    yield b
    b.close()


StartServer = Callable[..., RedisServer]


@pytest.fixture
def server_of_its_own(tmp_path: Path) -> Iterator[StartServer]:
    """A server a test may start with its own arguments (see ``start``)."""
    servers: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        server = RedisServer(redis_binary(), tmp_path, args=args)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_several_processes_claiming_at_once_never_get_one_job_twice(
    redis_server: RedisServer, backend: RedisBackend, ns: str
) -> None:
    records = [make_record(queue=("default", "other")[i % 2]) for i in range(3000)]
    backend.enqueue(records)
    claimed = claim_in_processes(redis_server.url, ns, now=NOW)
    assert len(claimed) == len(set(claimed)) == 3000
    assert set(claimed) == {r.id for r in records}


def test_a_killed_and_restarted_server_loses_no_enqueued_job_and_the_backend_reconnects(
    fresh_redis_server: RedisServer, ns: str
) -> None:
    backend = RedisBackend(fresh_redis_server.url, namespace=ns)
    other = RedisBackend(fresh_redis_server.url, namespace=ns)
    try:
        backend.wait_for_jobs(["later"], 0.01)  # a waiter registered before the restart
        backend.wait_for_change("any", 0.01)  # the listener is up before the restart
        singles = [backend.enqueue([make_record()])[0] for _ in range(200)]
        batch = backend.enqueue([make_record() for _ in range(1000)])

        fresh_redis_server.kill()  # SIGKILL: nothing gets flushed at the last moment
        fresh_redis_server.start()

        assert all(backend.get(r.id) is not None for r in singles + batch)
        claimed = backend.claim("w1", ["default"], 2000, lease_seconds=LEASE, now=NOW)
        assert len(claimed) == 1200

        woke, changed = threading.Event(), threading.Event()
        watched = other.enqueue([make_record(queue="watched")])[0]

        def wait() -> None:
            backend.wait_for_jobs(["later"], 30.0)
            woke.set()

        def watch() -> None:
            backend.wait_for_change(watched.id, 30.0)
            changed.set()

        threads = [threading.Thread(target=wait), threading.Thread(target=watch)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        other.enqueue([make_record(queue="later")])
        other.cancel(watched.id, now=NOW)
        for thread in threads:
            thread.join(20.0)
        assert woke.is_set(), "the enqueue did not wake the waiter after the restart"
        assert changed.is_set(), "the listener did not resubscribe after the restart"
    finally:
        backend.close()
        other.close()


def test_enqueue_while_the_server_is_down_raises_backend_unavailable_in_bounded_time(
    fresh_redis_server: RedisServer, ns: str
) -> None:
    backend = RedisBackend(fresh_redis_server.url, namespace=ns, retry_seconds=1.0)
    try:
        backend.enqueue([make_record()])
        fresh_redis_server.kill()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="did not answer"):
            backend.enqueue([make_record()])
        assert time.monotonic() - started < 15.0
        assert not backend.ping()
    finally:
        backend.close()


def assert_claimed_and_finished(backend: RedisBackend, job_id: str) -> None:
    (claim,) = backend.claim("w1", ["default"], 1, lease_seconds=LEASE, now=NOW)
    assert claim.record.id == job_id
    assert backend.finish(job_id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    stored = backend.get(job_id)
    assert stored is not None and stored.state is State.SUCCEEDED


def test_the_scripts_are_loaded_again_after_a_restart_or_a_flush(
    fresh_redis_server: RedisServer, ns: str
) -> None:
    backend = RedisBackend(fresh_redis_server.url, namespace=ns)
    raw = redis.Redis.from_url(fresh_redis_server.url)
    try:
        job = backend.enqueue([make_record()])[0]
        library = backend._connection.scripts.library.name
        assert [entry[1] for entry in raw.function_list()] == [library.encode()]
        fresh_redis_server.restart()
        # persisted with the data; a server that lost them, or was flushed, has none
        assert [entry[1] for entry in raw.function_list()] == [library.encode()]
        raw.function_flush()  # "function not found" awaits the next call

        assert_claimed_and_finished(backend, job.id)
        assert [entry[1] for entry in raw.function_list()] == [library.encode()]
    finally:
        raw.close()
        backend.close()


def test_a_server_without_functions_runs_the_same_jobs_with_scripts(
    server_of_its_own: StartServer, ns: str
) -> None:
    # Redis 6 has no FCALL; a user may be refused FUNCTION LOAD: both fall back to EVALSHA
    server = server_of_its_own()
    raw = redis.Redis.from_url(server.url)
    raw.acl_setuser(
        "scripts", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-function", "-fcall"],
    )  # fmt: skip
    url = server.url.replace("redis://", "redis://scripts:pw@")
    backend = RedisBackend(url, namespace=ns)
    try:
        job = backend.enqueue([make_record()])[0]
        assert not backend._connection.scripts.functions
        assert_claimed_and_finished(backend, job.id)
        shas = [script.sha for script in backend._connection.scripts.scripts.values()]
        assert sum(raw.script_exists(*shas)) == 3  # enqueue, claim, finish
        assert raw.function_list() == []
    finally:
        raw.close()
        backend.close()


def test_a_script_error_is_raised_and_does_not_leave_the_functions(
    backend: RedisBackend,
) -> None:
    with pytest.raises(redis.ResponseError):
        backend._connection.run("enqueue", b"not msgpack")
    assert backend._connection.scripts.functions
    assert backend.enqueue([make_record()])


def test_a_lease_within_its_last_second_is_not_recovered_before_it_expires(
    redis_server: RedisServer, ns: str
) -> None:
    # `running` is scored by whole seconds (a listpack compares integers without strtod):
    # recover finds the lease by its rounded score, but only its own expiry ends it
    backend = RedisBackend(redis_server.url, namespace=ns, clock=StoreClock(NOW + 0.25))
    try:
        job = backend.enqueue([make_record()])[0]
        (claim,) = backend.claim("w1", ["default"], 1, lease_seconds=LEASE, now=NOW)
        assert claim.record.lease_expires_at == NOW + 0.25 + LEASE
        assert recover_at(backend, NOW + LEASE + 0.2, max_crashes=3) == []
        stored = backend.get(job.id)
        assert stored is not None and stored.state is State.RUNNING
        recovered = recover_at(backend, NOW + 0.25 + LEASE + 0.01, max_crashes=3)
        assert [(r.id, r.state) for r in recovered] == [(job.id, State.QUEUED)]
    finally:
        backend.close()


def test_closing_the_backend_closes_the_connections_its_threads_hold(
    redis_server: RedisServer, ns: str
) -> None:
    backend = RedisBackend(redis_server.url, namespace=ns)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.client_setname("observer")
        before = len(raw.client_list())
        threads = [threading.Thread(target=backend.queue_counts) for _ in range(3)]
        threads += [threading.Thread(target=backend.sweep, kwargs={"now": NOW}) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(raw.client_list()) > before  # three held, one pooled at least
        backend.close()
        deadline = time.monotonic() + 5
        while len(raw.client_list()) > before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(raw.client_list()) == before
    finally:
        raw.close()
        backend.close()


def test_a_job_costs_few_redis_commands_from_enqueue_to_finish(
    server_of_its_own: StartServer,
) -> None:
    # A count, not a timing: the commands per job are the server time the hot path spends.
    server = server_of_its_own()
    backend = RedisBackend(server.url, namespace="cost")
    raw = redis.Redis.from_url(server.url)
    try:
        backend.queue_counts()  # connected: the detection of a Cluster is not counted
        raw.config_resetstat()
        backend.enqueue([make_record() for _ in range(400)])
        finished: list[tuple[str, int, Outcome]] = []
        while True:
            done, claims = backend.finish_and_claim(
                finished, "w1", ["default"], 50, lease_seconds=LEASE, now=NOW
            )
            assert all(done)
            if not claims:
                break
            finished = [(c.record.id, c.token, Outcome.succeeded(b"null")) for c in claims]
        stats: dict[str, dict[str, int]] = raw.info("commandstats")
        assert backend.queue_counts() == {"default": {State.SUCCEEDED: 400}}
    finally:
        raw.close()
        backend.close()
    scripts = ("cmdstat_fcall", "cmdstat_function|load", "cmdstat_config|resetstat")
    calls = {k: v["calls"] for k, v in stats.items() if k not in scripts}
    # per job: ZADD and HSET to enqueue, HMGET, HLEN and HSET to claim, HMGET, HLEN and HSET
    # to finish (HLEN, which reads no field, spares reading the fields a job has not set);
    # the indexes take each batch in one command
    assert sum(calls.values()) / 400 < 9, calls


def test_claim_passes_by_expired_jobs_to_take_the_ready_ones_behind_them(
    backend: RedisBackend,
) -> None:
    stale = backend.enqueue([make_record(expires_at=NOW + 1) for _ in range(7)])
    fresh = backend.enqueue([make_record(queue=("default", "other")[i % 2]) for i in range(6)])
    claims = backend.claim("w1", ["default", "other"], 4, lease_seconds=LEASE, now=NOW + 2)
    assert [c.record.id for c in claims] == [r.id for r in fresh[:4]]
    assert all(backend.get(r.id).state is State.QUEUED for r in stale)  # type: ignore[union-attr]


def test_listing_jobs_of_a_state_behind_many_others_finds_them_all(
    backend: RedisBackend,
) -> None:
    # The queued jobs are older than 6,000 finished ones: the listing walks past them over
    # more than one script call.
    waiting = backend.enqueue([make_record(queue="slow") for _ in range(3)])
    backend.enqueue([make_record() for _ in range(6000)])
    while claims := backend.claim("w1", ["default"], 1000, lease_seconds=LEASE, now=NOW):
        outcomes = [(c.record.id, c.token, Outcome.succeeded(b"1")) for c in claims]
        assert all(backend.finish_many(outcomes, now=NOW))
    failed = backend.enqueue([make_record(queue="slow")])[0]
    (claim,) = backend.claim("w1", ["slow"], 1, lease_seconds=LEASE, now=NOW)
    assert claim.record.id == waiting[0].id
    error = ErrorInfo("ValueError", "boom")
    assert backend.finish(claim.record.id, claim.token, Outcome.failed(error), now=NOW)

    queued = backend.list_jobs(state=State.QUEUED, limit=10)
    assert [r.id for r in queued] == [failed.id, waiting[2].id, waiting[1].id]
    assert [r.id for r in backend.list_jobs(state=State.FAILED)] == [waiting[0].id]
    assert len(backend.list_jobs(state=State.SUCCEEDED, limit=7000)) == 6000
    assert [r.id for r in backend.list_jobs(state=State.RUNNING)] == []


def test_a_batch_of_many_distinct_outcomes_finishes_each_job_with_its_own(
    backend: RedisBackend,
) -> None:
    # The outcomes travel once each, the jobs by number: past 127 of them, in more bytes.
    backend.enqueue([make_record() for _ in range(300)])
    claims = backend.claim("w1", ["default"], 300, lease_seconds=LEASE, now=NOW)
    same = Outcome.succeeded(b"0")
    outcomes = [Outcome.succeeded(str(i).encode()) if i < 200 else same for i in range(300)]
    items = [(c.record.id, c.token, o) for c, o in zip(claims, outcomes, strict=True)]
    assert all(backend.finish_many(items, now=NOW))
    results = [backend.get(c.record.id).result for c in claims]  # type: ignore[union-attr]
    assert results == [str(i).encode() if i < 200 else b"0" for i in range(300)]


def test_a_retried_job_keeps_no_expiry_from_before(backend: RedisBackend) -> None:
    record = backend.enqueue([make_record(expires_at=NOW + 10)])[0]
    (claim,) = backend.claim("w1", ["default"], 1, lease_seconds=LEASE, now=NOW)
    error = ErrorInfo("ValueError", "boom")
    assert backend.finish(record.id, claim.token, Outcome.failed(error), now=NOW + 1)
    assert backend.retry(record.id, now=NOW + 2)
    assert backend.sweep(now=NOW + 20) == SweepResult()
    stored = backend.get(record.id)
    assert stored is not None and stored.state is State.QUEUED and stored.expires_at is None


def test_namespaces_on_one_server_never_see_each_other(redis_server: RedisServer) -> None:
    shop = RedisBackend(redis_server.url, namespace=f"shop{uuid.uuid4().hex[:8]}")
    blog = RedisBackend(redis_server.url, namespace=f"blog{uuid.uuid4().hex[:8]}")
    try:
        job = shop.enqueue([make_record()])[0]
        assert blog.get(job.id) is None
        assert blog.claim("w1", ["default"], 10, lease_seconds=LEASE, now=NOW) == []
        assert blog.queue_counts() == {}
        assert blog.list_jobs() == []
        claimed = shop.claim("w", ["default"], 10, lease_seconds=LEASE, now=NOW)
        assert [c.record.id for c in claimed] == [job.id]
    finally:
        shop.close()
        blog.close()


def test_every_key_of_a_namespace_carries_one_hash_tag(
    redis_server: RedisServer, backend: RedisBackend, ns: str
) -> None:
    backend.enqueue([make_record(key="k1"), make_record(unique_key="u1", expires_at=NOW + 5)])
    backend.enqueue([make_record(ready_at=NOW + 60, queue="later")])
    (claim,) = backend.claim("w1", ["default"], 1, lease_seconds=LEASE, now=NOW)
    lease = (claim.record.id, claim.token)
    backend.heartbeat(make_worker(), [lease], lease_seconds=LEASE, now=NOW)
    backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    backend.register_worker(make_worker("w2"))
    backend.record_due("hourly", NOW, make_record(), skip_if_active=False, now=NOW)

    raw = redis.Redis.from_url(redis_server.url)
    try:
        keys = [k.decode() for k in raw.scan_iter(match=f"*{ns}*", count=1000)]
    finally:
        raw.close()
    assert len(keys) > 10
    assert all(k.startswith(f"{{{ns}}}:") for k in keys)
    assert len({key_slot(k.encode()) for k in keys}) == 1


def test_a_server_that_persists_nothing_is_warned_about(
    server_of_its_own: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_of_its_own("--appendonly", "no", "--save", "")
    backend = RedisBackend(server.url, namespace="warned")
    try:
        with caplog.at_level(logging.WARNING, logger="conveyor.backends.redis"):
            assert backend.check_persistence() is False
        assert "persists nothing" in caplog.text
    finally:
        backend.close()


def test_a_server_with_an_append_only_file_is_not_warned_about(
    backend: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="conveyor.backends.redis"):
        assert backend.check_persistence() is True
    assert caplog.text == ""


def test_the_url_database_number_is_honoured(redis_server: RedisServer, ns: str) -> None:
    backend = open_backend(f"redis://127.0.0.1:{redis_server.port}/3", namespace=ns)
    raw = redis.Redis(port=redis_server.port, db=3)
    try:
        backend.enqueue([make_record()])
        assert list(raw.scan_iter(match=f"{{{ns}}}:*"))
    finally:
        raw.close()
        backend.close()


def test_the_url_password_is_honoured(server_of_its_own: StartServer) -> None:
    server = server_of_its_own("--requirepass", "s3cret")
    good = open_backend(f"redis://:s3cret@127.0.0.1:{server.port}/0", namespace="pw")
    bad = RedisBackend(f"redis://:wrong@127.0.0.1:{server.port}/0", namespace="pw")
    try:
        assert good.enqueue([make_record()])
        with pytest.raises(BackendUnavailable, match=r"password") as excinfo:
            bad.enqueue([make_record()])
        assert "wrong" not in str(excinfo.value)
    finally:
        good.close()
        bad.close()


def test_valkey_and_unix_socket_urls_open_the_redis_backend(
    server_of_its_own: StartServer, tmp_path: Path
) -> None:
    sock = tmp_path / "redis.sock"
    server = server_of_its_own("--unixsocket", str(sock))
    for url in (f"valkey://127.0.0.1:{server.port}/0", f"unix://{sock}?db=0"):
        backend = open_backend(url, namespace="urls")
        try:
            assert isinstance(backend, RedisBackend)
            assert backend.ping()
        finally:
            backend.close()


def test_a_user_who_may_not_run_info_gets_a_single_server_client(
    server_of_its_own: StartServer,
) -> None:
    # a plain URL asks INFO whether the server is a Cluster node; refused, it assumes not
    server = server_of_its_own("--user", "app", "on", ">pw", "~*", "&*", "+@all", "-info")
    backend = open_backend(f"redis://app:pw@127.0.0.1:{server.port}/0", namespace="acl")
    try:
        assert isinstance(backend, RedisBackend)
        assert backend.enqueue([make_record()])
        assert backend.cluster is False
    finally:
        backend.close()


def test_a_finish_counts_alike_the_runs_it_sends_and_those_it_reads(
    redis_server: RedisServer, ns: str
) -> None:
    """A backend's finish sends the queue, task and start time of the runs it claimed, and
    counts a batch's alike together; the server reads them for any other run. The counts,
    task stats and fencing come out the same either way."""
    claimer = RedisBackend(redis_server.url, namespace=ns, clock=lambda: NOW)
    other = RedisBackend(redis_server.url, namespace=ns, clock=lambda: NOW)
    try:
        records = [make_record(task="t.a") for _ in range(4)]
        records += [make_record(task="t.b", queue="q2") for _ in range(3)]
        claimer.enqueue(records)
        claims = claimer.claim("w1", ["default", "q2"], 7, lease_seconds=LEASE, now=NOW)
        runs = {c.record.id: c for c in claims}
        a = [runs[r.id] for r in records[:4]]
        b = [runs[r.id] for r in records[4:]]
        ok = Outcome.succeeded(b"1")
        failed = Outcome.failed(ErrorInfo("ValueError", "no"))
        later = NOW + 2.0
        # sent: three of t.a alike, then one of t.b failed; one under a stale token
        mine = [(c.record.id, c.token, ok) for c in a[:3]]
        mine += [(b[0].record.id, b[0].token, failed), (b[1].record.id, b[1].token + 99, ok)]
        held = claimer._held  # the runs its claim noted: a finish sends and forgets them
        assert {c.record.id for c in claims} <= held.keys()
        assert claimer.finish_many(mine, now=later) == [True, True, True, True, False]
        assert held.keys() == {a[3].record.id, b[2].record.id}
        # read: the other backend claimed none of them
        theirs = [(a[3].record.id, a[3].token, ok), (b[1].record.id, b[1].token, ok)]
        assert other.finish_many(theirs, now=later) == [True, True]
        assert claimer.finish_many([(a[0].record.id, a[0].token, ok)], now=later) == [False]

        counts = claimer.queue_counts()
        assert counts["default"] == {State.SUCCEEDED: 4}
        assert counts["q2"] == {State.SUCCEEDED: 1, State.FAILED: 1, State.RUNNING: 1}
        tasks = claimer.job_stats(now=later).tasks
        assert (tasks["t.a"].succeeded, tasks["t.a"].runtime_count) == (4, 4)
        assert tasks["t.a"].runtime_sum == pytest.approx(8.0)
        assert (tasks["t.b"].succeeded, tasks["t.b"].failed) == (1, 1)
        assert tasks["t.b"].failures == {"ValueError": 1}
        assert tasks["t.b"].runtime_sum == pytest.approx(4.0)
    finally:
        claimer.close()
        other.close()
