"""Layout versions on Redis (conveyor/backends/redis/layout.py), against real servers: a new
store and a store from before versions are stamped, a newer conveyor migrates an older store
(by itself when every step is safe, else with ``conveyor migrate``), an older conveyor refuses
a newer store with one line, on one server and on a Cluster. The steps here are made up for
the test; the mechanism is the real one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from conveyor.backends.redis import RedisBackend, layout
from conveyor.backends.redis.layout import LAYOUT_VERSION, UNVERSIONED, Step
from conveyor.errors import ConfigurationError
from tests.backends.helpers import make_record
from tests.cli.conftest import assert_user_error, run
from tests.servers import RedisClusterServers, RedisServer

pytestmark = pytest.mark.slow

NEXT = LAYOUT_VERSION + 1


def raw(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port)


def stored(server: RedisServer, ns: str) -> bytes | None:
    with raw(server) as r:
        value: bytes | None = r.get(f"{{{ns}}}:layout")
        return value


def keys_of(server: RedisServer, ns: str) -> list[bytes]:
    with raw(server) as r:
        return list(r.scan_iter(match=f"{{{ns}}}:*"))


def one_job(server: RedisServer, ns: str) -> str:
    """A store at today's layout with one job in it; its id."""
    backend = RedisBackend(server.url, namespace=ns)
    try:
        [record] = backend.enqueue([make_record()])
    finally:
        backend.close()
    return record.id


def jobs_in(server: RedisServer, ns: str) -> list[str]:
    backend = RedisBackend(server.url, namespace=ns)
    try:
        return [r.id for r in backend.list_jobs()]
    finally:
        backend.close()


@pytest.fixture
def job(redis_server: RedisServer, namespace: str) -> str:
    """A store at today's layout with one job in it (made before ``next_layout``); its id."""
    return one_job(redis_server, namespace)


@pytest.fixture
def next_layout(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Step]]:
    """This conveyor as if it were the next one: one step from today's layout to the next,
    after today's own steps."""
    steps: list[Step] = list(layout.STEPS)
    monkeypatch.setattr(layout, "LAYOUT_VERSION", NEXT)
    monkeypatch.setattr(layout, "STEPS", steps)
    yield steps


def mark_step(client: layout.Client, prefix: str) -> None:
    """A made-up step: leaves a mark (idempotent, as steps must be)."""
    client.set(prefix + "stepped", "yes")


