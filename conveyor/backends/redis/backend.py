"""``redis://``, ``rediss://``, ``unix://`` and ``valkey://``: many machines on one Redis or
Valkey server, or on a Redis Cluster, which a ``redis://`` URL detects at the first call;
``redis+cluster://`` (or ``?cluster=true``) names a Cluster, ``?cluster=false`` one server.

Every compound operation is one Lua script (the ``.lua`` files beside this module, each
behind ``common.lua``), run with FCALL as a function of one library, or with EVALSHA (see
``scripts.py``). Every key of a
namespace starts with ``{namespace}:``, one hash tag, so a namespace lives in one Cluster slot
and the scripts may touch any of its keys.

Layout (version 2, ``layout.py``), under the prefix: ``job:<id>`` a hash per job (whose
existence tells a retried enqueue); ``ready:<queue>`` a sorted set scored by priority then
ready time (ties by id); ``sched:<queue>`` scheduled jobs by ready time; ``running`` by
lease expiry (rounded down to the second); ``purge`` final jobs by purge time; ``expiring``
jobs with an expiry time (left lazily: sweep checks each against its job); ``state:<state>``
ids (lexical) of the states no successful job passes through (scheduled, failed, cancelled,
expired), so that listing them does not walk every job, and ``bytask:<task>``,
``byqueue:<queue>`` (lexical) for listing by task or queue (and, merged, for listing every
job); ``counts`` a hash ``state|queue -> n``; ``events`` the change feed (a capped stream,
one entry per script, ids from ``event_id``) and ``stats`` the per-task counters (see
``feed.py``); ``keys`` and ``unique`` the idempotency and uniqueness indexes;
``waiters:<queue>`` idle workers' waiter ids and ``wake:<waiter>`` the list each blocks on;
``workers``, ``workers_seen``,
``schedule:<name>``, ``schedules``, ``queues`` (those that had scheduled jobs), ``token``,
``beats`` (the store-wide heartbeat record: ``quiet_after``, ``stall_until``), ``layout``
(the layout's version: ``layout.py``); and the limits' keys (``limits``, ``slots:``,
``starts:``, ``held:``, ``limit_wake``, ``limit_refs``: see ``limiting.lua``). Leases are
stamped with the server's ``TIME``, read inside the script (one call per script).

The hot paths cost few commands per job: enqueue ``EXISTS`` and one HSET (the ready set
takes a batch in one ZADD); claim one HLEN, one HMGET and one HSET (per batch one EXISTS, a
ZRANGEBYSCORE per queue, one ZREM and one ZADD); finish one HMGET, one HLEN and one HSET
(one ZREM and ZADD per batch). HLEN tells a job that has none of the optional fields, which
are then not read by name (in a small hash, a field it has not set costs a scan of all of
it); a finish is sent the queue, task and start time of the runs this backend claimed, and
reads only the state and token that fence it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

import redis

from conveyor.backends.base import (
    Backend,
    HeartbeatResult,
    RecoveredJob,
    SweepResult,
    WorkerInfo,
    worker_lost_error,
)
from conveyor.backends.redis import layout
from conveyor.backends.redis.codec import decode_fields, decode_record, one_args, pack_records
from conveyor.backends.redis.connection import RETRYABLE, Connection, safe_url
from conveyor.backends.redis.feed import Feed
from conveyor.backends.redis.listener import Listener
from conveyor.backends.redis.records import Records, worker_json
from conveyor.backends.redis.runs import Held, decode_claims, pack_outcomes
from conveyor.backends.redis.waiting import Waiting
from conveyor.errors import BackendUnavailable, ConfigurationError
from conveyor.job import Claim, JobRecord, Outcome, Progress, State

log = logging.getLogger("conveyor.backends.redis")

STALE_WORKER_SECONDS = 3600.0
BATCH = 1000  # jobs per script in sweeps and purges: keeps each script short
_CRASHES_MARK = 987654321  # stands for the crash count in the WorkerLost template
#: runs held for their finish (see _held_runs) past which the held ones are forgotten: a worker
#: holds a few hundred at most, and a run released, lost or finished elsewhere stays behind
HELD_MAX = 10_000


class RedisBackend(Feed, Waiting, Records, Backend):
    scheme = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "conveyor",
        retry_seconds: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(url, namespace=namespace, clock=clock)
        if not namespace or "{" in namespace or "}" in namespace:
            raise ConfigurationError(
                f"namespace {namespace!r} must be non-empty and free of braces: it becomes the "
                "Redis Cluster hash tag {namespace}"
            )
        self._prefix = f"{{{namespace}}}:"
        self._connection = Connection(
            url,
            self._prefix,
            retry_seconds=retry_seconds,
            on_connect=lambda client: layout.check(client, self._prefix, safe_url(url)),
        )
        self._call = self._connection.call
        self._run = self._connection.run
        self._listener = Listener(self._connection)
        self._local = threading.local()
        self._persistence_checked = False
        self._held: Held = {}

    @classmethod
    def migrate_store(cls, url: str, *, namespace: str = "conveyor") -> tuple[int, int] | None:
        checked = cls(url, namespace=namespace)  # the namespace's checks; it connects nowhere
        checked.close()
        return layout.migrate_store(url, checked._prefix)

    @property
    def retry_seconds(self) -> float:
        """How long a call retries a lost connection before BackendUnavailable."""
        return self._connection.retry_seconds

    @property
    def cluster(self) -> bool:
        """True when the backend talks to a Redis Cluster: named by the URL, or detected by a
        ``redis://`` URL at the first call (which this makes if none was made yet)."""
        return self._connection.cluster

    # -- plumbing --------------------------------------------------------------------------

    def set_call_timeout(self, seconds: float) -> None:
        self._connection.bound(seconds)

    def _stamped(self, name: str, build: Callable[[str], list[Any]]) -> Any:
        """Run a script that stamps leases. ``build`` makes its arguments from the clock
        argument: '' (the script reads the server's TIME when it runs), or this backend's
        test clock, read again on every attempt, so a retried call never reuses a stamp."""
        clock = self.clock
        if clock is None:
            return self._run(name, *build(""))
        return self._connection.run_built(name, lambda: build(repr(clock())))

    def check_persistence(self) -> bool:
        """Warn once (logging) when the server persists nothing, so a restart loses every
        job; True when it persists (or cannot tell: CONFIG may be disabled on managed
        servers)."""
        try:
            # on a Cluster: the node that holds the namespace
            node = self._connection.node
            raw: Any = self._call(lambda _: node().config_get("appendonly", "save"))
        except redis.ResponseError:
            return True
        config = {_text(k): _text(v) for k, v in raw.items()}
        if config.get("appendonly") == "yes" or config.get("save"):
            return True
        if not self._persistence_checked:
            self._persistence_checked = True
            log.warning(
                "Redis at %s persists nothing (appendonly no, no save points): a restart of "
                "the server loses every job. Set appendonly yes (appendfsync always loses "
                "nothing; everysec up to a second).",
                safe_url(self.url),
            )
        return False

    # -- enqueue ---------------------------------------------------------------------------

    def enqueue(self, records: Sequence[JobRecord]) -> list[JobRecord]:
        if not records:
            return []
        # the contract lets the inputs come back as they are: no copy per job
        one = one_args(records[0]) if len(records) == 1 else None
        if one:
            reply = self._run("enqueue", *one)
            return [records[0] if reply == 1 else decode_record(reply[0])]
        replies = self._run("enqueue", pack_records(records))
        return [
            record if reply == 1 else decode_record(reply)
            for record, reply in zip(records, replies, strict=True)
        ]

    def enqueue_workflow(
        self, workflow_id: str, records: Sequence[JobRecord], outputs: Collection[str]
    ) -> None:
        # One script for the whole workflow: no half of it is ever stored without the rest.
        jobs = json.dumps([[r.id, r.task, r.id in outputs] for r in records])
        self._run("enqueue_workflow", workflow_id, jobs, pack_records(records))

    def get_workflow(self, workflow_id: str) -> list[tuple[str, str, bool, State | None]] | None:
        flat = self._run("get_workflow", workflow_id)
        if not isinstance(flat, list):
            return None
        return [
            (
                flat[i].decode(),
                flat[i + 1].decode(),
                flat[i + 2] == b"1",
                State(flat[i + 3].decode()) if flat[i + 3] else None,
            )
            for i in range(0, len(flat), 4)
        ]

    # -- the worker's side -----------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        *,
        lease_seconds: float,
        now: float,
    ) -> list[Claim]:
        queues = list(dict.fromkeys(queues))
        if limit <= 0 or not queues:
            return []
        head = [worker_id, limit, repr(now), repr(float(lease_seconds))]
        t, flat = self._stamped("claim", lambda clock: [*head, clock, *queues])
        started = float(t)
        return decode_claims(
            flat, worker_id, started, started + lease_seconds, self._held_runs(), t
        )

    def _held_runs(self) -> Held:
        """The runs this backend claimed, for their finish (runs.py pack_outcomes): each
        finish sends their queue, task and start time rather than have the server read them
        from the job. Runs released, lost or finished elsewhere stay behind: past HELD_MAX
        they are all forgotten."""
        held = self._held
        if len(held) > HELD_MAX:
            held.clear()
        return held

    def heartbeat(
        self,
        worker: WorkerInfo,
        leases: Sequence[tuple[str, int]],
        *,
        lease_seconds: float,
        now: float,
    ) -> HeartbeatResult:
        worker.last_seen = now
        head: list[Any] = [repr(float(lease_seconds)), worker.id, worker_json(worker), repr(now)]
        pairs: list[Any] = []
        for job_id, token in leases:
            pairs += [job_id, str(token)]
        lost, cancel = self._stamped("heartbeat", lambda clock: [*head, clock, *pairs])
        return HeartbeatResult(_pairs(lost), _pairs(cancel))

    def set_progress(self, job_id: str, token: int, progress: Progress) -> bool:
        reply = self._run("progress", job_id, str(token), json.dumps(progress.to_json()))
        return bool(reply)

    def finish(self, job_id: str, token: int, outcome: Outcome, *, now: float) -> bool:
        return self.finish_many([(job_id, token, outcome)], now=now)[0]

    def finish_many(self, items: Sequence[tuple[str, int, Outcome]], *, now: float) -> list[bool]:
        if not items:
            return []
        packed = pack_outcomes(items, self._held)
        return [bool(r) for r in self._run("finish", repr(now), packed)]

    def finish_and_claim(
        self,
        items: Sequence[tuple[str, int, Outcome]],
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        *,
        lease_seconds: float,
        now: float,
    ) -> tuple[list[bool], list[Claim]]:
        # one script: the outcomes, then the claim (see base.py)
        queues = list(dict.fromkeys(queues))
        limit = limit if queues else 0
        if not items and limit <= 0:
            return [], []
        head = [repr(now), worker_id, max(limit, 0), repr(float(lease_seconds))]
        tail = [len(queues), *queues, pack_outcomes(items, self._held)]
        done, flat, t = self._stamped("finish_claim", lambda clock: [*head, clock, *tail])
        started = float(t) if t else now
        claims = decode_claims(
            flat, worker_id, started, started + lease_seconds, self._held_runs(), t
        )
        return list(map(bool, done)), claims

    def release(self, job_id: str, token: int, *, started: bool, now: float) -> bool:
        self._held.pop(job_id, None)
        reply = self._run("release", job_id, str(token), "1" if started else "0", repr(now))
        return bool(reply)

    def recover(self, *, now: float, max_crashes: int) -> list[RecoveredJob]:
        template = json.dumps(worker_lost_error(_CRASHES_MARK))
        out: list[RecoveredJob] = []
        args = [repr(now), max_crashes, template, BATCH]
        while True:
            flat = self._stamped("recover", lambda clock: [*args, clock])
            out += [
                RecoveredJob(flat[i].decode(), State(flat[i + 1].decode()))
                for i in range(0, len(flat), 2)
            ]
            if len(flat) < 2 * BATCH:
                return out

    def sweep(self, *, now: float) -> SweepResult:
        promoted = expired = purged = 0
        while True:
            p, e, d, full = self._run("sweep", repr(now), repr(now - STALE_WORKER_SECONDS), BATCH)
            promoted, expired, purged = promoted + p, expired + e, purged + d
            if not full:
                return SweepResult(promoted, expired, purged)

    # -- the user's side -------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        raw: Any = self._call(lambda c: c.hgetall(f"{self._prefix}job:{job_id}"))
        if not raw:
            return None
        return decode_fields(raw)

    def list_jobs(
        self,
        *,
        state: State | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[JobRecord]:
        out: list[JobRecord] = []
        resume = cursor or ""
        while len(out) < limit:
            rows, resume = self._run(
                "list",
                "" if state is None else state.value,
                task or "",
                queue or "",
                limit - len(out),
                resume,
            )
            out += [decode_record(row) for row in rows]
            resume = resume.decode() if isinstance(resume, bytes) else resume
            if not resume:
                break
        return out

    def queue_counts(self) -> dict[str, dict[State, int]]:
        raw: Any = self._call(lambda c: c.hgetall(f"{self._prefix}counts"))
        counts: dict[str, dict[State, int]] = {}
        for field, n in raw.items():
            state, _, queue = field.decode().partition("|")
            if int(n) > 0:
                counts.setdefault(queue, {})[State(state)] = int(n)
        return counts

    def cancel(self, job_id: str, *, now: float) -> bool:
        return bool(self._run("cancel", job_id, repr(now)))

    def retry(self, job_id: str, *, now: float) -> bool:
        return bool(self._run("retry", job_id, repr(now)))

    def purge_queue(self, queue: str) -> int:
        total = 0
        while True:
            n = int(self._run("purge_queue", queue, BATCH))
            total += n
            if n < BATCH:
                return total

    def ping(self) -> bool:
        try:
            return bool(self._connection.node().ping())
        except (*RETRYABLE, redis.RedisError, BackendUnavailable, ConfigurationError):
            return False

    def close(self) -> None:
        self._listener.close()
        self._connection.close()


def _pairs(flat: Sequence[bytes]) -> frozenset[tuple[str, int]]:
    return frozenset((flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
