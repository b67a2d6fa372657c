"""aijob for Python: a client for submitting and following jobs, and a worker that runs
handlers over the platform's worker gateway."""
from aijob.client import AsyncClient, Client
from aijob.errors import (
    AijobError, DeadlineExceededError, FailedPreconditionError, FieldViolation, InvalidArgumentError, NonRetryableError,
    NotFoundError, PermissionDeniedError, ResourceExhaustedError, RetryableError, UnauthenticatedError, UnavailableError,
)
from aijob.jobs import Job, JobError, JobPage, JobSpec, JobState, Usage
from aijob.worker import Handler, JobContext, Worker

__version__ = "0.1.0"
__all__ = [
    "AijobError", "AsyncClient", "Client", "DeadlineExceededError", "FailedPreconditionError", "FieldViolation", "Handler",
    "InvalidArgumentError", "Job", "JobContext", "JobError", "JobPage", "JobSpec", "JobState", "NonRetryableError",
    "NotFoundError", "PermissionDeniedError", "ResourceExhaustedError", "RetryableError", "UnauthenticatedError",
    "UnavailableError", "Usage", "Worker",
]
