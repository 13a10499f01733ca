"""Throwaway servers for the tests: real processes from the installed binaries, on free ports
of 127.0.0.1, in temporary directories, stopped by PID.

A missing binary skips the tests that need it locally and fails them under ``CI=true``.
``ServerProcess`` holds what every kind shares; a kind adds its command line and its "does it
answer" check (see ``RedisServer``). ``RedisClusterServers`` forms a Redis Cluster of several;
``PostgresServer`` is a cluster of its own made by ``initdb``, never the machine's service.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def missing(reason: str) -> None:
    """A server the tests need is not installed: skip locally, fail under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def require_binary(name: str, hint: str) -> str:
    """The binary's path; skips (locally) or fails (CI=true) when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not on PATH ({hint})")
    assert path is not None
    return path


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, the server gets SIGTERM when pytest dies, so a
    crashed test run leaves no server behind."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One server process; ``start``, ``stop`` (terminate, then kill), ``kill`` (SIGKILL) and
    ``restart`` keep its port and directory, so its data and clients' URLs survive."""

    name = "server"
    start_timeout = 15.0

    def __init__(self, binary: str, directory: Path, *, port: int | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        """True once the server accepts requests."""
        raise NotImplementedError

    def popen_options(self) -> dict[str, Any]:
        """Further keyword arguments for ``subprocess.Popen`` (another user, say)."""
        return {}

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} is not running"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        log = open(self.directory / f"{self.name}.log", "ab")  # noqa: SIM115 - child keeps it
        with log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                **self.popen_options(),
            )
        deadline = time.monotonic() + self.start_timeout
        while not self.answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {log.name}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not answer within {self.start_timeout} s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to flush anything."""
        if self._process is None:
            return
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server by PID (SIGSTOP freezes it, SIGCONT thaws it)."""
        if self.running:
            os.kill(self.pid, sig)

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisServer(ServerProcess):
    """redis-server with every write fsynced to its append-only file before the reply."""

    name = "redis"

    def __init__(
        self, binary: str, directory: Path, *, args: tuple[str, ...] = (), port: int | None = None
    ) -> None:
        super().__init__(binary, directory, port=port)
        self.args = args

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            *self.args,
        ]  # fmt: skip

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                reply = s.recv(64)
        except OSError:
            return False
        # -LOADING while the AOF is replayed; -NOAUTH answers too (a server with a password)
        return reply.startswith((b"+PONG", b"-NOAUTH"))


def redis_binary() -> str:
    return require_binary("redis-server", "apt-get install redis-server")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by namespace."""
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that kill or restart it."""
    server = RedisServer(redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def redis_cli_binary() -> str:
    return require_binary("redis-cli", "apt-get install redis-tools")


def _ask(port: int, *words: str) -> bytes:
    """One command to 127.0.0.1:port in the inline protocol; the raw reply ('' on failure)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(" ".join(words).encode() + b"\r\n")
            reply = s.recv(65536)
            head, _, body = reply.partition(b"\r\n")
            if head.startswith(b"$"):  # a bulk string: read all of it
                while len(body) < int(head[1:]) + 2:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                return body
            return reply
    except OSError:
        return b""


class RedisClusterServers:
    """A Redis Cluster of ``size`` master nodes and no replicas, each a ``RedisServer`` in a
    directory of its own (its nodes.conf and append-only file survive a restart), formed with
    ``redis-cli --cluster create``."""

    start_timeout = 30.0

    def __init__(self, binary: str, cli: str, directory: Path, *, size: int = 3) -> None:
        self.cli = cli
        self.nodes: list[RedisServer] = []
        for n in range(size):
            node_dir = directory / f"node{n}"
            node_dir.mkdir()
            args = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "5000",
                # the bus port, else port + 10000, which may be taken or past 65535
                "--cluster-port", str(free_port()),
            )  # fmt: skip
            self.nodes.append(RedisServer(binary, node_dir, args=args))

    @property
    def url(self) -> str:
        """The URL an app uses: any one node; the client learns the others from it."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/"

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    self.cli, "--cluster", "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas", "0", "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=self.start_timeout,
            )  # fmt: skip
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise

    def wait_until_ok(self) -> None:
        """Until every running node says cluster_state:ok."""
        deadline = time.monotonic() + self.start_timeout
        while not all(
            b"cluster_state:ok" in _ask(node.port, "CLUSTER", "INFO")
            for node in self.nodes
            if node.running
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster was not ok within {self.start_timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node_serving(self, key: str) -> RedisServer:
        """The node that owns the slot of ``key`` now."""
        slot = int(_ask(self.nodes[0].port, "CLUSTER", "KEYSLOT", key)[1:].split(b"\r\n")[0])
        for line in _ask(self.nodes[0].port, "CLUSTER", "NODES").decode().splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rpartition(":")[2])
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if not low.startswith("[") and int(low) <= slot <= int(high or low):
                    return next(node for node in self.nodes if node.port == port)
        raise AssertionError(f"no node serves slot {slot}")

    def shard_subscribers(self, channel: str) -> int:
        """How many clients subscribe to the sharded ``channel`` at the node that owns it."""
        import redis  # the tests' client; only the Redis tests get here

        with redis.Redis(port=self.node_serving(channel).port) as owner:
            ((_, count),) = owner.pubsub_shardnumsub(channel)
        return int(count)

    def move_slot(self, key: str, target: RedisServer) -> None:
        """Move the slot of ``key``, with its keys, to ``target``, as resharding does."""
        import redis

        source_port = self.node_serving(key).port
        with redis.Redis(port=source_port) as source, redis.Redis(port=target.port) as dest:
            slot = source.cluster("KEYSLOT", key)
            source_id, target_id = source.cluster("MYID"), dest.cluster("MYID")
            dest.cluster("SETSLOT", slot, "IMPORTING", source_id)
            source.cluster("SETSLOT", slot, "MIGRATING", target_id)
            while keys := source.cluster("GETKEYSINSLOT", slot, 100):
                source.migrate("127.0.0.1", target.port, keys, 0, 5000)
            for node in (dest, source):
                node.cluster("SETSLOT", slot, "NODE", target_id)


def _start_cluster(directory: Path) -> RedisClusterServers:
    cluster = RedisClusterServers(redis_binary(), redis_cli_binary(), directory)
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """One three-node Redis Cluster for the session; tests keep apart by namespace."""
    cluster = _start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fresh_redis_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A Redis Cluster of this test's own, for tests that kill or restart its nodes."""
    cluster = _start_cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


# -- PostgreSQL ---------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The directory of ``initdb`` and ``postgres``: Debian's /usr/lib/postgresql/N/bin (the
    newest N), else wherever PATH finds ``initdb``."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path is None:
        missing("initdb is not installed (apt-get install postgresql)")
    assert on_path is not None
    return Path(on_path).parent


