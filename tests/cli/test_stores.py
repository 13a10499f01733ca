"""Which store a command reads, and what it says when that store is missing or faulty: a
missing file is never created by an inspecting command, and every fault a user can cause
(read-only file, directory without write permission, a directory for a file, a full disk, a
database from a newer conveyor, a file that is no database) is one line naming the file, the
cause and the fix, exit status 2, for every command."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conveyor.app import App
from conveyor.backends.sqlite.store import SCHEMA_VERSION
from conveyor.task import CallOptions
from tests.cli.conftest import AppModule, assert_user_error, run

#: every command that reads or changes a store, as a user types it (ID: a job id)
INSPECTING = [
    ("jobs",),
    ("job", "ID"),
    ("queues",),
    ("workers",),
    ("schedules",),
    ("cancel", "ID"),
    ("retry", "ID"),
    ("retry", "--failed"),
    ("purge", "default", "--yes"),
]
#: the commands that write (with -A: they need the app's tasks)
WRITING = [("enqueue", "TASK", "1", "2"), ("worker", "--no-schedule"), ("scheduler",)]


def typed(command: tuple[str, ...], module: AppModule, job_id: str = "18ebe6000000") -> list[str]:
    """The command line, with -A for the commands that need the app."""
    words = [job_id if w == "ID" else module.task("add") if w == "TASK" else w for w in command]
    return ["-A", module.spec, *words] if command in WRITING else words


# -- which store -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", INSPECTING, ids=" ".join)
def test_an_inspecting_command_never_creates_a_store(
    command: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    words = ["ID" if w == "ID" else w for w in command]
    result = run(*words)
    assert_user_error(result, str(elsewhere / "conveyor.db"), "-A", "CONVEYOR_URL")
    assert list(elsewhere.iterdir()) == []  # nothing made: no conveyor.db, no -wal, no gate


def test_a_missing_store_named_by_conveyor_url_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_URL", f"sqlite:///{tmp_path}/typo.db")
    assert_user_error(run("jobs"), f"{tmp_path}/typo.db", "from CONVEYOR_URL")
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize(
    "command", [("jobs",), ("queues",), ("workers",), ("schedules",)], ids=" ".join
)
def test_every_inspecting_command_names_the_store_it_read(
    command: tuple[str, ...], app_module: AppModule
) -> None:
    app_module.app.submit(app_module.task("add"), (1, 2), {}, CallOptions())
    result = run(*command)
    assert result.exit_code == 0, result.output
    assert f"sqlite:///{app_module.path}/jobs.db" in result.stderr


def test_job_cancel_and_purge_name_the_store_too(app_module: AppModule) -> None:
    job = app_module.app.submit(app_module.task("add"), (1, 2), {}, CallOptions())
    store = f"sqlite:///{app_module.path}/jobs.db"
    assert store in run("job", job.id).stderr
    assert store in run("cancel", job.id).stderr
    app_module.app.submit(app_module.task("add"), (1, 2), {}, CallOptions())
    assert store in run("purge", "default", "--yes").stdout


def test_a_redis_password_is_never_shown() -> None:
    from conveyor.backends import describe_store

    assert describe_store("redis://:s3cret@db.example:6379/0") == "redis://:***@db.example:6379/0"
    assert describe_store("redis://app:s3cret@db.example/1") == "redis://app:***@db.example/1"


# -- faults a user can cause, in the same process ----------------------------------------------


def every_command(module: AppModule) -> list[list[str]]:
    return [typed(c, module) for c in INSPECTING + WRITING]


def test_a_database_from_a_newer_conveyor_is_refused_by_every_command(
    app_module: AppModule,
) -> None:
    db = app_module.path / "jobs.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for words in every_command(app_module):
        assert_user_error(run(*words), str(db), "newer conveyor", "upgrade conveyor")


def test_a_file_that_is_no_database_is_named_by_every_command(app_module: AppModule) -> None:
    db = app_module.path / "jobs.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"these are my notes, not a database " * 200)
    for words in every_command(app_module):
        assert_user_error(run(*words), str(db), "is not a database", "CONVEYOR_URL")


def test_a_directory_named_as_the_database_is_named_by_every_command(
    app_module: AppModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = app_module.path / "data"
    folder.mkdir()
    monkeypatch.setenv("CONVEYOR_URL", f"sqlite:///{folder}")
    for command in INSPECTING:
        assert_user_error(run(*typed(command, app_module)), "is a directory", f"{folder}/jobs.db")


def test_a_new_store_gets_this_conveyors_schema_version(app_module: AppModule) -> None:
    with sqlite3.connect(app_module.path / "jobs.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# -- permissions and a full disk, in processes of their own -----------------------------------


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply: as root, without the
    capabilities that override them (a user's shell has none of them either)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot apply")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps]


def in_a_shell(module: AppModule, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """ARGV run in the module's directory, with its app importable and its store named by
    CONVEYOR_URL, on a terminal wide enough that no line wraps."""
    env = dict(os.environ, PYTHONPATH=str(module.path), CONVEYOR_URL=module.url, COLUMNS="300")
    env.pop("CONVEYOR_APP", None)
    return subprocess.run(
        argv, cwd=module.path, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def conveyor(module: AppModule, words: list[str]) -> subprocess.CompletedProcess[str]:
    return in_a_shell(module, [*unprivileged(), sys.executable, "-m", "conveyor", *words])


def assert_one_line(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def a_job(module: AppModule) -> str:
    app = App(module.url)
    try:
        return app.submit(module.task("add"), (1, 2), {}, CallOptions()).id
    finally:
        app.close()


@pytest.mark.slow
def test_a_read_only_database_file_is_named_with_the_fix_by_every_writing_command(
    app_module: AppModule,
) -> None:
    job_id = a_job(app_module)
    db = app_module.path / "jobs.db"
    db.chmod(0o444)
    try:
        writing = [("cancel", "ID"), ("retry", "ID"), ("purge", "default", "--yes"), *WRITING]
        for command in writing:
            done = conveyor(app_module, typed(command, app_module, job_id))
            assert_one_line(done, str(db), "read-only", f"chmod u+w {db}")
        listed = conveyor(app_module, ["jobs"])  # reading a read-only file still works
        assert listed.returncode == 0 and job_id[:8] in listed.stdout, listed.stderr
    finally:
        db.chmod(0o644)


@pytest.mark.slow
def test_a_directory_without_write_permission_is_named_with_the_fix_by_every_command(
    app_module: AppModule, tmp_path: Path
) -> None:
    job_id = a_job(app_module)
    app_module.path.chmod(0o555)  # the database is in it, its -wal and -shm cannot be
    try:
        for command in INSPECTING + WRITING:
            done = conveyor(app_module, typed(command, app_module, job_id))
            assert_one_line(done, str(app_module.path), "not writable", "chmod u+w")
    finally:
        app_module.path.chmod(0o755)


def url_module(directory: Path) -> AppModule:
    """A user's tasks module whose app takes its URL from CONVEYOR_URL."""
    name = f"urltasks_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(
        "import conveyor\n\napp = conveyor.App()\n\n\n@app.task\ndef add(x, y):\n    return x + y\n"
        "\n\n@app.periodic(every=3600)\ndef hourly():\n    pass\n"
    )
    return AppModule(name, directory, "")


