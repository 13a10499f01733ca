"""What only the PostgreSQL backend promises: several processes claiming at once, a killed and
restarted server, a server that is down, namespaces in one database, claims served by their
index and never past their LIMIT, the table's storage settings, and the layout version."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.schema import SCHEMA_VERSION
from conveyor.backends.postgres.store import parse_url
from conveyor.errors import BackendUnavailable, ConfigurationError
from conveyor.job import Outcome, State
from tests.backends.helpers import LEASE, NOW, make_record, running
from tests.backends.racing import claim_in_processes
from tests.servers import PostgresServer

pytestmark = pytest.mark.slow


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def backend(postgres_server: PostgresServer, ns: str) -> Iterator[PostgresBackend]:
    b = PostgresBackend(postgres_server.url, namespace=ns)
    yield b
    b.close()


def test_several_processes_claiming_at_once_never_get_one_job_twice(
    postgres_server: PostgresServer, backend: PostgresBackend, ns: str
) -> None:
    records = [make_record(queue=("default", "other")[i % 2]) for i in range(3000)]
    backend.enqueue(records)
    claimed = claim_in_processes(postgres_server.url, ns, now=NOW)
    assert len(claimed) == len(set(claimed)) == 3000
    assert set(claimed) == {r.id for r in records}


def test_a_killed_and_restarted_server_loses_no_enqueued_job_and_the_backend_reconnects(
    fresh_postgres_server: PostgresServer, ns: str
) -> None:
    backend = PostgresBackend(fresh_postgres_server.url, namespace=ns)
    other = PostgresBackend(fresh_postgres_server.url, namespace=ns)
    try:
        backend.wait_for_jobs(["later"], 0.01)  # the listener is up before the restart
        singles = [backend.enqueue([make_record()])[0] for _ in range(200)]
        batch = backend.enqueue([make_record() for _ in range(1000)])

        fresh_postgres_server.kill()  # SIGKILL: nothing gets flushed at the last moment
        fresh_postgres_server.start()

        assert all(backend.get(r.id) is not None for r in singles + batch)
        claimed = backend.claim("w1", ["default"], 2000, lease_seconds=LEASE, now=NOW)
        assert len(claimed) == 1200

        woke, changed = threading.Event(), threading.Event()
        watched = other.enqueue([make_record(queue="watched")])[0]

        def wait() -> None:
            deadline = time.monotonic() + 30
            while not woke.is_set() and time.monotonic() < deadline:
                since = backend._listener.ready.snapshot(["later"])
                if backend.queue_counts().get("later"):
                    woke.set()
                    return
                backend._listener.ready.wait(["later"], since, 30.0)

        def watch() -> None:
            record = backend.wait_final(watched.id, 30.0)
            if record is not None and record.state is State.CANCELLED:
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
        assert changed.is_set(), "the listener did not listen again after the restart"
    finally:
        backend.close()
        other.close()


def test_enqueue_while_the_server_is_down_raises_backend_unavailable_in_bounded_time(
    fresh_postgres_server: PostgresServer, ns: str
) -> None:
    backend = PostgresBackend(fresh_postgres_server.url, namespace=ns, retry_seconds=1.0)
    try:
        backend.enqueue([make_record()])
        fresh_postgres_server.kill()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="did not answer"):
            backend.enqueue([make_record()])
        assert time.monotonic() - started < 15.0
        assert not backend.ping()
    finally:
        backend.close()


def test_namespaces_in_one_database_never_see_each_other(
    postgres_server: PostgresServer,
) -> None:
    one = PostgresBackend(postgres_server.url, namespace=f"a{uuid.uuid4().hex[:8]}")
    two = PostgresBackend(postgres_server.url, namespace=f"b{uuid.uuid4().hex[:8]}")
    try:
        one.enqueue([make_record()])
        assert two.list_jobs() == []
        assert two.claim("w", ["default"], 5, lease_seconds=LEASE, now=NOW) == []
        assert len(one.claim("w", ["default"], 5, lease_seconds=LEASE, now=NOW)) == 1
    finally:
        one.close()
        two.close()


def test_a_namespace_that_cannot_prefix_a_table_is_a_configuration_error(
    postgres_server: PostgresServer,
) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        PostgresBackend(postgres_server.url, namespace="no; DROP TABLE x")


def test_the_claim_is_served_by_the_queued_index_and_never_takes_more_than_its_limit(
    postgres_server: PostgresServer, backend: PostgresBackend, ns: str
) -> None:
    backend.enqueue([make_record(queue="busy") for _ in range(5000)])
    backend.enqueue([make_record(queue="default") for _ in range(50)])
    params = backend._claim_params("w", ["default", "busy"], 10, LEASE, NOW)
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {ns}_jobs")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + backend._sql["claim"], params))
    assert f"{ns}_jobs_queued" in plan
    assert f"Seq Scan on {ns}_jobs" not in plan
    assert len(backend.claim("w", ["default", "busy"], 10, lease_seconds=LEASE, now=NOW)) == 10
    counts = backend.queue_counts().values()
    assert sum(by_state.get(State.RUNNING, 0) for by_state in counts) == 10


@pytest.mark.parametrize("statement", ["finish_and_claim", "claim"])
def test_the_generic_plan_of_a_prepared_claim_never_scans_the_jobs_table(
    postgres_server: PostgresServer, backend: PostgresBackend, ns: str, statement: str
) -> None:
    # PostgreSQL may keep a generic plan for a prepared statement, planned without the
    # parameters' values (the fetcher's claim always does: held.py): it must probe the
    # indexes as the custom plan does.
    backend.enqueue([make_record(queue="busy") for _ in range(5000)])
    numbered: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbered.setdefault(match.group(1), len(numbered) + 1)}"

    text = re.sub(r"%\((\w+)\)[sb]", number, backend._sql[statement])
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {ns}_jobs")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE fc AS {text}")
        nulls = ", ".join("NULL" for _ in numbered)
        plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN EXECUTE fc({nulls})"))
    assert "$1" in text and f"{ns}_jobs_queued" in plan
    assert f"Seq Scan on {ns}_jobs " not in plan, plan


def test_a_claim_writes_no_entry_in_the_listing_indexes_and_listings_still_show_running_jobs(
    postgres_server: PostgresServer, backend: PostgresBackend, ns: str
) -> None:
    # layout_3.sql: by task and by queue, running jobs are left out of the indexes (a claim
    # adds no entry to them) and listed from the running jobs' own index
    older = backend.enqueue([make_record(task="a", queue="q") for _ in range(3)])
    claims = backend.claim("w", ["q"], 2, lease_seconds=LEASE, now=NOW)
    newer = backend.enqueue([make_record(task="a", queue="q") for _ in range(2)])
    backend.finish(claims[0].record.id, claims[0].token, Outcome(State.SUCCEEDED), now=NOW)
    newest_first = sorted((r.id for r in older + newer), reverse=True)
    by: dict[str, Any]
    for by in ({"task": "a"}, {"queue": "q"}):
        assert [r.id for r in backend.list_jobs(**by)] == newest_first
        pages = [backend.list_jobs(limit=2, **by)]
        while pages[-1]:
            pages.append(backend.list_jobs(limit=2, cursor=pages[-1][-1].id, **by))
        assert [r.id for page in pages for r in page] == newest_first
        assert [r.id for r in backend.list_jobs(state=State.RUNNING, **by)] == [claims[1].record.id]
        assert [r.id for r in backend.list_jobs(state=State.SUCCEEDED, **by)] == [
            claims[0].record.id
        ]
        assert len(backend.list_jobs(state=State.QUEUED, **by)) == 3
    with psycopg.connect(postgres_server.url) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN (%s, %s)",
            [f"{ns}_jobs_by_task", f"{ns}_jobs_by_queue"],
        ).fetchall()
    assert len(rows) == 2 and all("<> 'running'" in definition for _, definition in rows)


def test_a_claim_outlives_the_loss_of_the_fetchers_own_connection(
    postgres_server: PostgresServer, backend: PostgresBackend
) -> None:
    backend.enqueue([make_record() for _ in range(3)])
    assert len(backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=NOW)) == 1
    pid = backend._claimer.run(lambda c: c.info.backend_pid)
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert len(backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=NOW)) == 1
    assert backend._claimer.run(lambda c: c.info.backend_pid) != pid  # connected again
    assert len(backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=NOW)) == 1


def test_the_jobs_table_is_set_for_a_queues_churn(
    postgres_server: PostgresServer, backend: PostgresBackend, ns: str
) -> None:
    with psycopg.connect(postgres_server.url) as conn:
        row = conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [f"{ns}_jobs"])
        options = set(row.fetchone()[0])  # type: ignore[index]
    assert "fillfactor=70" in options
    assert "autovacuum_vacuum_scale_factor=0.01" in options


def test_the_store_records_its_layout_version(
    postgres_server: PostgresServer, backend: PostgresBackend, ns: str
) -> None:
    with psycopg.connect(postgres_server.url) as conn:
        row = conn.execute(f"SELECT version FROM {ns}_schema").fetchone()
    assert row == (SCHEMA_VERSION,)


def test_a_store_written_by_a_newer_conveyor_is_refused_in_one_line(
    postgres_server: PostgresServer, backend: PostgresBackend, ns: str
) -> None:
    with psycopg.connect(postgres_server.url) as conn:
        conn.execute(f"UPDATE {ns}_schema SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigurationError) as refused:
        PostgresBackend(postgres_server.url, namespace=ns)
    message = str(refused.value)
    assert "\n" not in message
    assert f"layout version {SCHEMA_VERSION + 1}" in message and "upgrade conveyor" in message


def test_processes_that_open_a_new_namespace_at_once_create_it_once(
    postgres_server: PostgresServer, ns: str
) -> None:
    opener = (
        "import sys; from conveyor.backends.postgres import PostgresBackend; "
        "PostgresBackend(sys.argv[1], namespace=sys.argv[2]).close()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", opener, postgres_server.url, ns]) for _ in range(4)
    ]
    assert [proc.wait(60) for proc in procs] == [0, 0, 0, 0]
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {ns}_schema").fetchone() == (1,)


def test_the_url_takes_conveyors_own_options_out_before_libpq_sees_them() -> None:
    options = parse_url(
        "postgresql://u:secret@db:5433/jobs?prepared=off&listen=off&sslmode=require"
    )
    assert (options.prepared, options.listen) == (False, False)
    assert options.conninfo == "postgresql://u:secret@db:5433/jobs?sslmode=require"
    assert parse_url("postgres://db/jobs").prepared is True
    with pytest.raises(ConfigurationError, match="listen=on or listen=off") as bad:
        parse_url("postgresql://u:secret@db/jobs?listen=maybe")
    assert "secret" not in str(bad.value)


def test_without_listen_waiters_poll_and_still_see_the_outcome(
    postgres_server: PostgresServer, ns: str
) -> None:
    backend = PostgresBackend(postgres_server.url + "?listen=off", namespace=ns)
    try:
        claim = running(backend)
        finisher = threading.Timer(
            0.3,
            backend.finish,
            args=(claim.record.id, claim.token, Outcome.succeeded(b"1")),
            kwargs={"now": NOW},
        )
        finisher.start()
        record = backend.wait_final(claim.record.id, 30.0)
        finisher.join()
        assert record is not None and record.state is State.SUCCEEDED
        assert not backend._listener._listening.is_set()  # no LISTEN connection was opened
    finally:
        backend.close()


def test_the_feed_holds_back_an_event_behind_a_transaction_still_in_flight(
    postgres_server: PostgresServer, backend: PostgresBackend
) -> None:
    # Event ids are drawn when written, not when committed: a reader that returned the later
    # event now and resumed after it would never see the earlier one.
    start = backend.last_event_id()
    with psycopg.connect(postgres_server.url) as conn:  # a transaction left open
        held = backend.enqueue_with(conn, [make_record(task="t.held")])[0]
        backend.enqueue([make_record(task="t.later")])
        assert backend.read_events(start) == []
        assert backend.read_events(start, timeout=0.2) == []
    events = backend.read_events(start)  # committed: both, in id order
    assert [e.task for e in events] == ["t.held", "t.later"]
    assert events[0].job_id == held.id


def test_the_feed_passes_over_the_gap_of_a_rolled_back_enqueue(
    postgres_server: PostgresServer, backend: PostgresBackend
) -> None:
    start = backend.last_event_id()
    with psycopg.connect(postgres_server.url) as conn:
        backend.enqueue_with(conn, [make_record(task="t.gone")])
        conn.rollback()
    backend.enqueue([make_record(task="t.kept")])
    assert [e.task for e in backend.read_events(start, timeout=5.0)] == ["t.kept"]
