"""Turning calls into job records and writing them: the ``Dispatcher`` that tasks call.
Apart from the composition root because its rules (when a job is due, which limits it
counts against, eager runs, the warning about an unserved queue) change on their own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime
from typing import Any

from conveyor.app.handles import Handles
from conveyor.app.limits import Limits
from conveyor.job import Claim, IdGenerator, Job, JobRecord, Outcome, State
from conveyor.limits import META_FIELD
from conveyor.registry import Registry
from conveyor.schedule import PeriodicSpec
from conveyor.serialization import encode_call
from conveyor.task import CallOptions, Signature, TaskOptions

#: a context-manager function entered around every write of new jobs (``app.around_enqueue``)
AroundEnqueue = Callable[[Sequence[JobRecord]], AbstractContextManager[Any]]

log = logging.getLogger("conveyor.app")

#: a worker not seen for longer than this no longer counts as serving its queues
LIVE_WORKER_SECONDS = 60.0


class Enqueueing(Limits, Handles):
    registry: Registry
    _ids: IdGenerator
    _queues_checked: set[str]
    _enqueue_hooks: list[AroundEnqueue]

    def _around_enqueue(self, records: Sequence[JobRecord]) -> ExitStack:
        """The ``around_enqueue`` hooks entered for one write (none: an empty stack)."""
        stack = ExitStack()
        with stack:
            for hook in self._enqueue_hooks:
                stack.enter_context(hook(records))
            return stack.pop_all()

    def _options(self, task: str) -> TaskOptions:
        found = self.registry.find(task)
        return found.options if found is not None else TaskOptions(task)

    def make_record(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        call: CallOptions,
        *,
        now: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> JobRecord:
        """A new job's record; unserialisable arguments raise SerializationError here."""
        opts = self._options(task)
        if now is None:
            # whole microseconds: the Redis backend writes such a time without dtoa
            now = time.time_ns() // 1000 / 1e6
        payload = encode_call(self.serializer, args, kwargs)
        if call.countdown is not None:
            ready_at = now + call.countdown
        elif isinstance(call.eta, datetime):
            ready_at = call.eta.timestamp()
        elif call.eta is not None:
            ready_at = float(call.eta)
        else:
            ready_at = now
        expires = call.expires if call.expires is not None else opts.expires
        if opts.rate_limit is not None or opts.concurrency is not None or opts.limits:
            meta = {**(meta or {}), META_FIELD: self._refs(opts, args, kwargs)}
        unique_key = None
        if opts.unique:
            import hashlib  # here: OpenSSL costs a worker that has no unique tasks ~4 MB

            unique_key = f"{task}:{hashlib.sha256(payload).hexdigest()}"
        # positional, in JobRecord's order: keywords cost a dict per record
        return JobRecord(
            self._ids(), task, payload, call.queue or opts.queue,
            opts.priority if call.priority is None else call.priority,
            State.SCHEDULED if ready_at > now else State.QUEUED, call.key, unique_key,
            0, 0, 0, now, ready_at, None if expires is None else now + expires,
            None, None, None, opts.result_ttl, None, None, None, None, 0, None, False,
            meta or {},
        )  # fmt: skip

    def submit(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        connection: Any = None,
        meta: dict[str, Any] | None = None,
    ) -> Job:
        record = self.make_record(task, args, kwargs, options, meta=meta)
        if self.settings.eager:
            return self._run_eagerly(record)
        if connection is None and not self._enqueue_hooks:  # delay(): straight to the store
            [stored] = self.backend.enqueue([record])
        else:
            [stored] = self._enqueue([record], connection)
        if record.queue not in self._queues_checked:
            self._check_served(record.queue)
        return Job(self, stored.id, stored.task)

    def _enqueue(self, records: list[JobRecord], connection: Any = None) -> list[JobRecord]:
        """Into the store, or into the caller's transaction on ``connection``; inside the
        ``around_enqueue`` hooks, if any."""
        if not self._enqueue_hooks:
            return self._write(records, connection)
        with self._around_enqueue(records):
            return self._write(records, connection)

    def _write(self, records: list[JobRecord], connection: Any) -> list[JobRecord]:
        if connection is None:
            return self.backend.enqueue(records)
        return self.backend.enqueue_with(connection, records)

    async def asubmit(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        meta: dict[str, Any] | None = None,
    ) -> Job:
        record = self.make_record(task, args, kwargs, options, meta=meta)  # errors here
        if self.settings.eager:
            return self._run_eagerly(record)
        import asyncio  # here, not at the top: a worker without async code never loads it

        stored = (await asyncio.to_thread(self._enqueue, [record]))[0]
        if record.queue not in self._queues_checked:
            await asyncio.to_thread(self._check_served, record.queue)
        return Job(self, stored.id, stored.task)

    def enqueue_many(
        self, signatures: Iterable[Signature], *, batch_size: int = 1000, connection: Any = None
    ) -> list[Job]:
        """Enqueue many signatures, one backend round trip per batch of ``batch_size``;
        with ``connection``, inside the caller's transaction (see ``Task.apply_async``)."""
        jobs: list[Job] = []
        batch: list[JobRecord] = []
        now = time.time()

        def flush() -> None:
            if self.settings.eager:
                jobs.extend(self._run_eagerly(r) for r in batch)
            else:
                jobs.extend(Job(self, r.id, r.task) for r in self._enqueue(batch, connection))
            batch.clear()

        for sig in signatures:
            batch.append(self.make_record(sig.task, sig.args, sig.kwargs, sig.options, now=now))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        return jobs

    def unserved_queues(self, queues: Iterable[str], *, now: float | None = None) -> list[str]:
        """Those of ``queues`` that no live worker (seen within LIVE_WORKER_SECONDS) serves:
        their jobs wait until one does."""
        since = (time.time() if now is None else now) - LIVE_WORKER_SECONDS
        served = {q for w in self.backend.list_workers() if w.last_seen >= since for q in w.queues}
        return [q for q in queues if q not in served]

    def _check_served(self, queue: str) -> None:
        """Warn, once per queue and app, when a job goes to a queue no live worker serves (a
        typo such as 'reprots' otherwise costs hours). Asked once, so delay() stays fast."""
        self._queues_checked.add(queue)
        try:
            unserved = self.unserved_queues([queue])
        except Exception:  # a store that cannot list workers must not fail an enqueue
            return
        if unserved:
            log.warning(
                "no live worker serves queue %r: its jobs wait until one does (check the "
                "name, or start one: conveyor -A module:app worker -Q %s)",
                queue,
                queue,
            )

    def periodic_record(self, spec: PeriodicSpec, due: float) -> JobRecord:
        """The job a periodic task's due time enqueues."""
        return self.make_record(
            spec.task_name,
            spec.args,
            spec.kwargs,
            CallOptions(),
            meta={"periodic": spec.task_name, "due": due},
        )

    def _run_eagerly(self, record: JobRecord) -> Job:
        """``eager=True``: run the job here and now, retries included (without waiting)."""
        from conveyor.worker.execute import JobExecutor

        executor = JobExecutor(self.registry, self.serializer, lambda *a: None)
        record.state, record.attempts = State.RUNNING, 0
        while True:
            record.attempts += 1
            run = executor.prepare(Claim(record, record.attempts))
            outcome = run.early or executor.call_sync(run) or Outcome.cancelled()
            if outcome.state.is_final:
                break
            record.failures += 1
            record.error = outcome.error
        now = time.time()
        record.state, record.result, record.error = outcome.state, outcome.result, outcome.error
        record.started_at, record.finished_at = record.created_at, now
        record.purge_at = now + record.result_ttl
        stored = self.backend.enqueue([record])[0]
        return Job(self, stored.id, stored.task)
