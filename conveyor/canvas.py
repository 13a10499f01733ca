"""Workflows: ``chain``, ``group``, ``chord``, and what they become in the store.

A workflow is compiled here, purely, into steps: one job per signature, each knowing the jobs
its result feeds (``next``: successor, input slot, and the group depth a link enters) and, for
a step that waits for others, its inputs (how many slots, whether one value or a gathered
list, the depth of the group it gathers, and ``allow_failures``). The app stores every step
at once; a step with inputs waits ``scheduled`` at ``HOLD`` until the backend, in the same
atomic operation that finishes its last input, writes the inputs into its payload and queues
it (``backends/flow.py``, ``redis/workflow.lua``). The inputs travel in an envelope around
the payload (``pack_inputs``) that the worker opens (``open_inputs``), so the store never
needs to understand the serializer.

This module does no I/O and imports nothing of the model beside it: signatures are used
through their attributes, jobs through the ``WorkflowClient`` the app implements.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from conveyor.job import Job, State
    from conveyor.task import Signature

#: the ready time of a step waiting for its inputs: 9999-12-31, so no claim or sweep takes it
HOLD = 253402300799.0
#: the envelope's first bytes; no JSON or pickle payload starts with a NUL
MAGIC = b"\x00wf1:"

Node = Union["Signature", "Chain", "Group", "Chord"]
#: a compiled output: a step's index, or a list of outputs (a group's members, in order)
Tree = int | list["Tree"]
#: a job of a stored workflow: id, task, whether the workflow's handle stands for it, state
#: (None once purged)
WorkflowRow = tuple[str, str, bool, "State | None"]


@dataclass(frozen=True, slots=True)
class Failure:
    """A chord member that did not succeed, in its slot of the callback's list
    (``allow_failures=True``)."""

    error_type: str
    message: str
    job_id: str


class _Composable:
    """``|`` on workflows: ``a | b`` is ``chain(a, b)``."""

    __slots__ = ()

    def __or__(self, other: Any) -> Chain:
        return chain(self, other)  # type: ignore[arg-type]

    def __ror__(self, other: Any) -> Chain:
        return chain(other, self)  # type: ignore[arg-type]

    def delay(self) -> Any:
        """Enqueue the whole workflow in one atomic store operation. A chain or chord returns
        the Job of its last step (a GroupJob when that step is a group); a group, a
        GroupJob."""
        return _dispatcher(self).submit_workflow(self)  # type: ignore[arg-type]

    async def adelay(self) -> Any:
        """``delay`` for async code: the enqueue runs off the event loop."""
        import asyncio  # here: code without async never loads it

        return await asyncio.to_thread(self.delay)


@dataclass(frozen=True, slots=True)
class Chain(_Composable):
    steps: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Group(_Composable):
    members: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Chord(_Composable):
    members: tuple[Node, ...]
    callback: Node
    allow_failures: bool = False


def _nodes(items: Iterable[Any], what: str) -> tuple[Node, ...]:
    out = tuple(items)
    for item in out:
        if not isinstance(item, (Chain, Group, Chord)) and not hasattr(item, "task"):
            raise ConfigurationError(
                f"{what} takes signatures (task.s(...)) or workflows, not {item!r}"
            )
    if not out:
        raise ConfigurationError(f"{what} needs at least one signature")
    return out


def chain(*steps: Node) -> Chain:
    """Steps one after another: each result is the first argument of the next."""
    flat: list[Node] = []
    for step in _nodes(steps, "chain"):
        flat.extend(step.steps if isinstance(step, Chain) else (step,))
    return Chain(tuple(flat))


def group(*members: Node | Iterable[Node]) -> Group:
    """Members in parallel; ``group(a, b)`` or ``group([a, b])``."""
    if len(members) == 1 and not hasattr(members[0], "task") and isinstance(members[0], Iterable):
        return Group(_nodes(members[0], "group"))
    return Group(_nodes(members, "group"))


def chord(
    members: Iterable[Node] | Group, callback: Node, *, allow_failures: bool = False
) -> Chord:
    """Members in parallel, then ``callback`` with the list of their results in order."""
    header = members.members if isinstance(members, Group) else _nodes(members, "chord")
    return Chord(tuple(header), _nodes([callback], "chord callback")[0], allow_failures)


def _dispatcher(node: Node) -> Any:
    while not hasattr(node, "task"):
        if isinstance(node, Chain):
            node = node.steps[0]
        elif isinstance(node, (Group, Chord)):
            node = node.members[0]
    dispatcher = getattr(node, "dispatcher", None)
    if dispatcher is None:
        raise ConfigurationError(f"signature of {node.task!r} is not bound to an app")
    return dispatcher


# -- compiling ---------------------------------------------------------------------------


@dataclass(slots=True)
class Step:
    """One job of a compiled workflow."""

    signature: Signature
    depth: int  # how many groups enclose it
    next: list[tuple[int, int, int]] = field(default_factory=list)  # successor, slot, enters
    inputs: dict[str, Any] | None = None  # n, one, shape, depth, af

    @property
    def held(self) -> bool:
        return self.inputs is not None


@dataclass(slots=True)
class Plan:
    steps: list[Step]
    output: Tree  # what the workflow's handle stands for


def compile_workflow(node: Node) -> Plan:
    steps: list[Step] = []

    def emit(item: Node, depth: int) -> tuple[list[int], Tree]:
        if isinstance(item, Chain):
            heads: list[int] = []
            out: Tree | None = None
            for step in item.steps:
                h, o = emit(step, depth)
                if out is not None:
                    connect(out, h, depth + 1, allow_failures=False)
                heads = heads or h
                out = o
            assert out is not None
            return heads, out
        if isinstance(item, Group):
            heads, outs = [], []
            for member in item.members:
                h, o = emit(member, depth + 1)
                heads += h
                outs.append(o)
            return heads, outs
        if isinstance(item, Chord):
            heads, header = emit(Group(item.members), depth)
            callback_heads, out = emit(item.callback, depth)
            connect(header, callback_heads, depth + 1, allow_failures=item.allow_failures)
            return heads, out
        steps.append(Step(item, depth))
        return [len(steps) - 1], len(steps) - 1

    def connect(out: Tree, heads: list[int], gather_depth: int, *, allow_failures: bool) -> None:
        if isinstance(out, int):
            for h in heads:
                enters = steps[out].depth + 1 if steps[h].depth > steps[out].depth else 0
                steps[out].next.append((h, 0, enters))
                steps[h].inputs = {"n": 1, "one": True, "shape": None, "depth": 0, "af": False}
            return
        leaves: list[int] = []

        def shape_of(tree: Tree) -> Any:
            if isinstance(tree, int):
                leaves.append(tree)
                return len(leaves) - 1
            return [shape_of(t) for t in tree]

        shape = shape_of(out)
        flat = all(isinstance(s, int) for s in shape)
        for h in heads:
            for slot, leaf in enumerate(leaves):
                steps[leaf].next.append((h, slot, 0))
            steps[h].inputs = {
                "n": len(leaves),
                "one": False,
                "shape": None if flat else shape,
                "depth": gather_depth,
                "af": allow_failures,
            }

    _, output = emit(node, 0)
    return Plan(steps, output)


def flow_meta(step: Step, ids: Sequence[str], workflow_id: str) -> dict[str, Any]:
    """The step's part of the graph, as stored in its job's ``meta``."""
    flow: dict[str, Any] = {}
    if step.next:
        flow["next"] = [[ids[s], slot, enters] for s, slot, enters in step.next]
    if step.inputs is not None:
        flow["in"] = step.inputs
    meta: dict[str, Any] = {"workflow": workflow_id}
    if flow:
        meta["flow"] = flow
    return meta


# -- inputs ------------------------------------------------------------------------------


def failure_bytes(error_type: str, message: str, job_id: str) -> bytes:
    """A Failure as an input slot stores it (after its kind byte ``f``)."""
    return json.dumps({"type": error_type, "message": message, "job_id": job_id}).encode()


def pack_inputs(payload: bytes, slots: Sequence[bytes]) -> bytes:
    """The payload of a step whose inputs arrived: each slot is ``r`` + a result as the
    serializer wrote it, or ``f`` + ``failure_bytes``; lengths are decimal, so Lua writes the
    same bytes (``redis/workflow.lua``)."""
    parts = [MAGIC, str(len(payload)).encode(), b":", payload]
    for value in slots:
        parts += [str(len(value)).encode(), b":", value]
    return b"".join(parts)


def open_inputs(data: bytes) -> tuple[bytes, list[bytes]] | None:
    """The original payload and the slots of an envelope; None for a plain payload."""
    if not data.startswith(MAGIC):
        return None
    pos, pieces = len(MAGIC), []
    while pos < len(data):
        colon = data.index(b":", pos)
        size = int(data[pos:colon])
        pieces.append(data[colon + 1 : colon + 1 + size])
        pos = colon + 1 + size
    return pieces[0], pieces[1:]


def input_value(spec: dict[str, Any], slots: Sequence[bytes], loads: Any) -> Any:
    """The first argument a step gets: one result (a chain), or the list of results in
    member order (a chord), with a Failure in the slot of a member that did not succeed."""

    def one(raw: bytes) -> Any:
        if raw[:1] == b"f":
            e = json.loads(raw[1:])
            return Failure(e["type"], e["message"], e["job_id"])
        return loads(raw[1:])

    values = [one(raw) for raw in slots]
    if spec.get("one"):
        return values[0]

    def build(shape: Any) -> Any:
        return values[shape] if isinstance(shape, int) else [build(s) for s in shape]

    return values if spec.get("shape") is None else build(spec["shape"])


# -- handles -----------------------------------------------------------------------------


class WorkflowClient(Protocol):
    """What workflow handles need from their app."""

    def job(self, job_id: str) -> Job: ...

    def workflow_jobs(self, workflow_id: str) -> list[WorkflowRow] | None: ...

    def cancel_job(self, job_id: str) -> bool: ...


class GroupJob:
    """The handle of a group: its members' handles (a nested GroupJob for a nested group)."""

    def __init__(self, jobs: Sequence[Job | GroupJob]) -> None:
        self.jobs = list(jobs)

    def __repr__(self) -> str:
        return f"<GroupJob of {len(self.jobs)}>"

    @property
    def workflow(self) -> Workflow | None:
        return self.jobs[0].workflow if self.jobs else None

    def results(self, timeout: float | None = None) -> list[Any]:
        """Every member's result in order; raises the first failure (JobFailed,
        JobCancelled, JobExpired) and TimeoutError when not all are final in time."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for job in self.jobs:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            out.append(job.results(left) if isinstance(job, GroupJob) else job.result(left))
        return out


class Workflow:
    """Every job of one workflow, in the order given; read fresh on each access."""

    def __init__(self, client: WorkflowClient, workflow_id: str) -> None:
        self._client = client
        self.id = workflow_id

    def __repr__(self) -> str:
        return f"<Workflow {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workflow) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _rows(self) -> list[WorkflowRow]:
        rows = self._client.workflow_jobs(self.id)
        return [] if rows is None else rows

    @property
    def jobs(self) -> list[Job]:
        return [self._client.job(job_id) for job_id, _, _, _ in self._rows()]

    @property
    def state(self) -> State:
        """``running`` until every job is final; then ``succeeded`` when the jobs the
        workflow's handle stands for succeeded, else ``failed`` if any job failed or expired,
        else ``cancelled``."""
        rows = self._rows()
        present = [state for _, _, _, state in rows if state is not None]
        running = next((s for s in present if not s.is_final), None)
        if running is not None:
            return type(running)("running")
        kind = type(present[0]) if present else None
        if kind is None:
            raise LookupError(f"workflow {self.id} is unknown or purged")
        if all(state == kind("succeeded") for _, _, output, state in rows if output):
            return kind("succeeded")
        if any(s in (kind("failed"), kind("expired")) for s in present):
            return kind("failed")
        return kind("cancelled")

    def cancel(self) -> int:
        """Cancel every job of the workflow not yet final, running ones included (their
        workers stop them); later steps first, so no step is started meanwhile. Returns how
        many were cancelled or asked to stop."""
        done = 0
        for job_id, _, _, state in reversed(self._rows()):
            if state is not None and not state.is_final:
                done += bool(self._client.cancel_job(job_id))
        return done
