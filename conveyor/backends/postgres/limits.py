"""Cluster-wide limits on PostgreSQL: the claim once any limit is stored, in one transaction.

Each ref ``(limit, key)`` a candidate counts against is locked (a transaction-level advisory
lock) before it is counted, so two claims never admit past a limit together: the second
waits for the first's commit and then counts its claims. A held queued job is *parked*: its
``parked`` column names the ref that holds it, which takes it out of the claim's index, so
later claims do not walk past it again; the claim brings parked jobs back, as many as their
ref admits, before it looks for candidates. A held scheduled job is passed by (sweep makes it
queued, then it is parked like the others).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from conveyor.limits import MAX_PERIOD_SECONDS, LimitInfo, LimitSpec, LimitUse, free_permits
from conveyor.limits import limit_info as make_info

Conn = psycopg.Connection[Any]
SEP = "\x1f"
#: jobs one claim may park before it stops looking (it claims what it found so far)
PARK_BATCH = 1000


def ref_text(name: str, key: str) -> str:
    return f"{name}{SEP}{key}"


def specs(conn: Conn, sql: Mapping[str, str]) -> dict[str, LimitSpec]:
    rows = conn.execute(sql["limit_specs"]).fetchall()
    return {
        name: LimitSpec.from_json(
            name, {"rate_count": count, "rate_seconds": seconds, "concurrency": concurrency}
        )
        for name, count, seconds, concurrency in rows
    }


class Gate:
    """The permits of the refs one claim looks at, each counted once, under its lock."""

    def __init__(self, conn: Conn, sql: Mapping[str, str], namespace: str, t: float) -> None:
        self.conn, self.sql, self.namespace, self.t = conn, sql, namespace, t
        self.specs = specs(conn, sql)
        self._free: dict[str, int] = {}

    def free(self, name: str, key: str) -> int:
        ref = ref_text(name, key)
        if ref not in self._free:
            spec = self.specs[name]
            self.conn.execute(self.sql["limit_lock"], {"lock": f"{self.namespace}{SEP}{ref}"})
            params = {"t": self.t, "name": name, "key": key}
            running = self._count("limit_running", params)
            started = 0
            if spec.rate is not None:
                params["seconds"] = spec.rate.per_seconds
                started = self._count("limit_started", params)
            self._free[ref] = free_permits(spec, running, started)
        return self._free[ref]

    def _count(self, name: str, params: dict[str, Any]) -> int:
        row = self.conn.execute(self.sql[name], params).fetchone()
        return int(row[0]) if row else 0

    def admit(self, refs: list[tuple[str, str]]) -> str | None:
        """Take a permit of every stored ref, or none: None when admitted, else the ref that
        holds the job back."""
        stored = [(n, k) for n, k in refs if n in self.specs]
        for name, key in sorted(stored):
            if self.free(name, key) <= 0:
                return ref_text(name, key)
        for name, key in stored:
            self._free[ref_text(name, key)] -= 1
        return None

    def unpark(self) -> None:
        """Bring back parked jobs, as many per ref as it admits now."""
        for (ref,) in self.conn.execute(self.sql["limit_parked_refs"]).fetchall():
            name, _, key = ref.partition(SEP)
            n = self.free(name, key) if name in self.specs else PARK_BATCH
            if n > 0:
                self.conn.execute(self.sql["limit_unpark"], {"ref": ref, "n": n})


def claim(
    conn: Conn,
    sql: Mapping[str, str],
    namespace: str,
    params: Mapping[str, Any],
    t: float,
) -> list[tuple[Any, ...]]:
    """The limited claim, inside the caller's transaction: the claimed rows."""
    gate = Gate(conn, sql, namespace, t)
    gate.unpark()
    limit = int(params["limit"])
    admitted: list[str] = []
    starts: list[tuple[str, str]] = []
    passed: list[str] = []  # held scheduled jobs: left where they are
    parked = 0
    while len(admitted) < limit:
        skip = admitted + passed  # locked by this transaction already: SKIP LOCKED keeps them
        look = {**params, "limit": limit - len(admitted), "skip": skip}
        rows = conn.execute(sql["limit_candidates"], look).fetchall()
        parked_now = passed_now = 0
        for job_id, state, raw in rows:
            refs = [(str(n), str(k)) for n, k in raw] if raw else []
            blocked = gate.admit(refs)
            if blocked is None:
                admitted.append(job_id)
                starts += [(n, k) for n, k in refs if n in gate.specs and gate.specs[n].rate]
            elif state == "queued":
                conn.execute(sql["limit_park"], {"ref": blocked, "id": job_id})
                parked_now += 1
            else:
                passed.append(job_id)
                passed_now += 1
        parked += parked_now
        if not rows or parked >= PARK_BATCH or not (parked_now or passed_now):
            break
    if not admitted:
        return []
    claim_params = {**params, "ids": admitted, "t": t}
    claimed = conn.execute(sql["limit_claim"], claim_params).fetchall()
    if starts:
        names = [n for n, _ in starts]
        keys = [k for _, k in starts]
        conn.execute(sql["limit_note_starts"], {"t": t, "names": names, "keys": keys})
    return claimed


def set_limit(conn: Conn, sql: Mapping[str, str], spec: LimitSpec) -> None:
    conn.execute(sql["limit_put"], {"name": spec.name, **spec.to_json()})


def limits(conn: Conn, sql: Mapping[str, str], t: float) -> list[LimitInfo]:
    known = specs(conn, sql)
    running: dict[tuple[str, str], int] = {}
    started: dict[tuple[str, str], int] = {}
    for name, key, n in conn.execute(sql["limit_uses"], {"t": t}).fetchall():
        running[(name, key)] = int(n)
    for name, key, n in conn.execute(sql["limit_started_all"], {"t": t}).fetchall():
        started[(name, key)] = int(n)
    out = []
    for name in sorted(known):
        keys = {k for n, k in (*running, *started) if n == name}
        uses = [
            LimitUse(k, running.get((name, k), 0), started.get((name, k), 0)) for k in sorted(keys)
        ]
        out.append(make_info(known[name], uses))
    return out


def prune(conn: Conn, sql: Mapping[str, str], t: float) -> None:
    conn.execute(sql["limit_prune"], {"before": t - MAX_PERIOD_SECONDS})


__all__ = ["PARK_BATCH", "claim", "limits", "prune", "set_limit"]
