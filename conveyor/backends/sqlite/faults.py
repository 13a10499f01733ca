"""What went wrong with the database file, in words a user can act on.

SQLite reports a read-only file, a directory without write permission and a missing file all
as "unable to open database file" or "attempt to write a readonly database". ``store_error``
looks at the file and its directory to say which it is, and what to do about it; every
command then prints that one line (exit status 2) instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from typing import NoReturn

from conveyor.errors import BackendUnavailable, ConfigurationError, ConveyorError

#: SQLite's primary result codes for faults of the file rather than of conveyor
PERM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB = 3, 8, 10, 11, 13, 14, 26

#: a disk with less room than this counts as full (SQLite needs a few pages and its -shm)
FULL_BELOW_BYTES = 1 << 20

#: where to point conveyor at another store, said in every message
ELSEWHERE = "or point CONVEYOR_URL (or your app's URL) at another file"


def store_error(path: str, exc: BaseException) -> ConveyorError | None:
    """The error to raise instead of ``exc`` (a sqlite3 error or an OSError from opening a
    file beside the database), or None when ``exc`` is not a fault of the file."""
    if isinstance(exc, OSError):
        code = {errno.ENOSPC: FULL, errno.EROFS: READONLY}.get(exc.errno or 0, CANTOPEN)
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS):
            code = IOERR
        cause = exc.strerror or str(exc)
    elif isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        cause = str(exc)
    else:
        return None
    if code in (PERM, READONLY, CANTOPEN):
        return ConfigurationError(f"{path}: {_access_problem(path, cause)}")
    if code == IOERR and _disk_full(path):
        code = FULL  # SQLite says "disk I/O error" when even its -shm file finds no room
    if code == FULL:
        return BackendUnavailable(
            f"{path}: the disk is full ({cause}); free space on it, {ELSEWHERE}"
        )
    if code == NOTADB:
        return ConfigurationError(
            f"{path} is not a database ({cause}); is the URL right? Point CONVEYOR_URL (or "
            "your app's URL) at your conveyor database"
        )
    if code == CORRUPT:
        return ConfigurationError(
            f"{path} is damaged ({cause}); restore it from a backup, {ELSEWHERE}"
        )
    if code == IOERR:
        return BackendUnavailable(f"{path}: input/output error ({cause}); check the disk")
    return None


def newer_schema(path: str, version: int, known: int) -> ConfigurationError:
    return ConfigurationError(
        f"{path} was written by a newer conveyor (database schema version {version}; this "
        f"conveyor knows versions up to {known}): upgrade conveyor where this command runs "
        "(pip install -U conveyor, or from the newer checkout), or point CONVEYOR_URL at "
        "another file"
    )


def _disk_full(path: str) -> bool:
    try:
        return shutil.disk_usage(os.path.dirname(path) or ".").free < FULL_BELOW_BYTES
    except OSError:
        return False


def raise_store_error(path: str, exc: BaseException) -> NoReturn:
    """Raise what ``store_error`` makes of ``exc``, or ``exc`` itself."""
    error = store_error(path, exc)
    if error is None:
        raise exc
    raise error from exc


def _access_problem(path: str, cause: str) -> str:
    """Which permission is missing, found by asking the file system, and the fix."""
    directory = os.path.dirname(path) or "."
    if os.path.exists(path) and not os.access(path, os.R_OK):
        return (
            f"the file cannot be read ({cause}); give your user read and write permission "
            f"on it (chmod u+rw {path}), {ELSEWHERE}"
        )
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return (
            f"the file is read-only ({cause}); give your user write permission on it "
            f"(chmod u+w {path}), {ELSEWHERE}"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"its directory {directory} is not writable ({cause}), and SQLite keeps its -wal "
            f"and -shm files beside the database; give your user write permission on it "
            f"(chmod u+w {directory}), {ELSEWHERE}"
        )
    for suffix in ("-wal", "-shm"):
        beside = path + suffix
        if os.path.exists(beside) and not os.access(beside, os.R_OK | os.W_OK):
            return (
                f"{beside} is not writable ({cause}); give your user read and write "
                f"permission on it (chmod u+rw {beside}), {ELSEWHERE}"
            )
    return f"cannot write to it ({cause}): is its file system read-only? {ELSEWHERE[3:]}"
