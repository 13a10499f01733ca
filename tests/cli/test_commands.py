"""How the command line is put together: each command's module is imported only when that
command runs, and the worker command caps glibc's malloc arenas (issue 15: a worker's RSS)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import click
import pytest

from conveyor.cli import cli
from conveyor.cli.main import MODULES


def python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**environ, **env}
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_every_command_the_cli_modules_define_is_one_the_group_finds() -> None:
    defined = {}
    for module in set(MODULES.values()):
        for value in vars(importlib.import_module(f"conveyor.cli.{module}")).values():
            if isinstance(value, click.Command) and value.callback.__module__.endswith(module):
                defined[value.name] = module
    assert defined == MODULES
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(MODULES)
    assert [getattr(cli.get_command(ctx, name), "name", None) for name in MODULES] == [*MODULES]
    assert cli.get_command(ctx, "nonsense") is None


def test_the_worker_command_loads_neither_rich_pickle_nor_the_other_commands() -> None:
    code = (
        "import sys\n"
        "from conveyor.cli import cli\n"
        "cli.main(['worker', '--help'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m in ('rich', 'pickle') or 'conveyor.cli.' in m))"
    )
    loaded = python(code).splitlines()[-1]
    assert loaded == "['conveyor.cli.context', 'conveyor.cli.main', 'conveyor.cli.worker']"


GLIBC = hasattr(os, "confstr") and "CS_GNU_LIBC_VERSION" in os.confstr_names


@pytest.mark.skipif(not GLIBC, reason="malloc arenas are glibc's")
def test_the_worker_caps_malloc_arenas_unless_malloc_arena_max_says_otherwise() -> None:
    code = "from conveyor.worker.allocator import cap_malloc_arenas; print(cap_malloc_arenas())"
    assert python(code) == "True"
    assert python(code, MALLOC_ARENA_MAX="4") == "False"


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trimming_malloc_gives_back_the_pages_of_freed_memory() -> None:
    code = (
        "from conveyor.worker.allocator import trim_malloc\n"
        "def rss():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(status.split('VmRSS:')[1].split()[0])\n"
        # 20 MB of blocks malloc keeps in its heap, all freed but the last (which pins the
        # heap's top, so free() alone cannot shrink it): their pages stay resident
        "blocks = [bytes(4096) for _ in range(5000)]\n"
        "del blocks[:-1]\n"
        "before = rss()\n"
        "print(trim_malloc(), before - rss() > 10_000)"
    )
    assert python(code) == "True True"
