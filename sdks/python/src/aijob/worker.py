"""A worker that runs job handlers in asyncio, connected to aijob's worker gateway over
one gRPC stream (aijob.v1.WorkerGatewayService/Connect).

    worker = aijob.Worker("localhost:50054", api_key=KEY, queues=["embeddings"], slots=8)

    @worker.handle("embed.batch")
    async def embed(job: aijob.JobContext) -> dict:
        job.progress(50, "half way")
        job.report_usage("openai", "text-embedding-3-small", prompt_tokens=812, completion_tokens=0)
        return {"vectors": [...]}

    worker.run()   # until SIGINT/SIGTERM; or `await worker.serve()` in your own loop
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence

import grpc
import grpc.aio

from aijob._auth import Auth, Token
from aijob.errors import NonRetryableError, RetryableError, from_rpc_error
from aijob.v1 import job_pb2, worker_gateway_service_pb2 as gw
from aijob.v1 import worker_gateway_service_pb2_grpc as gw_grpc

__all__ = ["Worker", "JobContext", "Handler"]

VERSION = "aijob-python/0.1.0"
log = logging.getLogger("aijob.worker")

# Errors after which reconnecting cannot help.
_FATAL = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


@dataclass
class JobContext:
    """The job as a handler sees it, and how the handler reports back."""

    id: str
    workspace_id: str
    queue: str
    type: str
    attempt: int
    max_attempts: int
    input: Dict[str, Any]
    labels: Dict[str, str]
    #: Stable across attempts: use it to make the handler's own side effects idempotent.
    idempotency_key: str
    #: Seconds this attempt may run; the handler is cancelled (FAILED, TIMEOUT, retryable) after it.
    timeout: float
    #: time.monotonic() at which the timeout strikes.
    deadline: float
    _send_progress: Callable[[float, str], None] = field(repr=False, default=lambda p, n: None)
    _usage: List[job_pb2.JobUsage] = field(repr=False, default_factory=list)

    def progress(self, percent: float, note: str = "") -> None:
        """Reports progress (0-100), shown by WatchJob. Calls are coalesced."""
        self._send_progress(percent, note)

    def report_usage(self, provider: str, model: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Records model usage of this attempt; cost comes from the platform's price table."""
        self._usage.append(job_pb2.JobUsage(provider=provider, model=model, prompt_tokens=int(prompt_tokens),
                                            completion_tokens=int(completion_tokens)))

    @property
    def remaining(self) -> float:
        """Seconds left before the timeout."""
        return max(0.0, self.deadline - time.monotonic())


Handler = Callable[[JobContext], Awaitable[Any]]


class _Attempt:
    def __init__(self, job: Any, ctx: JobContext) -> None:
        self.job = job
        self.ctx = ctx
        self.task: Optional["asyncio.Task[None]"] = None
        #: Why the handler was stopped from outside: cancelled, timeout, shutdown, withdrawn.
        self.stop_reason: Optional[str] = None
        self.last_progress = 0.0
        self.progress_handle: Optional[asyncio.TimerHandle] = None
        self.pending_progress = (0.0, "")


