"""Cluster-wide limits on SQLite: the claim's admission step, and the limits' own calls.

Everything here runs inside the caller's write transaction (``BEGIN IMMEDIATE``), so the
check of a limit and the claim it admits are one atomic step for every process on the file.
The statements are in ``limits.sql``, which also says how held jobs are parked.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.limits import (
    MAX_PERIOD_SECONDS,
    LimitInfo,
    LimitSpec,
    LimitUse,
    free_permits,
    limit_info,
)

#: parked jobs brought back per ref and claim; and wake rows looked at per claim
UNPARK_BATCH = 100
WAKE_BATCH = 20
#: jobs one claim may park before it stops looking (it claims what it found so far)
PARK_BATCH = 1000
SEP = "\x1f"

#: a ready job: id, priority, ready_at, meta, its flags (rows.RARE_FLAG, and ready_first's),
#: then the rest of its record that the claim needs (rows.READY, rows.from_ready)
Row = tuple[Any, ...]


def ref_of(name: str, key: str) -> str:
    return f"{name}{SEP}{key}"


def refs_in(meta: str) -> list[str]:
    """The refs of a job from its meta column; the substring test keeps the JSON parse off
    the path of jobs without limits."""
    if '"limits"' not in meta:
        return []
    return [ref_of(name, key) for name, key in json.loads(meta).get("limits") or ()]


def spec_from_row(name: str, row: Sequence[object]) -> LimitSpec:
    count, seconds, concurrency = row
    raw = {"rate_count": count, "rate_seconds": seconds, "concurrency": concurrency}
    return LimitSpec.from_json(name, raw)


@dataclass(slots=True)
class _Use:
    running: int
    started: int
    first_lease_end: float  # the earliest a slot can free without a finish (inf: none)
    oldest_start: float  # the earliest start in the window (inf: none)


class Gate:
    """One claim's view of the limits: their specs and each ref's use, read once per claim
    (pruning what no longer counts) and counted on as this claim takes jobs."""

    def __init__(
        self, conn: sqlite3.Connection, sql: Mapping[str, str], now: float, lease: float
    ) -> None:
        self.conn, self.sql, self.now, self.lease = conn, sql, now, lease
        self._specs: dict[str, LimitSpec | None] = {}
        self._uses: dict[str, _Use] = {}
        self.taken: list[tuple[str, list[str]]] = []  # job id, refs
        self.parked = 0

    def spec(self, ref: str) -> LimitSpec | None:
        name = ref.partition(SEP)[0]
        if name not in self._specs:
            row = self.conn.execute(self.sql["limit_get"], (name,)).fetchone()
            self._specs[name] = None if row is None else spec_from_row(name, row)
        return self._specs[name]

    def use(self, ref: str, spec: LimitSpec) -> _Use:
        use = self._uses.get(ref)
        if use is not None:
            return use
        running, first_end = 0, float("inf")
        params = {"ref": ref, "now": self.now}
        for job_id, lease_end, live in self.conn.execute(self.sql["limit_slots"], params):
            if live:
                running += 1
                first_end = min(first_end, lease_end)
            else:
                self.conn.execute(self.sql["limit_drop_slot"], {"ref": ref, "job_id": job_id})
        started, oldest = 0, float("inf")
        if spec.rate is not None:
            since = {"ref": ref, "since": self.now - spec.rate.per_seconds}
            self.conn.execute(self.sql["limit_forget_starts"], since)
            started, first = self.conn.execute(self.sql["limit_starts"], {"ref": ref}).fetchone()
            oldest = float("inf") if first is None else first
        use = self._uses[ref] = _Use(running, started, first_end, oldest)
        return use

    def free(self, ref: str) -> int | None:
        """Jobs the ref admits now; None when its limit is not stored (no limit)."""
        spec = self.spec(ref)
        if spec is None:
            return None
        use = self.use(ref, spec)
        return free_permits(spec, use.running, use.started)

    def blocking(self, refs: Iterable[str]) -> str | None:
        """The first ref that admits no more jobs now, or None when all admit one."""
        for ref in refs:
            if self.free(ref) == 0:
                return ref
        return None

    def take(self, job_id: str, refs: list[str]) -> None:
        for ref in refs:
            use = self._uses.get(ref)
            if use is not None:
                use.running += 1
                use.started += 1
                use.first_lease_end = min(use.first_lease_end, self.now + self.lease)
                use.oldest_start = min(use.oldest_start, self.now)
        self.taken.append((job_id, refs))

    def next_chance(self, ref: str) -> float:
        """When a saturated ref may admit again without a finish: its first lease to run
        out, the oldest start to leave the window, whichever of them blocks last."""
        spec = self.spec(ref)
        if spec is None:
            return self.now
        use = self.use(ref, spec)
        at = self.now
        if spec.concurrency is not None and use.running >= spec.concurrency:
            at = max(at, use.first_lease_end)
        if spec.rate is not None and use.started >= spec.rate.count:
            at = max(at, use.oldest_start + spec.rate.per_seconds)
        return at

    def park(self, job_id: str, ref: str) -> int:
        """Park a held queued job (1); a scheduled one is passed by, not parked (0)."""
        if self.conn.execute(self.sql["limit_park"], {"ref": ref, "id": job_id}).rowcount:
            self.parked += 1
            at = {"ref": ref, "at": self.next_chance(ref)}
            self.conn.execute(self.sql["limit_wake_at"], at)
            return 1
        return 0

    def unpark_due(self) -> None:
        """Parked jobs of refs whose wake time came go back to the ready index, as many as
        each ref admits now; the ref's wake row then says when to look again."""
        params = {"now": self.now, "limit": WAKE_BATCH}
        for (ref,) in self.conn.execute(self.sql["limits_due"], params).fetchall():
            free = self.free(ref)
            n = UNPARK_BATCH if free is None else min(free, UNPARK_BATCH)
            moved = 0
            if n > 0:
                moved = self.conn.execute(
                    self.sql["limit_unpark"], {"ref": ref, "limit": n}
                ).rowcount
            if not self.conn.execute(self.sql["limit_has_parked"], {"ref": ref}).fetchone():
                self.conn.execute(self.sql["limit_wake_drop"], {"ref": ref})
            else:
                # Brought some back: look again next claim (they may be held elsewhere);
                # else the ref is saturated until a finish or the time it frees by itself.
                at = self.now if moved else self.next_chance(ref)
                self.conn.execute(self.sql["limit_wake_set"], {"ref": ref, "at": at})

    def record(self, tokens: Mapping[str, int]) -> None:
        """After the claim's UPDATE: the slots (with the claims' tokens) and starts."""
        for job_id, refs in self.taken:
            for ref in refs:
                slot = {"ref": ref, "job_id": job_id, "token": tokens[job_id]}
                self.conn.execute(self.sql["limit_take_slot"], slot)
                spec = self.spec(ref)
                if spec is not None and spec.rate is not None:  # starts count for rates
                    self.conn.execute(self.sql["limit_start"], {"ref": ref, "now": self.now})


