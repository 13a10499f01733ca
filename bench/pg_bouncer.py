"""``python -m bench.pg_bouncer [PGBOUNCER]``: what works through PgBouncer in transaction
mode (docs/postgres.md), checked on a throwaway PostgreSQL and a throwaway PgBouncer in front
of it. PGBOUNCER is the binary (default: ``pgbouncer`` on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

import conveyor
from bench.postgres_server import PostgresServer
from bench.redis_server import free_port
from conveyor.backends.postgres import PostgresBackend
from conveyor.job import JobRecord

NS = "bouncer"


def record(queue: str = "default") -> JobRecord:
    now = time.time()
    return JobRecord(conveyor.job.IdGenerator()(), "t", b"[[],{}]", queue=queue,
                     created_at=now, ready_at=now)  # fmt: skip


def start_bouncer(binary: str, server: PostgresServer, directory: Path) -> tuple[str, object]:
    port = free_port()
    (directory / "users.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\npostgres = host=127.0.0.1 port={server.port} dbname=postgres\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory}/users.txt\npool_mode = transaction\n"
        f"default_pool_size = 10\nlogfile = {directory}/pgbouncer.log\n"
    )
    user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    if user:
        for path in (directory, *directory.iterdir()):
            shutil.chown(path, "postgres", "postgres")
    proc = subprocess.Popen(  # type: ignore[call-overload]
        [binary, "-q", str(directory / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **user,
    )
    time.sleep(1.0)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", proc


def wake_time(waiter: PostgresBackend, enqueuer: PostgresBackend, queue: str) -> float:
    """Seconds until an enqueue by ``enqueuer`` wakes ``waiter``'s wait_for_jobs (3: never)."""
    waiter.claim("w", [queue], 1, lease_seconds=30, now=time.time())  # listens, if it does
    took: list[float] = []
    started = time.monotonic()
    thread = threading.Thread(
        target=lambda: (waiter.wait_for_jobs([queue], 3.0), took.append(time.monotonic()))
    )
    thread.start()
    time.sleep(0.2)
    sent = time.monotonic()
    enqueuer.enqueue([record(queue)])
    thread.join()
    return took[0] - max(sent, started)


NEVER = 2.5  # the wait is 3 s from before the enqueue: this long means no notification came


def check(label: str, step: Callable[[], str]) -> None:
    try:
        print(f"{label:<58} {step()}", flush=True)
    except Exception as exc:
        print(f"{label:<58} FAILS: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")


def main(argv: list[str]) -> int:
    binary = shutil.which(argv[0] if argv else "pgbouncer") or (argv[0] if argv else "")
    if not binary or not os.path.exists(binary):
        print("no pgbouncer binary: python -m bench.pg_bouncer /path/to/pgbouncer")
        return 2
    with PostgresServer() as server, tempfile.TemporaryDirectory() as tmp:
        bouncer, proc = start_bouncer(binary, server, Path(tmp))
        version = subprocess.run([binary, "--version"], capture_output=True, text=True)
        print(f"PostgreSQL {server.version}; {version.stdout.splitlines()[0]}, transaction mode")
        direct = PostgresBackend(server.url, namespace=NS)

        def many(url: str) -> str:
            backend = PostgresBackend(url, namespace=NS, retry_seconds=2)
            try:
                for _ in range(20):  # psycopg prepares a statement after its 5th run
                    backend.enqueue([record()])
                    backend.list_jobs(limit=1)
                return "works"
            finally:
                backend.close()

        def listen(url: str) -> str:
            backend = PostgresBackend(url, namespace=NS)
            try:
                took = wake_time(backend, direct, "listen")
            finally:
                backend.close()
            return "never woken (polls)" if took >= NEVER else f"woken in {took * 1000:.0f} ms"

        def notify() -> str:
            backend = PostgresBackend(bouncer + "?prepared=off", namespace=NS)
            try:
                took = wake_time(direct, backend, "notify")
            finally:
                backend.close()
            return "never woken" if took >= NEVER else f"woken in {took * 1000:.0f} ms"

        def transactional() -> str:
            app = conveyor.App(bouncer + "?prepared=off", namespace=NS)
            add = app.task(name="bench.add")(lambda x, y: x + y)
            try:
                with psycopg.connect(bouncer, prepare_threshold=None) as conn:
                    job = add.apply_async((1, 2), connection=conn)
                    conn.rollback()
                    gone = app.backend.get(job.id) is None
                    job = add.apply_async((1, 2), connection=conn)
                return "works" if gone and app.backend.get(job.id) is not None else "wrong"
            finally:
                app.close()

        check("statements, default URL", lambda: many(bouncer))
        check("statements, ?prepared=off", lambda: many(bouncer + "?prepared=off"))
        check(
            "LISTEN through PgBouncer (worker wake-up)", lambda: listen(bouncer + "?prepared=off")
        )
        check("LISTEN straight to PostgreSQL", lambda: listen(server.url))
        check("NOTIFY sent through PgBouncer, heard directly", notify)
        check("transactional enqueue through PgBouncer", transactional)
        direct.close()
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait(10)  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
