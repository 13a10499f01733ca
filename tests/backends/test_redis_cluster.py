"""What the Redis backend promises on a real Redis Cluster: a plain ``redis://`` URL of any
node finds the Cluster by itself; namespaces on several nodes; a worker end to end; wake-ups
at the namespace's node (wake lists for idle workers, sharded pub/sub for job changes); a slot
that moves; a node that is lost; and Cluster URLs that are wrong say why.
The conformance suite covers the contract itself on the Cluster."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

import conveyor
from conveyor.backends import Backend, open_backend
from conveyor.backends.redis import RedisBackend
from conveyor.errors import BackendUnavailable, ConfigurationError
from conveyor.job import Outcome, State
from tests.backends.helpers import LEASE, NOW, make_record
from tests.servers import RedisClusterServers, RedisServer

pytestmark = pytest.mark.slow

# how an app may name the Cluster: explicitly, or by the plain URL of one of its nodes
URL_FORMS = ["redis+cluster", "redis"]


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def cluster_url(cluster: RedisClusterServers, form: str) -> str:
    if form == "redis+cluster":
        return cluster.url
    return f"redis://127.0.0.1:{cluster.nodes[1].port}/0"  # not the node the others use


# -- one namespace per slot, on whichever node serves it -----------------------------------


@pytest.mark.parametrize("form", URL_FORMS)
def test_namespaces_on_different_cluster_nodes_each_keep_their_jobs_on_their_node(
    redis_cluster: RedisClusterServers, form: str
) -> None:
    by_port = namespaces_on_every_node(redis_cluster)
    assert len(by_port) >= 2
    for port, ns in by_port.items():
        backend = open_backend(cluster_url(redis_cluster, form), namespace=ns)
        node = redis.Redis(port=port)
        try:
            job = backend.enqueue([make_record()])[0]
            (claim,) = backend.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW)
            assert claim.record.id == job.id
            assert backend.finish(job.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
            assert stored_state(backend, job.id) is State.SUCCEEDED
            assert isinstance(backend, RedisBackend) and backend.cluster

            keys = list(node.scan_iter(match=f"{{{ns}}}:*"))
            assert f"{{{ns}}}:job:{job.id}".encode() in keys
            assert len({node.cluster("KEYSLOT", k) for k in keys}) == 1
        finally:
            node.close()
            backend.close()


@pytest.mark.parametrize("form", URL_FORMS)
def test_a_worker_on_the_cluster_runs_a_task_and_returns_its_result(
    redis_cluster: RedisClusterServers, ns: str, form: str
) -> None:
    app = conveyor.App(cluster_url(redis_cluster, form), namespace=ns)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    try:
        with app.worker(concurrency=2):
            jobs = [add.delay(i, i) for i in range(20)]
            assert [job.result(timeout=30) for job in jobs] == [2 * i for i in range(20)]
        assert jobs[0].state is State.SUCCEEDED
    finally:
        app.close()


@pytest.mark.parametrize("form", URL_FORMS)
def test_job_changes_on_the_cluster_use_sharded_pub_sub_on_the_namespaces_node(
    redis_cluster: RedisClusterServers, ns: str, form: str
) -> None:
    backend = RedisBackend(cluster_url(redis_cluster, form), namespace=ns)
    try:
        backend.wait_for_change("any", 0.01)  # starts the listener
        channel = f"{{{ns}}}:changed"
        assert redis_cluster.shard_subscribers(channel) == 1
        for node in redis_cluster.nodes:  # no classic subscription anywhere
            with redis.Redis(port=node.port) as client:
                assert client.pubsub_numsub(channel) == [(channel.encode(), 0)]
        assert_a_change_wakes_a_watcher(backend, ns, redis_cluster)
    finally:
        backend.close()


@pytest.mark.parametrize("form", URL_FORMS)
def test_an_enqueue_on_the_cluster_wakes_every_idle_waiter(
    redis_cluster: RedisClusterServers, ns: str, form: str
) -> None:
    backends = [RedisBackend(cluster_url(redis_cluster, form), namespace=ns) for _ in range(3)]
    try:
        assert_an_enqueue_wakes_a_waiter(*backends)
    finally:
        for backend in backends:
            backend.close()


# -- finding the Cluster from a plain redis:// URL -----------------------------------------


def test_a_plain_url_asks_the_node_once_even_when_many_threads_make_the_first_call(
    redis_cluster: RedisClusterServers, ns: str
) -> None:
    node = redis_cluster.nodes[1]
    backend = RedisBackend(f"redis://127.0.0.1:{node.port}/0", namespace=ns)
    start = threading.Barrier(8)
    enqueued: list[str] = []

    def enqueue() -> None:
        start.wait()
        enqueued.append(backend.enqueue([make_record()])[0].id)

    before = info_calls(node)
    try:
        threads = [threading.Thread(target=enqueue) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30.0)
        backend.enqueue([make_record()])
        assert len(enqueued) == 8
        assert backend.cluster
        # one INFO from the backend, and one more for ``before`` itself
        assert info_calls(node) - before == 2
        assert len(backend.list_jobs(limit=100)) == 9
    finally:
        backend.close()


def test_a_plain_url_of_a_single_server_keeps_the_single_server_client(
    redis_server: RedisServer, ns: str
) -> None:
    backend = RedisBackend(redis_server.url, namespace=ns)
    try:
        assert backend.enqueue([make_record()])
        assert backend.cluster is False
        backend.wait_for_change("any", 0.01)  # classic pub/sub, which Redis 6 has too
        channel = f"{{{ns}}}:changed"
        with redis.Redis(port=redis_server.port) as client:
            assert client.pubsub_numsub(channel) == [(channel.encode(), 1)]
    finally:
        backend.close()


@pytest.mark.parametrize("db", ["/3", "/?db=2"])
def test_a_database_other_than_0_on_a_detected_cluster_is_a_configuration_error(
    redis_cluster: RedisClusterServers, ns: str, db: str
) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{redis_cluster.nodes[0].port}{db}", namespace=ns)
    try:
        for _ in range(2):  # the answer is kept: the second call says the same
            with pytest.raises(ConfigurationError, match=r"Cluster node.*only database 0"):
                backend.enqueue([make_record()])
        assert not backend.ping()
    finally:
        backend.close()


def test_cluster_false_on_a_cluster_node_says_the_node_sent_the_keys_elsewhere(
    redis_cluster: RedisClusterServers,
) -> None:
    node = redis_cluster.nodes[0]
    ns = next(
        ns for port, ns in namespaces_on_every_node(redis_cluster).items() if port != node.port
    )
    backend = RedisBackend(f"redis://127.0.0.1:{node.port}/0?cluster=false", namespace=ns)
    try:
        with pytest.raises(ConfigurationError, match=r"Cluster node.*MOVED.*cluster=false"):
            backend.enqueue([make_record()])
        with pytest.raises(ConfigurationError, match="MOVED"):
            backend.get("any")
        assert backend.cluster is False
    finally:
        backend.close()


def test_a_cluster_url_may_also_be_a_redis_url_with_cluster_true(
    redis_cluster: RedisClusterServers, ns: str
) -> None:
    url = f"redis://127.0.0.1:{redis_cluster.nodes[1].port}/0?cluster=true"
    backend = open_backend(url, namespace=ns)
    try:
        assert isinstance(backend, RedisBackend) and backend.cluster
        job = backend.enqueue([make_record()])[0]
        assert stored_state(backend, job.id) is State.QUEUED
        assert backend.check_persistence() is True
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
        ("redis://127.0.0.1:7000/0?cluster=maybe", "use true or false"),
        ("redis+cluster://127.0.0.1:7000/?cluster=false", "contradicts"),
        ("unix:///tmp/redis.sock?cluster=true", "over TCP"),
    ],
)
def test_a_bad_cluster_url_fails_at_construction(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_backend(url, namespace="bad")


def test_a_cluster_url_pointing_at_a_single_server_says_so(
    redis_server: RedisServer, ns: str
) -> None:
    backend = open_backend(f"redis+cluster://127.0.0.1:{redis_server.port}/", namespace=ns)
    try:
        with pytest.raises(BackendUnavailable, match="not a Cluster node"):
            backend.enqueue([make_record()])
    finally:
        backend.close()


# -- slots that move, nodes that are lost --------------------------------------------------


def test_a_namespace_whose_slot_moves_to_another_node_keeps_working(
    redis_cluster: RedisClusterServers, backend_on_cluster: RedisBackend, ns: str
) -> None:
    prefix = f"{{{ns}}}:"
    job = backend_on_cluster.enqueue([make_record()])[0]
    backend_on_cluster.wait_for_change(job.id, 0.01)  # subscribed at the old owner
    source = redis_cluster.node_serving(prefix)
    target = next(node for node in redis_cluster.nodes if node is not source)

    redis_cluster.move_slot(prefix, target)
    new_owner = redis.Redis(port=target.port)
    try:
        new_owner.script_flush()  # as on a fresh primary after a failover: NOSCRIPT follows
        assert redis_cluster.node_serving(prefix) is target
        # MOVED is followed, and the new owner gets the script by EVAL, routed by KEYS[1]
        (claim,) = backend_on_cluster.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW)
        assert claim.record.id == job.id
        scripts = backend_on_cluster._connection.scripts.scripts  # a Cluster runs scripts
        assert new_owner.script_exists(scripts["claim"].sha)
    finally:
        new_owner.close()
    assert backend_on_cluster.finish(job.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    assert stored_state(backend_on_cluster, job.id) is State.SUCCEEDED
    # the listener was dropped by the old owner and subscribed at the new one
    assert_a_change_wakes_a_watcher(backend_on_cluster, ns, redis_cluster)
    assert_an_enqueue_wakes_a_waiter(backend_on_cluster)  # blocked at the new owner


def test_a_lost_cluster_node_raises_backend_unavailable_in_bounded_time_then_recovers(
    fresh_redis_cluster: RedisClusterServers, ns: str
) -> None:
    backend = RedisBackend(fresh_redis_cluster.url, namespace=ns, retry_seconds=1.0)
    try:
        job = backend.enqueue([make_record()])[0]
        backend.wait_for_change(job.id, 0.01)  # the listener is up before the node is lost
        node = fresh_redis_cluster.node_serving(f"{{{ns}}}:")
        node.kill()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="did not answer"):
            backend.enqueue([make_record()])
        assert time.monotonic() - started < 15.0
        assert not backend.ping()

        node.start()  # its nodes.conf and append-only file bring it back as it was
        fresh_redis_cluster.wait_until_ok()
        assert stored_state(backend, job.id) is State.QUEUED
        assert backend.enqueue([make_record()])
        assert backend.ping()
        assert_a_change_wakes_a_watcher(backend, ns, fresh_redis_cluster)  # subscribed again
        assert_an_enqueue_wakes_a_waiter(backend)
    finally:
        backend.close()


def test_a_plain_url_of_a_node_that_is_down_at_the_first_call_retries_then_finds_the_cluster(
    fresh_redis_cluster: RedisClusterServers, ns: str
) -> None:
    node = fresh_redis_cluster.nodes[0]
    node.kill()
    backend = RedisBackend(f"redis://127.0.0.1:{node.port}/0", namespace=ns, retry_seconds=1.0)
    try:
        with pytest.raises(BackendUnavailable, match="did not answer"):
            backend.enqueue([make_record()])
        node.start()
        fresh_redis_cluster.wait_until_ok()
        assert backend.enqueue([make_record()])
        assert backend.cluster
    finally:
        backend.close()


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
def backend_on_cluster(redis_cluster: RedisClusterServers, ns: str) -> Iterator[RedisBackend]:
    b = RedisBackend(redis_cluster.url, namespace=ns)
    yield b
    b.close()


def namespaces_on_every_node(cluster: RedisClusterServers) -> dict[int, str]:
    """A fresh namespace per node of the cluster, by the port of the node that serves it."""
    by_port: dict[int, str] = {}
    while len(by_port) < len(cluster.nodes):
        ns = f"t{uuid.uuid4().hex[:12]}"
        by_port.setdefault(cluster.node_serving(f"{{{ns}}}:").port, ns)
    return by_port


def info_calls(node: RedisServer) -> int:
    """How many INFO commands the node has served (this one not yet counted)."""
    with redis.Redis(port=node.port) as client:
        stats: dict[str, dict[str, int]] = client.info("commandstats")
    return stats.get("cmdstat_info", {}).get("calls", 0)


def stored_state(backend: Backend, job_id: str) -> State:
    record = backend.get(job_id)
    assert record is not None
    return record.state


def assert_an_enqueue_wakes_a_waiter(*backends: RedisBackend) -> None:
    """An enqueue by another backend instance wakes a thread waiting for jobs in each of
    ``backends`` (idle workers on one or many hosts)."""
    woke = [threading.Event() for _ in backends]

    def wait(backend: RedisBackend, event: threading.Event) -> None:
        backend.wait_for_jobs(["later"], 30.0)
        event.set()

    waiters = [
        threading.Thread(target=wait, args=(backend, event))
        for backend, event in zip(backends, woke, strict=True)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.3)  # let the waiters start waiting; the bound below is generous
    assert not any(event.is_set() for event in woke), "a waiter woke before anything was enqueued"
    other = open_backend(backends[0].url, namespace=backends[0].namespace)
    try:
        other.enqueue([make_record(queue="later")])
    finally:
        other.close()
    for waiter in waiters:
        waiter.join(20.0)
    assert all(event.is_set() for event in woke), "the enqueue did not wake every waiter"


def assert_a_change_wakes_a_watcher(
    backend: RedisBackend, ns: str, cluster: RedisClusterServers
) -> None:
    """A change made by another backend instance wakes a watcher of the job in ``backend``,
    once its listener is subscribed at the node that serves the namespace now."""
    deadline = time.monotonic() + 20.0
    while cluster.shard_subscribers(f"{{{ns}}}:changed") != 1:
        assert time.monotonic() < deadline, "the listener did not subscribe at the owner"
        time.sleep(0.05)
    other = open_backend(backend.url, namespace=ns)
    try:
        job = other.enqueue([make_record(queue="watched")])[0]
        woke = threading.Event()

        def watch() -> None:
            backend.wait_for_change(job.id, 30.0)
            woke.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.3)  # let the watcher start watching; the bound below is generous
        assert not woke.is_set(), "the watcher woke before the job changed"
        assert other.cancel(job.id, now=NOW)
    finally:
        other.close()
    watcher.join(20.0)
    assert woke.is_set(), "the change did not wake the watcher"
