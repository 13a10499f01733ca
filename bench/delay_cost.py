"""``python -m bench.delay_cost``: CPU instructions per ``delay()``, conveyor against Huey,
under ``valgrind --tool=callgrind``: a count that machine noise cannot move, for the enqueue
path as ``bench.like --instructions`` is for the worker. Both sides of the round trip are
counted, apart: the client's process, and the ``redis-server`` (which shares the machine's
cores with the clients and runs every script).

Each target runs in a process of its own, on a server of its own: it opens its store and
warms up (imports, the connection, the scripts loaded), then instrumentation is switched on
in both processes for exactly ``--jobs`` single enqueues, and off again. ``--keep DIR`` keeps
callgrind's files, for where the instructions go (``callgrind_annotate --inclusive=yes``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import callgrind
from bench.core import Target
from bench.redis_server import RedisServer
from bench.systems import load

TARGETS = ("conveyor/redis", "huey/redis")
WARMUP = 200


def find(name: str, redis_url: str) -> Target:
    [target] = [t for t in load(name.split("/", 1)[0]).targets() if t.name == name]
    target.redis_url = redis_url
    return target


def child(name: str, redis_url: str, jobs: int) -> int:
    """In the measured process: warm up, then ``jobs`` enqueues between two handshakes."""
    target = find(name, redis_url)
    with tempfile.TemporaryDirectory(prefix="conveyor-delay-cost-") as workdir:
        target.fresh(Path(workdir))
        for _ in range(WARMUP):
            target.enqueue_one()
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(jobs):
            target.enqueue_one()
        print("done", flush=True)
        sys.stdin.readline()
        target.close()
    return 0


def count(name: str, jobs: int, workdir: Path) -> tuple[float, float]:
    """Instructions per delay(): the client's, the server's."""
    tag = f"{name.replace('/', '-')}-{os.urandom(3).hex()}"
    client_out, server_out = workdir / f"client-{tag}.out", workdir / f"server-{tag}.out"
    with RedisServer(prefix=callgrind.prefix(server_out)) as server:
        command = [*callgrind.prefix(client_out), sys.executable, "-m", "bench.delay_cost",
                   "--child", name, server.url, str(jobs)]  # fmt: skip
        callgrind.handshake(command, name, others=(server.pid,), wait=120)
    return callgrind.totals(client_out) / jobs, callgrind.totals(server_out) / jobs


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2], int(argv[3]))
    parser = argparse.ArgumentParser(prog="python -m bench.delay_cost", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="delay() calls counted")
    parser.add_argument("--target", action="append", help="only targets whose name has this")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep callgrind's files here, to read with callgrind_annotate --inclusive=yes",
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is not installed")
    names = [n for n in TARGETS if not args.target or any(t in n for t in args.target)]
    print(f"instructions per delay(), {args.jobs:,} calls: client, server, total", flush=True)
    with tempfile.TemporaryDirectory(prefix="conveyor-delay-cost-") as workdir:
        where = Path(workdir) if args.keep is None else args.keep
        where.mkdir(parents=True, exist_ok=True)
        for name in names:
            client, server = count(name, args.jobs, where)
            print(f"{name:16} {client:10,.0f} {server:10,.0f} {client + server:10,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