@pytest.mark.slow
def test_a_new_store_in_a_directory_without_write_permission_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    module = url_module(tmp_path)
    module.url = f"sqlite:///{locked}/jobs.db"
    try:
        for command in WRITING:
            done = conveyor(module, typed(command, module))
            assert_one_line(done, f"{locked}/jobs.db", "not writable", f"chmod u+w {locked}")
    finally:
        locked.chmod(0o755)


@pytest.mark.slow
def test_a_full_disk_is_named_with_the_fix_by_every_command(tmp_path: Path) -> None:
    """A tiny tmpfs, mounted in a mount namespace of the test's own (nothing else sees it),
    filled to the last byte once it holds the store."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a full disk is simulated with a private tmpfs, which needs root")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr!r}")
    disk = tmp_path / "disk"
    disk.mkdir()
    module = url_module(tmp_path)
    module.url = f"sqlite:///{disk}/jobs.db"
    conveyor_line = [sys.executable, "-m", "conveyor"]
    add = [*conveyor_line, "-A", module.spec, "enqueue", module.task("add"), "1", "2"]
    out = tmp_path / "out"
    script = [
        f"mount -t tmpfs -o size=1m tmpfs {disk}",
        f"ID=$({shlex.join(add)} 2>/dev/null) || exit 3",
        f"dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null",
    ]
    for command in INSPECTING + WRITING:
        words = shlex.join([*conveyor_line, *typed(command, module, "JOB")]).replace("JOB", "$ID")
        script.append(f'{words} >{out} 2>&1; echo "$? $(grep -c . {out}) $(tail -1 {out})"')
    private = ["unshare", "--mount", "--propagation", "private"]
    done = in_a_shell(module, [*private, "sh", "-c", "\n".join(script)])
    said = done.stdout.strip().splitlines()
    assert len(said) == len(INSPECTING + WRITING), done.stdout + done.stderr
    for line, command in zip(said, INSPECTING + WRITING, strict=True):
        status, count, message = line.split(" ", 2)
        assert (status, count) == ("2", "1"), (command, line)  # exit 2, one line
        assert message.startswith("error: ") and f"{disk}/jobs.db" in message, line
        assert "the disk is full" in message and "free space" in message, line