class Worker:
    """Runs handlers for the job types it registers, from the queues it serves, `slots`
    at a time. At least once: a job whose worker dies or disconnects runs again elsewhere
    (the same attempt when it was handed back); use `job.idempotency_key` for side effects."""

    def __init__(self, address: str = "localhost:50054", *, api_key: Optional[str] = None,
                 token: Optional[Token] = None,
                 queues: Sequence[str] = ("default",), slots: int = 10, name: Optional[str] = None,
                 labels: Optional[Mapping[str, str]] = None, secure: bool = False,
                 root_certificates: Optional[bytes] = None, reconnect_delay: float = 0.5) -> None:
        self._auth = Auth(api_key, token)
        #: A callable token is asked again at every connect (a JWT that expires, e.g. from
        #: AuthService.IssueToken): a session ended UNAUTHENTICATED then reconnects.
        self._renewable = callable(token)
        self.address = address
        self.queues = list(queues)
        self.slots = slots
        self.name = name or f"py-{socket.gethostname()}-{os.getpid()}"[:64]
        self.labels = dict(labels or {})
        self.worker_id = ""
        self._creds = grpc.ssl_channel_credentials(root_certificates) if secure or root_certificates else None
        self._handlers: Dict[str, Handler] = {}
        self._running: Dict[str, _Attempt] = {}
        self._acks: Dict[str, "asyncio.Future[gw.ResultAck]"] = {}
        self._outbox: Optional["asyncio.Queue[Optional[gw.ConnectRequest]]"] = None
        self._stopping: Optional[asyncio.Event] = None
        self._connected: Optional[asyncio.Event] = None
        self._reconnect_delay = reconnect_delay

    def handle(self, job_type: str) -> Callable[[Handler], Handler]:
        """Registers the decorated coroutine function as the handler of `job_type`."""
        def register(fn: Handler) -> Handler:
            if not asyncio.iscoroutinefunction(fn):
                raise TypeError(f"the handler of {job_type} must be an async function")
            self._handlers[job_type] = fn
            return fn
        return register

    @property
    def running(self) -> int:
        return len(self._running)

    def run(self) -> None:
        """Serves until SIGINT or SIGTERM, then stops gracefully (see `stop`)."""
        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
            await self.serve()
        asyncio.run(main())

    async def wait_connected(self, timeout: Optional[float] = None) -> None:
        """Resolves once the gateway has welcomed this worker."""
        while self._connected is None:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def serve(self) -> None:
        """Connects and runs jobs until `stop()`; reconnects after a broken stream.
        Raises AijobError when the gateway refuses the worker (credential, scope, hello)."""
        if not self._handlers:
            raise ValueError("register a handler with @worker.handle(type) first")
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        delay = self._reconnect_delay
        while not self._stopping.is_set():
            try:
                await self._session()
                delay = self._reconnect_delay
            except grpc.RpcError as err:
                code = err.code()  # type: ignore[attr-defined]
                renewable = code == grpc.StatusCode.UNAUTHENTICATED and self._renewable and self.worker_id != ""
                if code in _FATAL and not renewable:
                    raise from_rpc_error(err) from None
                if not self._stopping.is_set():
                    log.warning("gateway stream broke (%s); reconnecting in %.1f s", err.code(), delay)  # type: ignore[attr-defined]
            finally:
                self._connected.clear()
                self._abandon()
            if not self._stopping.is_set():
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 10.0)

    async def stop(self, grace: float = 10.0) -> None:
        """Graceful stop: no new jobs (drain); running handlers get `grace` seconds to
        finish, the rest are cancelled and handed back (another worker runs the same
        attempt); then the stream is closed."""
        if self._stopping is None or self._stopping.is_set():
            return
        self._stopping.set()
        if self._outbox is None:
            return
        self._send(gw.ConnectRequest(drain=gw.WorkerDrain()))
        end = time.monotonic() + grace
        while self._running and time.monotonic() < end:
            await asyncio.sleep(0.05)
        for a in list(self._running.values()):
            self._interrupt(a, "shutdown")
        while self._running and time.monotonic() < end + 5:
            await asyncio.sleep(0.02)
        if self._outbox is not None:
            self._outbox.put_nowait(None)

    # -- the session -------------------------------------------------------------------

    async def _session(self) -> None:
        channel = (grpc.aio.secure_channel(self.address, self._creds, _OPTIONS) if self._creds
                   else grpc.aio.insecure_channel(self.address, _OPTIONS))
        outbox: "asyncio.Queue[Optional[gw.ConnectRequest]]" = asyncio.Queue()
        self._outbox = outbox
        hello = gw.ConnectRequest(hello=gw.WorkerHello(
            name=self.name, queues=self.queues, job_types=list(self._handlers), slots=self.slots,
            labels=self.labels, version=VERSION))

        async def requests():  # type: ignore[no-untyped-def]
            yield hello
            while True:
                msg = await outbox.get()
                if msg is None:
                    return
                yield msg

        beat: Optional["asyncio.Task[None]"] = None
        try:
            call = gw_grpc.WorkerGatewayServiceStub(channel).Connect(requests(), metadata=self._auth())
            async for res in call:
                kind = res.WhichOneof("message")
                if kind == "welcome":
                    self.worker_id = res.welcome.worker_id
                    interval = res.welcome.heartbeat_interval.ToTimedelta().total_seconds() or 2.0
                    beat = asyncio.ensure_future(self._beat(interval))
                    assert self._connected is not None
                    self._connected.set()
                    log.info("connected to %s as %s", self.address, self.worker_id)
                elif kind == "job":
                    self._start(res.job)
                elif kind == "cancel":
                    a = self._running.get(res.cancel.job_id)
                    if a is not None and a.job.attempt == res.cancel.attempt:
                        reason = "timeout" if res.cancel.reason == gw.CANCEL_REASON_TIMEOUT else "cancelled"
                        self._interrupt(a, reason)
                elif kind == "result_ack":
                    fut = self._acks.pop(f"{res.result_ack.job_id}:{res.result_ack.attempt}", None)
                    if fut is not None and not fut.done():
                        fut.set_result(res.result_ack)
        finally:
            if beat is not None:
                beat.cancel()
            self._outbox = None
            await channel.close()

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._send(gw.ConnectRequest(heartbeat=gw.WorkerBeat()))

    def _send(self, msg: gw.ConnectRequest) -> bool:
        if self._outbox is None:
            return False
        self._outbox.put_nowait(msg)
        return True

    def _abandon(self) -> None:
        """The stream is gone: the gateway has handed our attempts back; stop their handlers."""
        for a in list(self._running.values()):
            self._interrupt(a, "withdrawn")
        for fut in self._acks.values():
            if not fut.done():
                fut.cancel()
        self._acks.clear()

    # -- one attempt -------------------------------------------------------------------

    def _start(self, job: Any) -> None:
        try:
            value = json.loads(job.input_json.decode("utf-8")) if job.input_json else {}
        except ValueError:
            value = {}
        timeout = job.timeout.ToTimedelta().total_seconds() if job.HasField("timeout") else 300.0
        attempt: _Attempt
        ctx = JobContext(
            id=job.job_id, workspace_id=job.workspace_id, queue=job.queue, type=job.type, attempt=job.attempt,
            max_attempts=job.max_attempts, input=value if isinstance(value, dict) else {}, labels=dict(job.labels),
            idempotency_key=job.idempotency_key or job.job_id, timeout=timeout, deadline=time.monotonic() + timeout,
            _send_progress=lambda pct, note: self._progress(attempt, pct, note),
        )
        attempt = _Attempt(job, ctx)
        self._running[job.job_id] = attempt
        attempt.task = asyncio.ensure_future(self._execute(attempt))

    def _interrupt(self, a: _Attempt, reason: str) -> None:
        if a.stop_reason is None and a.task is not None and not a.task.done():
            a.stop_reason = reason
            a.task.cancel()

    async def _execute(self, a: _Attempt) -> None:
        job, ctx = a.job, a.ctx
        result = gw.JobResult(job_id=job.job_id, attempt=job.attempt)
        hand_back = False
        try:
            handler = self._handlers[job.type]
            try:
                output = await asyncio.wait_for(handler(ctx), timeout=ctx.timeout)
                result.outcome = gw.JOB_OUTCOME_SUCCEEDED
                result.output_json = _output_json(output)
            except asyncio.CancelledError:
                if a.stop_reason in ("shutdown", None):
                    hand_back = True  # stopping (or the event loop is): another worker runs the same attempt
                elif a.stop_reason in ("withdrawn", "timeout"):
                    return  # the gateway has taken the attempt back (or recorded its timeout)
                else:
                    result.outcome = gw.JOB_OUTCOME_CANCELLED
            except asyncio.TimeoutError:
                _fail(result, "TIMEOUT", f"timed out after {ctx.timeout:g} s", True)
            except RetryableError as err:
                _fail(result, err.code, err.message, True, err.retry_after)
            except NonRetryableError as err:
                _fail(result, err.code, err.message, False)
            except _OutputError as err:
                _fail(result, "OUTPUT_INVALID", str(err), False)
            except Exception as err:  # noqa: BLE001 - any other failure is the handler's, retryable
                _fail(result, "HANDLER_ERROR", f"{type(err).__name__}: {err}"[:4096], True)
            if a.progress_handle is not None:
                a.progress_handle.cancel()
            result.usage.extend(ctx._usage)
            msg = (gw.ConnectRequest(hand_back=gw.JobHandBack(job_id=job.job_id, attempt=job.attempt)) if hand_back
                   else gw.ConnectRequest(result=result))
            ack = await self._report(job.job_id, job.attempt, msg)
            if ack is not None and not ack.accepted:
                log.warning("result of job %s attempt %d refused: %s", job.job_id, job.attempt, ack.reason)
        finally:
            self._running.pop(job.job_id, None)

    async def _report(self, job_id: str, attempt: int, msg: gw.ConnectRequest) -> Optional[gw.ResultAck]:
        key = f"{job_id}:{attempt}"
        fut: "asyncio.Future[gw.ResultAck]" = asyncio.get_running_loop().create_future()
        self._acks[key] = fut
        if not self._send(msg):
            self._acks.pop(key, None)
            return None
        try:
            return await asyncio.wait_for(fut, 30.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            return None

    def _progress(self, a: _Attempt, pct: float, note: str) -> None:
        a.pending_progress = (float(pct), note[:1024])
        if a.progress_handle is not None:
            return
        wait = max(0.0, a.last_progress + 0.2 - time.monotonic())

        def flush() -> None:
            a.progress_handle = None
            a.last_progress = time.monotonic()
            p, n = a.pending_progress
            self._send(gw.ConnectRequest(progress=gw.JobProgress(job_id=a.job.job_id, attempt=a.job.attempt, percent=p, note=n)))

        if wait == 0:
            flush()
        else:
            a.progress_handle = asyncio.get_running_loop().call_later(wait, flush)


_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


class _OutputError(Exception):
    pass


def _output_json(value: Any) -> bytes:
    obj = {} if value is None else value if isinstance(value, dict) else {"result": value}
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise _OutputError(f"output is not JSON: {err}") from None


def _fail(result: gw.JobResult, code: str, message: str, retryable: bool, retry_after: Optional[float] = None) -> None:
    result.outcome = gw.JOB_OUTCOME_FAILED
    result.error.code = code
    result.error.message = message
    result.error.retryable = retryable
    if retry_after:
        result.error.retry_after.FromTimedelta(timedelta(seconds=retry_after))
