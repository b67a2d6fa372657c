"""Jobs as the SDK returns them: plain dataclasses converted from the protocol's messages."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Union

from google.protobuf import json_format

from aijob.v1 import job_pb2, job_service_pb2


class JobState(str, enum.Enum):
    """Where a job is: QUEUED -> DISPATCHED -> RUNNING -> SUCCEEDED | RETRY_WAIT -> ... | FAILED | CANCELLED."""

    UNSPECIFIED = "UNSPECIFIED"
    QUEUED = "QUEUED"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    RETRY_WAIT = "RETRY_WAIT"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    def to_proto(self) -> int:
        return job_pb2.JobState.Value(f"JOB_STATE_{self.value}")

    @classmethod
    def from_proto(cls, value: int) -> "JobState":
        try:
            return cls(job_pb2.JobState.Name(value).replace("JOB_STATE_", ""))
        except ValueError:
            return cls.UNSPECIFIED


@dataclass(frozen=True)
class JobError:
    code: str
    message: str
    retryable: bool
    retry_after: Optional[float] = None


@dataclass(frozen=True)
class Usage:
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Job:
    """A job's record. `input` and `output` are JSON objects (numbers come back as floats)."""

    id: str
    workspace_id: str
    queue: str
    type: str
    state: JobState
    attempt: int
    max_attempts: int
    priority: int
    input: Dict[str, Any]
    output: Optional[Dict[str, Any]]
    error: Optional[JobError]
    labels: Dict[str, str]
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    started_at: Optional[datetime]
    finished_at: Optional[datetime]
    timeout: Optional[float]
    idempotency_key: str
    worker_id: str
    trace_id: str
    progress: float
    progress_note: str
    usage: List[Usage] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @classmethod
    def from_proto(cls, j: job_pb2.Job) -> "Job":
        return cls(
            id=j.id, workspace_id=j.workspace_id, queue=j.queue, type=j.type, state=JobState.from_proto(j.state),
            attempt=j.attempt, max_attempts=j.max_attempts, priority=j.priority,
            input=json_format.MessageToDict(j.input) if j.HasField("input") else {},
            output=json_format.MessageToDict(j.output) if j.HasField("output") else None,
            error=JobError(j.error.code, j.error.message, j.error.retryable,
                           j.error.retry_after.ToTimedelta().total_seconds() if j.error.HasField("retry_after") else None)
            if j.HasField("error") and j.error.code else None,
            labels=dict(j.labels), created_at=_time(j, "created_at"), updated_at=_time(j, "updated_at"),
            started_at=_time(j, "started_at"), finished_at=_time(j, "finished_at"),
            timeout=j.timeout.ToTimedelta().total_seconds() if j.HasField("timeout") else None,
            idempotency_key=j.idempotency_key, worker_id=j.worker_id, trace_id=j.trace_id,
            progress=j.progress, progress_note=j.progress_note,
            usage=[Usage(u.provider, u.model, u.prompt_tokens, u.completion_tokens, u.cost_usd) for u in j.usage],
        )


@dataclass(frozen=True)
class JobPage:
    jobs: List[Job]
    next_page_token: str


@dataclass
class JobSpec:
    """One job to submit (for submit_many); the arguments of `submit`."""

    type: str
    input: Optional[Mapping[str, Any]] = None
    queue: str = "default"
    priority: int = 0
    idempotency_key: str = ""
    max_attempts: int = 0
    timeout: Optional[float] = None
    labels: Optional[Mapping[str, str]] = None
    run_at: Optional[datetime] = None


def _time(msg: Any, name: str) -> Optional[datetime]:
    return getattr(msg, name).ToDatetime(tzinfo=timezone.utc) if msg.HasField(name) else None


def submit_request(spec: Union[JobSpec, Mapping[str, Any]]) -> job_service_pb2.SubmitJobRequest:
    s = spec if isinstance(spec, JobSpec) else JobSpec(**spec)
    req = job_service_pb2.SubmitJobRequest(
        queue=s.queue, type=s.type, priority=s.priority, idempotency_key=s.idempotency_key,
        max_attempts=s.max_attempts, labels=dict(s.labels or {}),
    )
    if s.input:
        req.input.update(dict(s.input))
    if s.timeout is not None:
        req.timeout.FromTimedelta(timedelta(seconds=s.timeout))
    if s.run_at is not None:
        req.run_at.FromDatetime(s.run_at.astimezone(timezone.utc).replace(tzinfo=None) if s.run_at.tzinfo else s.run_at)
    return req


def list_request(queue: str, states: Optional[List[JobState]], type: str, page_size: int,
                 page_token: str) -> job_service_pb2.ListJobsRequest:
    return job_service_pb2.ListJobsRequest(
        queue=queue, type=type, page_size=page_size, page_token=page_token,
        states=[JobState(s).to_proto() for s in (states or [])],
    )
