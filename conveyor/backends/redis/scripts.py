"""The Lua scripts and how they run: one function library where the server has functions
(Redis 7, Valkey 7.2), a script per ``.lua`` file where it has not.

``common.lua`` (with ``limiting.lua`` and ``workflow.lua``) is the prelude every script
needs: some eighty closures and tables. Run as a script (EVALSHA), the prelude is built again
on every call, which costs more server time than most scripts' own work (16 µs a call against
2.5 µs for an empty script, measured with ``INFO commandstats``). Loaded as one library
(``FUNCTION LOAD``), it is built once; FCALL then runs only the body of the file named, after
``begin()`` gives it fresh per-call state. The library's name carries a hash of its code, so
two versions of conveyor on one server each find their own.

The library is loaded by the first call that does not find it (a new or restarted server, a
``FUNCTION FLUSH``), on exactly the server that runs the call. A server without functions
(Redis 6: an unknown command) or a user who may not load them (ACL) gets the scripts instead:
EVALSHA first, EVAL on NOSCRIPT, which caches the script on the node that runs it. On a
Cluster the scripts are always used: redis-py routes EVALSHA by KEYS[1] itself, where it
would ask the server for FCALL's keys on every call.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

from conveyor.inspection import RUNTIME_BUCKETS, bucket_label

#: change-feed entries kept in the capped stream `events` (about: XADD MAXLEN ~)
EVENTS_KEPT = 10_000

SCRIPTS = [
    *("enqueue", "claim", "heartbeat", "progress", "finish", "finish_claim", "release"),
    *("recover", "sweep"),
    *("list", "cancel", "retry", "purge_queue", "record_due", "schedules", "probe"),
    *("enqueue_workflow", "get_workflow"),
    *("set_limit", "list_limits"),
    "stats",
]


#: runs one command and returns its raw reply (``HeldConnections.execute`` on one server)
Execute = Callable[..., Any]


class LuaScript:
    """One script: the prelude, then ``begin`` with the script's KEYS and ARGV, then its own
    file. EVALSHA first; on NOSCRIPT (a restarted server, a new primary after a failover, a
    slot moved to another node) EVAL, which redis-py routes by KEYS[1] like EVALSHA, and which
    caches the script on exactly the node that runs it: no SCRIPT LOAD on every primary, so a
    node that is down elsewhere in the Cluster never stands in the way."""

    def __init__(self, name: str, *parts: str) -> None:
        self.name = name
        # The parts, not their concatenation: every script starts with the same 36 kB
        # prelude, and twenty copies of it held 0.6 MB of a worker's RSS for the EVAL that
        # a server with functions never needs. The text is joined only for that EVAL.
        self._parts = parts
        sha = hashlib.sha1()
        for part in parts:
            sha.update(part.encode())
        self.sha = sha.hexdigest()

    @property
    def body(self) -> str:
        """The script's whole text, as EVAL sends it."""
        return "".join(self._parts)

    def run(self, execute: Execute, prefix: str, args: tuple[Any, ...]) -> Any:
        try:
            return execute("EVALSHA", self.sha, "1", prefix, *args)
        except NoScriptError:
            return execute("EVAL", self.body, "1", prefix, *args)


class Library:
    """Every script as a function of one library, named after a hash of its code."""

    def __init__(self, prelude: str, bodies: dict[str, str]) -> None:
        self._prelude, self._bodies = prelude, bodies  # the scripts' own: held once
        self.name = "conveyor_" + hashlib.sha1(self._code().encode()).hexdigest()[:16]
        self.functions = {name: f"{self.name}_{name}" for name in bodies}

    def _code(self) -> str:
        return self._prelude + "".join(
            f"redis.register_function('@_{name}', function(keys, args)\n"
            f"begin(keys, args)\n{body}\nend)\n"
            for name, body in self._bodies.items()
        )

    @property
    def code(self) -> str:
        """The library's text, as FUNCTION LOAD sends it (made when loaded: a server loads it
        once, and it would be a third copy of the scripts in every worker)."""
        return f"#!lua name={self.name}\n" + self._code().replace("'@_", f"'{self.name}_")

    def run(self, execute: Execute, name: str, prefix: str, args: tuple[Any, ...]) -> Any:
        command = ("FCALL", self.functions[name], "1", prefix, *args)
        try:
            return execute(*command)
        except ResponseError as exc:
            _check_supported(exc)
            if "function not found" not in str(exc).lower():
                raise
        try:
            # REPLACE: another client may have loaded it meanwhile; a load is idempotent
            execute("FUNCTION", "LOAD", "REPLACE", self.code)
        except ResponseError as exc:
            _check_supported(exc)
            raise
        return execute(*command)


def _check_supported(exc: ResponseError) -> None:
    """Raise Unsupported when the server has no functions (Redis 6: unknown command) or the
    user may not call or load them (ACL): the scripts need nothing more. A script's own
    error, or a library the server cannot compile, is raised as it is."""
    if isinstance(exc, NoPermissionError) or "unknown command" in str(exc).lower():
        raise Unsupported from exc


class Unsupported(Exception):
    """The server cannot run the library: use the scripts."""


class Scripts:
    """Runs a script by name: as a function of the library, until the server shows it has no
    functions (or refuses to load them), then, as always on a Cluster, as a script."""

    def __init__(self, publish: str, *, functions: bool) -> None:
        prelude, bodies = _sources(publish)
        self.scripts = {
            name: LuaScript(
                name,
                "local KEYS_IN, ARGV_IN = KEYS, ARGV\n",
                prelude,
                "begin(KEYS_IN, ARGV_IN)\n",
                body,
            )
            for name, body in bodies.items()
        }
        self.library = Library(prelude, bodies)
        self.functions = functions

    def run(self, execute: Execute, name: str, prefix: str, args: tuple[Any, ...]) -> Any:
        # methods named run, not __call__: calling an instance costs a delay() ~1k more
        if self.functions:
            try:
                return self.library.run(execute, name, prefix, args)
            except Unsupported:
                self.functions = False
        return self.scripts[name].run(execute, prefix, args)


def _sources(publish: str) -> tuple[str, dict[str, str]]:
    """The prelude (constants, ``common.lua`` with ``limiting.lua`` in it, ``workflow.lua``)
    and each script's own file."""
    folder = resources.files(__package__)
    bounds = [b for b in RUNTIME_BUCKETS if not math.isinf(b)]
    head = (
        f"local PUBLISH = '{publish}'\n"
        f"local BUCKETS = {{{', '.join(repr(b) for b in bounds)}}}\n"
        f"local BUCKET_LABELS = {{{', '.join(repr(bucket_label(b)) for b in bounds)}}}\n"
        f"local EVENTS_KEPT = {EVENTS_KEPT}\n"
    )
    prelude = head + (folder / "common.lua").read_text().replace(
        "-- LIMITING: limiting.lua is put here by scripts.py (claims and finishes call it).",
        (folder / "limiting.lua").read_text(),
    )
    prelude += (folder / "workflow.lua").read_text()  # workflows: the finish paths call it
    return prelude, {name: (folder / f"{name}.lua").read_text() for name in SCRIPTS}
