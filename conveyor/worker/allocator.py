"""glibc's malloc, set for a process that is a worker: called by the ``worker`` and ``run``
commands (and the benchmark's worker process, which stands in for them), never on import and
never by ``app.worker()`` in a user's own process: a library does not change its host
process's allocator. Other C libraries (musl, macOS) are left as they are. See
docs/workers.md, Memory."""

from __future__ import annotations

import os
from typing import Any

#: glibc's mallopt() parameter for the most malloc arenas (malloc.h)
_M_ARENA_MAX = -8


def _glibc() -> Any | None:
    """The C library's functions when it is glibc's, else None."""
    try:
        os.confstr("CS_GNU_LIBC_VERSION")  # glibc only: musl and macOS have no such arenas
        import ctypes  # loaded by the thread pool anyway

        return ctypes.CDLL(None)
    except (ValueError, OSError):
        return None


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` glibc malloc arenas in this process, unless ``MALLOC_ARENA_MAX`` says
    otherwise; True if capped. Call it before the worker's threads start.

    Why: glibc gives threads that malloc at the same time arenas of their own, up to eight per
    core, each holding freed memory of its own; with 8 job threads that was ~1.1 MB of a
    worker's RSS. What it costs: little. Python objects come from pymalloc under the GIL; what
    still calls malloc without the GIL (SQLite, libpq, OpenSSL) shares two arenas' locks."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    mallopt = getattr(libc, "mallopt", None)
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, arenas))


def trim_malloc() -> bool:
    """Give back to the system the free pages that start-up left inside malloc's heap; True
    if glibc did. Call it once the app is loaded, before the worker runs.

    Why: loading modules reads each one's code into a buffer freed right after, and the pages
    of those holes stay resident until malloc reuses them (~0.3 MB of a worker's RSS).
    ``malloc_trim`` hands them back (``madvise``); a page used again later is simply mapped
    again. It runs once, before the pool's threads, so it holds no lock anyone waits on."""
    libc = _glibc()
    malloc_trim = getattr(libc, "malloc_trim", None)
    return malloc_trim is not None and bool(malloc_trim(0))
