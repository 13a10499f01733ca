"""Workflows: the canvas compiles a tree of signatures into steps; this writes them to the
store in one atomic operation and hands back the handle of the output."""

from __future__ import annotations

import time

from conveyor.app.enqueue import Enqueueing
from conveyor.canvas import HOLD, GroupJob, Node, Tree, Workflow, chain, compile_workflow, flow_meta
from conveyor.errors import ConfigurationError
from conveyor.job import Job, State
from conveyor.task import Signature


class Workflows(Enqueueing):
    def pipe(self, first: Signature, then: Node) -> Node:
        """``first | then``: a chain."""
        return chain(first, then)

    def submit_workflow(self, node: Node) -> Job | GroupJob:
        """Store every job of a workflow in one atomic operation; the handle of its output."""
        if self.settings.eager:
            raise ConfigurationError(
                "workflows need a store and workers; an eager app has neither (use memory:// "
                "and a worker in tests)"
            )
        plan = compile_workflow(node)
        now = time.time()
        ids = [self._ids() for _ in plan.steps]
        workflow_id = ids[0]
        records = []
        for step, job_id in zip(plan.steps, ids, strict=True):
            sig = step.signature
            if sig.options.key is not None:
                raise ConfigurationError(
                    f"workflow step {sig.task!r}: an idempotency key is not available on a "
                    "workflow step"
                )
            record = self.make_record(
                sig.task,
                sig.args,
                sig.kwargs,
                sig.options,
                now=now,
                meta=flow_meta(step, ids, workflow_id),
            )
            record.id, record.unique_key = job_id, None
            if step.held:
                record.state, record.ready_at, record.expires_at = State.SCHEDULED, HOLD, None
            records.append(record)

        def leaves(tree: Tree) -> list[int]:
            return [tree] if isinstance(tree, int) else [i for t in tree for i in leaves(t)]

        outputs = {ids[i] for i in leaves(plan.output)}
        with self._around_enqueue(records):
            self.backend.enqueue_workflow(workflow_id, records, outputs)

        def handle(tree: Tree) -> Job | GroupJob:
            if isinstance(tree, int):
                return Job(self, ids[tree], records[tree].task)
            return GroupJob([handle(t) for t in tree])

        return handle(plan.output)

    def workflow(self, workflow_id: str) -> Workflow:
        """A workflow by id; raises LookupError when it is unknown or purged."""
        if self.backend.get_workflow(workflow_id) is None:
            raise LookupError(f"no workflow {workflow_id!r} (never existed, or purged)")
        return Workflow(self, workflow_id)