class PostgresServer(ServerProcess):
    """A throwaway PostgreSQL cluster: ``initdb`` into a temporary directory, ``postgres`` on a
    free port of 127.0.0.1 (its Unix socket in that directory, never the service's), fsync off.

    initdb refuses to run as root, so as root both run as the ``postgres`` OS user, and the
    data directory is made outside pytest's private temporary tree, owned by that user.
    ``start`` runs the postmaster itself (not ``pg_ctl``), so ``pid`` is the server's PID.
    """

    name = "postgres"
    start_timeout = 60.0

    def __init__(
        self, bindir: Path, *, port: int | None = None, also_listen: tuple[str, str] | None = None
    ) -> None:
        """``also_listen``: (an address of this host, a client address) for a server that also
        listens on another interface and lets that client in (a network namespace's)."""
        self.user = "postgres" if os.geteuid() == 0 else None
        self.also_listen = also_listen
        root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        if self.user is not None:
            shutil.chown(root, self.user, self.user)
        super().__init__(str(bindir / "postgres"), root, port=port)
        self.data = root / "data"
        subprocess.run(
            [
                str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--no-locale", "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **self.popen_options(),
        )  # fmt: skip
        if also_listen is not None:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {also_listen[1]}/32 trust\n")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def popen_options(self) -> dict[str, Any]:
        return {} if self.user is None else {"user": self.user, "group": self.user}

    def command(self) -> list[str]:
        return [
            self.binary,
            "-D", str(self.data),
            "-p", str(self.port),
            "-c", f"listen_addresses={','.join(self.listen_addresses())}",
            "-c", f"unix_socket_directories={self.directory}",
            "-c", "fsync=off",  # a test server: a crash of the machine may lose it whole
            "-c", "full_page_writes=off",
            "-c", "max_connections=300",
        ]  # fmt: skip

    def listen_addresses(self) -> list[str]:
        return ["127.0.0.1"] + ([self.also_listen[0]] if self.also_listen else [])

    def answers(self) -> bool:
        import psycopg  # the tests' client; only the PostgreSQL tests get here

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def children(self) -> list[int]:
        """The PIDs of the processes the postmaster started: a backend per connection, the
        checkpointer, the WAL writer, autovacuum... (read from /proc: their parent is ours)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == self.pid:
                found.append(int(stat.parent.name))
        return found

    def signal(self, sig: int) -> None:
        """SIGSTOP freezes the whole server, SIGCONT thaws it: a stalled store is the
        postmaster and every process it started, not one backend (stopping only the backend
        of one connection would stall that connection alone). The postmaster stops first, so
        it starts no process meanwhile, and resumes last. Other signals go to the postmaster,
        which passes on what it should."""
        if not self.running:
            return
        if sig not in (signal.SIGSTOP, signal.SIGCONT):
            os.kill(self.pid, sig)
            return
        if sig == signal.SIGSTOP:
            os.kill(self.pid, sig)
        for child in self.children():
            with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                os.kill(child, sig)
        if sig == signal.SIGCONT:
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        self.signal(signal.SIGCONT)  # a server left frozen (a test that failed) can shut down
        super().stop(timeout)

    def kill(self) -> None:
        """SIGKILL to the whole server, as when its machine dies: the postmaster is stopped
        first (it starts no process meanwhile), then every process it started is killed, then
        itself; none lingers on its shared memory, so ``start`` may follow at once."""
        if self.running:
            os.kill(self.pid, signal.SIGSTOP)
            for child in self.children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        super().kill()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _start_postgres() -> PostgresServer:
    server = PostgresServer(postgres_bindir())
    try:
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; tests keep apart by namespace."""
    server = _start_postgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def fresh_postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, for tests that kill or restart it."""
    server = _start_postgres()
    try:
        yield server
    finally:
        server.remove()
