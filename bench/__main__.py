"""``python -m bench [--quick] [--only NAME] [--system NAME[/STORE]] [--target TEXT]``: see
bench/RESULTS.md. Systems whose package is not installed are skipped with a note."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import plot, report
from bench.core import Target
from bench.measures import COVERED, FULL, MEASURES, QUICK, Context
from bench.redis_server import RedisServer
from bench.runner import run
from bench.systems import POSTGRES, SYSTEMS, load

HERE = Path(__file__).resolve().parent


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run, one repetition")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(MEASURES),
        help="run only this measurement (repeatable)",
    )
    parser.add_argument(
        "--target",
        action="append",
        help="run only targets whose name contains this (repeatable), e.g. sqlite-normal",
    )
    parser.add_argument(
        "--system",
        action="append",
        help=f"a system ({', '.join(s for s in SYSTEMS if s not in POSTGRES)}) or one target "
        "of it (conveyor/sqlite-normal); repeatable; default all",
    )
    parser.add_argument("--out", type=Path, default=HERE / "out", help="directory for raw JSON")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary stores")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md")
    return parser.parse_args(argv)


def select(systems: list[str] | None, texts: list[str] | None) -> list[Target]:
    """The targets asked for; a system whose package is missing is skipped with a note."""
    wanted = systems or [s for s in SYSTEMS if s not in POSTGRES]
    targets: list[Target] = []
    for system in dict.fromkeys(w.split("/", 1)[0] for w in wanted):
        try:
            module = load(system)
        except ImportError as exc:
            print(f"skipping {system}: {exc}", file=sys.stderr)
            continue
        for target in module.targets():
            if target.needs_postgres:  # this bench starts no PostgreSQL
                print(f"skipping {target.name}: python -m bench.like runs it", file=sys.stderr)
            elif system in wanted or target.name in wanted:
                targets.append(target)
    if texts:
        targets = [t for t in targets if any(s in t.name for s in texts)]
    return targets


def main(argv: list[str]) -> int:
    args = parse(argv)
    sizes = QUICK if args.quick else FULL
    measures = args.only or [m for m in MEASURES if m not in COVERED]
    targets = select(args.system, args.target)
    out = report.console()
    with ExitStack() as stack:
        redis_version = ""
        if any(t.needs_redis for t in targets):
            server = stack.enter_context(RedisServer())
            redis_version = server.version
            out.print(f"redis-server {server.version} on {server.url} (no persistence)")
            for target in targets:
                target.redis_url = server.url
        if not targets:
            print("no target matches", file=sys.stderr)
            return 2
        command = shlex.join(["python", "-m", "bench", *argv])
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-bench-", dir=args.dir))
        )
        info = report.machine(workdir)
        info["redis"] = redis_version
        results = run(targets, measures, Context(sizes, workdir), lambda s: out.print(s))
    for table in report.table(results):
        out.print(table)
    path = report.write_json(args.out, results, info, command, sizes)
    out.print(f"raw numbers: {path}")
    complete = not (args.quick or args.only or args.target or args.system)
    if complete and not args.no_results:
        md = HERE / "RESULTS.md"
        kept = report.marked_sections(md.read_text()) if md.exists() else ""
        md.write_text(report.markdown(results, info, command, sizes).rstrip("\n") + kept)
        out.print(f"written: {HERE / 'RESULTS.md'}")
        try:
            out.print(f"written: {plot.write(results, HERE / 'results.png')}")
        except ImportError as exc:
            out.print(f"no plot: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
