"""The exception tree.

    ConveyorError
    ├── ConfigurationError        a setting or option is wrong; says which and why
    ├── InvalidArgument           a bad argument to an inspection call (state, limit, cursor)
    ├── SerializationError        a value cannot be serialised (raised at the call site)
    ├── BackendUnavailable        the backend cannot be reached after a bounded retry
    ├── JobNotFound               no job with that id (never existed or purged)
    ├── TaskNotFound              no task registered under that name
    ├── JobError                  the outcome of a job, raised by ``Job.result()``
    │   ├── JobFailed             the last attempt raised; carries error_type, message, traceback
    │   ├── JobCancelled
    │   └── JobExpired
    ├── TimeLimitExceeded         an attempt ran past its hard ``timeout``
    ├── SoftTimeLimitExceeded     raised inside a task at its ``soft_timeout``
    └── WorkerCrashed             the process running an attempt died (signal or exit status)

``Retry`` is a control-flow signal, not an error: a task raises it to ask for another attempt.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """The root of every error conveyor raises."""


class ConfigurationError(ConveyorError):
    """A setting or option is wrong; the message names it and the fix."""


class InvalidArgument(ConveyorError, ValueError):
    """A bad argument to a call such as ``app.jobs()`` (unknown state, limit out of range, a
    cursor or event id this API never handed out). The HTTP API answers it with a 400."""


class SerializationError(ConveyorError):
    """A value cannot be serialised or deserialised."""


class BackendUnavailable(ConveyorError):
    """The backend could not be reached within the retry budget."""


class JobNotFound(ConveyorError, LookupError):
    """No job with this id: it never existed, or it was purged after its result_ttl."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} (unknown, or purged after its result_ttl)")
        self.job_id = job_id


class TaskNotFound(ConveyorError, LookupError):
    """No task is registered under this name in the app."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no task registered under the name {name!r}")
        self.name = name


class JobError(ConveyorError):
    """A job ended in a state other than succeeded."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailed(JobError):
    """The job failed; the fields describe the last attempt's error."""

    def __init__(
        self, job_id: str, error_type: str, message: str, traceback: str | None = None
    ) -> None:
        super().__init__(job_id, f"job {job_id} failed: {error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.traceback = traceback


class JobCancelled(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"job {job_id} was cancelled")


class JobExpired(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"job {job_id} expired before it started")


class TimeLimitExceeded(ConveyorError):
    """An attempt ran past its hard timeout and was stopped."""


class SoftTimeLimitExceeded(ConveyorError):
    """Raised inside a task when its soft_timeout passes; the task may clean up."""


class WorkerCrashed(ConveyorError):
    """The child process running the attempt died (a signal, or an exit status)."""


class Retry(Exception):
    """Raise inside a task to ask for another attempt.

    It counts against the task's ``retries``; ``delay`` overrides the backoff for this retry.
    """

    def __init__(self, delay: float | None = None, *, reason: str | None = None) -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay
        self.reason = reason