def admit(
    gate: Gate,
    rows: list[Row],
    limit: int,
    more: Callable[[int], list[Row]],
) -> list[Row]:
    """The rows to claim, best first: jobs without limits as they come, limited ones when
    every ref admits them; the others are parked, and the ready index is read again (they
    left it) until ``limit`` jobs are found, nothing more was parked, or a batch was."""
    taken: list[Row] = []
    chosen: set[str] = set()
    parked = 0
    while True:
        parked_now = 0
        for row in rows:
            job_id, meta = row[0], row[3]
            if job_id in chosen:
                continue
            refs = refs_in(meta)
            blocked = gate.blocking(refs) if refs else None
            if blocked is not None:
                parked_now += gate.park(job_id, blocked)
                continue
            if refs:
                gate.take(job_id, refs)
            taken.append(row)
            chosen.add(job_id)
            if len(taken) >= limit:
                return taken
        parked += parked_now
        if not parked_now or parked >= PARK_BATCH:
            return taken
        rows = more(limit + len(taken))


def release(conn: sqlite3.Connection, sql: Mapping[str, str], ids: list[str]) -> bool:
    """Free the slots of claims that ended; True when a ref with parked jobs was woken."""
    refs = {ref for (ref,) in conn.execute(sql["limit_release"], {"ids": json.dumps(ids)})}
    woken = False
    for ref in refs:
        woken |= conn.execute(sql["limit_wake_now"], {"ref": ref}).rowcount > 0
    return woken


def set_limit(conn: sqlite3.Connection, sql: Mapping[str, str], spec: LimitSpec) -> None:
    conn.execute(sql["limit_put"], {"name": spec.name, **spec.to_json()})
    # Held jobs are looked at again under the new numbers by the next claim.
    bounds = {"low": spec.name + SEP, "high": spec.name + chr(ord(SEP) + 1)}
    conn.execute(sql["limit_wake_name"], bounds)


def limits(gate: Gate) -> list[LimitInfo]:
    conn, sql = gate.conn, gate.sql
    by_name: dict[str, list[str]] = {}
    for (ref,) in conn.execute(sql["limit_refs"]).fetchall():
        by_name.setdefault(ref.partition(SEP)[0], []).append(ref)
    out = []
    for name, *row in conn.execute(sql["limit_all"]).fetchall():
        spec = spec_from_row(name, row)
        uses = []
        for ref in by_name.get(name, []):
            use = gate.use(ref, spec)
            uses.append(LimitUse(ref.partition(SEP)[2], use.running, use.started))
        out.append(limit_info(spec, uses))
    return out


def sweep(conn: sqlite3.Connection, sql: Mapping[str, str], now: float) -> None:
    """Starts older than any window, and slots of jobs that no longer run."""
    conn.execute(sql["limit_sweep_starts"], {"before": now - MAX_PERIOD_SECONDS})
    conn.execute(sql["limit_sweep_slots"])