@pytest.fixture
def cli_env(redis_server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_URL", redis_server.url)
    monkeypatch.setenv("CONVEYOR_NAMESPACE", namespace)
    monkeypatch.delenv("CONVEYOR_APP", raising=False)


def test_a_new_store_is_stamped_with_this_conveyors_layout(
    redis_server: RedisServer, namespace: str
) -> None:
    one_job(redis_server, namespace)
    assert stored(redis_server, namespace) == str(LAYOUT_VERSION).encode()


def test_a_store_from_before_versions_is_stamped_with_the_layout_of_that_time(
    redis_server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = one_job(redis_server, namespace)
    monkeypatch.setattr(layout, "STEPS", ())  # stamped, and left there
    with raw(redis_server) as r:
        r.delete(f"{{{namespace}}}:layout")  # as every store was before versions
    assert jobs_in(redis_server, namespace) == [job]
    assert stored(redis_server, namespace) == str(UNVERSIONED).encode()


def test_an_unversioned_store_is_migrated_but_a_new_one_is_made_at_the_new_layout(
    redis_server: RedisServer, namespace: str, next_layout: list[Step]
) -> None:
    next_layout.append(Step(NEXT, mark_step, safe=True))
    with raw(redis_server) as r:
        r.incr(f"{{{namespace}}}:token")  # a key of a store in use, with no version
    fresh = f"{namespace}new"
    for ns in (namespace, fresh):
        jobs_in(redis_server, ns)
        assert stored(redis_server, ns) == str(NEXT).encode()
    assert f"{{{namespace}}}:stepped".encode() in keys_of(redis_server, namespace)
    assert f"{{{fresh}}}:stepped".encode() not in keys_of(redis_server, fresh)


def test_a_safe_step_runs_by_itself_when_the_store_is_opened(
    redis_server: RedisServer, namespace: str, job: str, next_layout: list[Step]
) -> None:
    next_layout.append(Step(NEXT, mark_step, safe=True))
    assert jobs_in(redis_server, namespace) == [job]  # nothing lost on the way
    assert stored(redis_server, namespace) == str(NEXT).encode()
    assert f"{{{namespace}}}:stepped".encode() in keys_of(redis_server, namespace)


def test_layout_2_drops_the_index_of_every_job_and_still_lists_and_tells_every_job(
    redis_server: RedisServer, namespace: str
) -> None:
    backend = RedisBackend(redis_server.url, namespace=namespace)
    try:
        records = backend.enqueue([make_record(queue=q) for q in ("a", "b", "a", "c")])
    finally:
        backend.close()
    ids = sorted(r.id for r in records)
    with raw(redis_server) as r:  # the store as layout 1 left it: `all` held every id
        r.set(f"{{{namespace}}}:layout", "1")
        r.zadd(f"{{{namespace}}}:all", dict.fromkeys(ids, 0))
    assert jobs_in(redis_server, namespace) == ids[::-1]  # newest first, every queue
    assert stored(redis_server, namespace) == b"2"
    assert f"{{{namespace}}}:all".encode() not in keys_of(redis_server, namespace)
    backend = RedisBackend(redis_server.url, namespace=namespace)
    try:
        again = backend.enqueue([records[1]])  # a retried call: told, not stored twice
        assert [r.id for r in backend.list_jobs(limit=2)] == ids[:-3:-1]
        assert [r.id for r in backend.list_jobs(cursor=ids[2])] == ids[1::-1]
    finally:
        backend.close()
    assert again[0].id == records[1].id and len(jobs_in(redis_server, namespace)) == 4


@pytest.mark.usefixtures("cli_env")
def test_a_step_that_is_not_safe_waits_for_conveyor_migrate(
    redis_server: RedisServer, namespace: str, job: str, next_layout: list[Step]
) -> None:
    next_layout.append(Step(NEXT, mark_step, safe=False))
    backend = RedisBackend(redis_server.url, namespace=namespace)
    try:
        with pytest.raises(ConfigurationError) as refused:
            backend.list_jobs()
    finally:
        backend.close()
    assert "\n" not in str(refused.value) and "conveyor migrate" in str(refused.value)
    assert stored(redis_server, namespace) == str(LAYOUT_VERSION).encode()

    result = run("migrate")
    assert result.exit_code == 0, result.output
    assert f"from layout version {LAYOUT_VERSION} to {NEXT}" in result.stdout
    assert f"{{{namespace}}}:stepped".encode() in keys_of(redis_server, namespace)
    again = run("migrate")
    assert f"already at layout version {NEXT}" in again.stdout
    assert jobs_in(redis_server, namespace) == [job]  # opens without complaint


@pytest.mark.usefixtures("cli_env")
def test_conveyor_migrate_creates_a_new_store(redis_server: RedisServer, namespace: str) -> None:
    result = run("migrate")
    assert result.exit_code == 0, result.output
    assert f"created at layout version {LAYOUT_VERSION}" in result.stdout
    assert stored(redis_server, namespace) == str(LAYOUT_VERSION).encode()


@pytest.mark.usefixtures("cli_env")
def test_a_newer_store_is_refused_in_one_line_before_anything_is_written(
    redis_server: RedisServer, namespace: str
) -> None:
    with raw(redis_server) as r:
        r.set(f"{{{namespace}}}:layout", NEXT)
    backend = RedisBackend(redis_server.url, namespace=namespace)
    try:
        with pytest.raises(ConfigurationError) as refused:
            backend.enqueue([make_record()])
    finally:
        backend.close()
    message = str(refused.value)
    assert "\n" not in message
    assert f"layout version {NEXT}" in message and "upgrade conveyor" in message
    assert keys_of(redis_server, namespace) == [f"{{{namespace}}}:layout".encode()]
    for words in (("migrate",), ("jobs",), ("queues",)):
        assert_user_error(run(*words), f"layout version {NEXT}", "upgrade conveyor")


def test_a_layout_key_that_holds_no_version_is_refused_in_one_line(
    redis_server: RedisServer, namespace: str
) -> None:
    with raw(redis_server) as r:
        r.set(f"{{{namespace}}}:layout", "blue")
    backend = RedisBackend(redis_server.url, namespace=namespace)
    try:
        with pytest.raises(ConfigurationError, match="no layout version") as refused:
            backend.list_jobs()
    finally:
        backend.close()
    assert "\n" not in str(refused.value)


def test_on_a_cluster_the_version_lives_in_the_namespaces_slot_and_a_newer_store_is_refused(
    redis_cluster: RedisClusterServers, namespace: str
) -> None:
    backend = RedisBackend(redis_cluster.url, namespace=namespace)
    try:
        backend.enqueue([make_record()])
    finally:
        backend.close()
    owner = redis_cluster.node_serving(f"{{{namespace}}}:layout")
    assert owner is redis_cluster.node_serving(f"{{{namespace}}}:all")
    assert stored(owner, namespace) == str(LAYOUT_VERSION).encode()

    with raw(owner) as r:
        r.set(f"{{{namespace}}}:layout", NEXT)
    newer = RedisBackend(redis_cluster.url, namespace=namespace)
    try:
        with pytest.raises(ConfigurationError, match=f"layout version {NEXT}"):
            newer.list_jobs()
    finally:
        newer.close()
