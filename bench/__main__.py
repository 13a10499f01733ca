"""``python -m bench [--quick] [--only NAME] [--target NAME]``: see bench/RESULTS.md."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from bench import report
from bench.core import Target
from bench.measures import COVERED, FULL, MEASURES, QUICK, Context
from bench.runner import run
from bench.systems import SYSTEMS, load

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
        "--system", action="append", choices=sorted(SYSTEMS), help="systems to run (default all)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "out", help="directory for raw JSON")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary stores")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    sizes = QUICK if args.quick else FULL
    measures = args.only or [m for m in MEASURES if m not in COVERED]
    targets: list[Target] = []
    for system in args.system or list(SYSTEMS):
        targets += load(system).targets()
    if args.target:
        targets = [t for t in targets if any(s in t.name for s in args.target)]
    if not targets:
        print("no target matches", file=sys.stderr)
        return 2
    out = report.console()
    command = shlex.join(["python", "-m", "bench", *argv])
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        info = report.machine(workdir)
        results = run(targets, measures, Context(sizes, workdir), lambda s: out.print(s))
    out.print(report.table(results))
    path = report.write_json(args.out, results, info, command, sizes)
    out.print(f"raw numbers: {path}")
    complete = not (args.quick or args.only or args.target or args.system)
    if complete and not args.no_results:
        (HERE / "RESULTS.md").write_text(report.markdown(results, info, command, sizes))
        out.print(f"written: {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
