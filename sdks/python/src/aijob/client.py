"""Clients of aijob's JobService: `Client` (blocking) and `AsyncClient` (asyncio).

    with aijob.Client("localhost:50052", api_key=KEY) as client:
        job = client.submit_and_wait("echo", {"x": 1})
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import grpc
import grpc.aio

from aijob._auth import Auth, Token
from aijob.errors import DeadlineExceededError, from_rpc_error
from aijob.jobs import Job, JobPage, JobSpec, JobState, list_request, submit_request
from aijob.v1 import job_service_pb2 as pb
from aijob.v1 import job_service_pb2_grpc as pb_grpc

Spec = Union[JobSpec, Mapping[str, Any]]

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def _credentials(secure: bool, root_certificates: Optional[bytes]) -> Optional[grpc.ChannelCredentials]:
    return grpc.ssl_channel_credentials(root_certificates) if secure or root_certificates else None


class Client:
    """A blocking client. Every call takes `timeout` seconds at most (default 30); errors
    are the typed `aijob.errors` classes. `secure=True` uses TLS (through the Istio gateway)."""

    def __init__(self, address: str = "localhost:50052", *, api_key: Optional[str] = None, token: Optional[Token] = None,
                 timeout: float = 30.0, secure: bool = False, root_certificates: Optional[bytes] = None) -> None:
        self._md = Auth(api_key, token)
        creds = _credentials(secure, root_certificates)
        self._channel = (grpc.secure_channel(address, creds, _CHANNEL_OPTIONS) if creds
                         else grpc.insecure_channel(address, _CHANNEL_OPTIONS))
        self._stub = pb_grpc.JobServiceStub(self._channel)
        self.timeout = timeout

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, metadata=self._md(), timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def submit(self, type: str, input: Optional[Mapping[str, Any]] = None, **options: Any) -> Job:
        """Submits one job; `options` are JobSpec's fields (queue, priority, idempotency_key,
        max_attempts, timeout in seconds, labels, run_at)."""
        return Job.from_proto(self._call(self._stub.SubmitJob, submit_request(JobSpec(type, input, **options))).job)

    def submit_many(self, jobs: Iterable[Spec]) -> List[Job]:
        """Submits up to 1000 jobs in one call; the jobs in the order given."""
        res = self._call(self._stub.SubmitJobs, pb.SubmitJobsRequest(jobs=[submit_request(s) for s in jobs]))
        return [Job.from_proto(r.job) for r in res.results]

    def get(self, job_id: str) -> Job:
        return Job.from_proto(self._call(self._stub.GetJob, pb.GetJobRequest(job_id=job_id)).job)

    def list(self, *, queue: str = "", states: Optional[Sequence[Union[JobState, str]]] = None, type: str = "",
             page_size: int = 100, page_token: str = "") -> JobPage:
        res = self._call(self._stub.ListJobs, list_request(queue, [JobState(s) for s in states or []], type, page_size, page_token))
        return JobPage([Job.from_proto(j) for j in res.jobs], res.next_page_token)

    def cancel(self, job_id: str, reason: str = "") -> Job:
        return Job.from_proto(self._call(self._stub.CancelJob, pb.CancelJobRequest(job_id=job_id, reason=reason)).job)

    def retry(self, job_id: str) -> Job:
        return Job.from_proto(self._call(self._stub.RetryJob, pb.RetryJobRequest(job_id=job_id)).job)

    def watch(self, job_id: str, timeout: Optional[float] = None) -> Iterator[Job]:
        """The job now and at every change, until it ends (or `timeout` seconds pass:
        DeadlineExceededError)."""
        try:
            for res in self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=self._md(), timeout=timeout,
                                           wait_for_ready=True):
                job = Job.from_proto(res.job)
                yield job
                if job.terminal:
                    return
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def wait(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Blocks until the job ends; returns it in its terminal state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            for job in self.watch(job_id, timeout=left):
                if job.terminal:
                    return job
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError(f"job {job_id} did not end within {timeout} s", grpc.StatusCode.DEADLINE_EXCEEDED)

    def submit_and_wait(self, type: str, input: Optional[Mapping[str, Any]] = None, *, wait_timeout: Optional[float] = None,
                        **options: Any) -> Job:
        """Submits a job and waits for its end."""
        return self.wait(self.submit(type, input, **options).id, timeout=wait_timeout)


class AsyncClient:
    """The asyncio client: the same calls as `Client`, awaited; `watch` is an async iterator."""

    def __init__(self, address: str = "localhost:50052", *, api_key: Optional[str] = None, token: Optional[Token] = None,
                 timeout: float = 30.0, secure: bool = False, root_certificates: Optional[bytes] = None) -> None:
        self._md = Auth(api_key, token)
        creds = _credentials(secure, root_certificates)
        self._channel = (grpc.aio.secure_channel(address, creds, _CHANNEL_OPTIONS) if creds
                         else grpc.aio.insecure_channel(address, _CHANNEL_OPTIONS))
        self._stub = pb_grpc.JobServiceStub(self._channel)
        self.timeout = timeout

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self._md(), timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    async def submit(self, type: str, input: Optional[Mapping[str, Any]] = None, **options: Any) -> Job:
        return Job.from_proto((await self._call(self._stub.SubmitJob, submit_request(JobSpec(type, input, **options)))).job)

    async def submit_many(self, jobs: Iterable[Spec]) -> List[Job]:
        res = await self._call(self._stub.SubmitJobs, pb.SubmitJobsRequest(jobs=[submit_request(s) for s in jobs]))
        return [Job.from_proto(r.job) for r in res.results]

    async def get(self, job_id: str) -> Job:
        return Job.from_proto((await self._call(self._stub.GetJob, pb.GetJobRequest(job_id=job_id))).job)

    async def list(self, *, queue: str = "", states: Optional[Sequence[Union[JobState, str]]] = None, type: str = "",
                   page_size: int = 100, page_token: str = "") -> JobPage:
        res = await self._call(self._stub.ListJobs, list_request(queue, [JobState(s) for s in states or []], type, page_size, page_token))
        return JobPage([Job.from_proto(j) for j in res.jobs], res.next_page_token)

    async def cancel(self, job_id: str, reason: str = "") -> Job:
        return Job.from_proto((await self._call(self._stub.CancelJob, pb.CancelJobRequest(job_id=job_id, reason=reason))).job)

    async def retry(self, job_id: str) -> Job:
        return Job.from_proto((await self._call(self._stub.RetryJob, pb.RetryJobRequest(job_id=job_id))).job)

    async def watch(self, job_id: str, timeout: Optional[float] = None) -> AsyncIterator[Job]:
        call = self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=self._md(), timeout=timeout, wait_for_ready=True)
        try:
            async for res in call:
                job = Job.from_proto(res.job)
                yield job
                if job.terminal:
                    return
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        finally:
            call.cancel()

    async def wait(self, job_id: str, timeout: Optional[float] = None) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            async for job in self.watch(job_id, timeout=left):
                if job.terminal:
                    return job
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError(f"job {job_id} did not end within {timeout} s", grpc.StatusCode.DEADLINE_EXCEEDED)

    async def submit_and_wait(self, type: str, input: Optional[Mapping[str, Any]] = None, *,
                              wait_timeout: Optional[float] = None, **options: Any) -> Job:
        return await self.wait((await self.submit(type, input, **options)).id, timeout=wait_timeout)
