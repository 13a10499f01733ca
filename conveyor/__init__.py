"""conveyor: durable background jobs for Python.

One SQLite file and no server by default; the same code on Redis or PostgreSQL with another
URL. See README.md and docs/.
"""

from conveyor.app import App
from conveyor.canvas import Failure, GroupJob, Workflow, chain, chord, group
from conveyor.context import JobContext, current_job, progress
from conveyor.errors import (
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
    JobCancelled,
    JobError,
    JobExpired,
    JobFailed,
    JobNotFound,
    Retry,
    SerializationError,
    SoftTimeLimitExceeded,
    TaskNotFound,
    TimeLimitExceeded,
    WorkerCrashed,
)
from conveyor.job import ErrorInfo, Job, JobInfo, Progress, State
from conveyor.limits import LimitInfo, LimitUse
from conveyor.task import Signature, Task
from conveyor.worker.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "App",
    "BackendUnavailable",
    "ConfigurationError",
    "ConveyorError",
    "ErrorInfo",
    "Failure",
    "GroupJob",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobExpired",
    "JobFailed",
    "JobInfo",
    "JobNotFound",
    "LimitInfo",
    "LimitUse",
    "Progress",
    "Retry",
    "SerializationError",
    "Signature",
    "SoftTimeLimitExceeded",
    "State",
    "Task",
    "TaskNotFound",
    "TimeLimitExceeded",
    "Worker",
    "WorkerCrashed",
    "Workflow",
    "__version__",
    "chain",
    "chord",
    "current_job",
    "group",
    "progress",
]
