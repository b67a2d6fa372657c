"""The Python SDK against a running platform with its worker gateway. Run by
test/e2e/python-sdk.test.ts, which starts the platform and passes its addresses:
AIJOB_JOB_ADDR, AIJOB_GATEWAY_ADDR, AIJOB_API_KEY (admin), AIJOB_READ_KEY (jobs:read only).
Queues py* are served only by the workers these tests start."""
import asyncio
import json
import os
import sys
import time
import unittest
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Dict, TypeVar

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import grpc  # noqa: E402
import grpc.aio  # noqa: E402

import aijob  # noqa: E402
from aijob.v1 import worker_gateway_service_pb2 as gw  # noqa: E402
from aijob.v1 import worker_gateway_service_pb2_grpc as gw_grpc  # noqa: E402

JOB_ADDR = os.environ.get("AIJOB_JOB_ADDR", "localhost:50052")
GATEWAY_ADDR = os.environ.get("AIJOB_GATEWAY_ADDR", "localhost:50054")
KEY = os.environ.get("AIJOB_API_KEY", "")
READ_KEY = os.environ.get("AIJOB_READ_KEY", "")
DEADLINE = 30.0
T = TypeVar("T")


@asynccontextmanager
async def serving(worker: aijob.Worker) -> AsyncIterator[aijob.Worker]:
    task = asyncio.ensure_future(worker.serve())
    try:
        await worker.wait_connected(DEADLINE)
        yield worker
    finally:
        await worker.stop(grace=1.0)
        await asyncio.wait_for(task, DEADLINE)


async def until(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def announced(call: Callable[[], "asyncio.Future[T]"]) -> T:
    """Runs a submitting call, again while the job service has not yet heard of the new
    worker's types (they reach it through the scheduler's worker registry)."""
    end = time.monotonic() + DEADLINE
    while True:
        try:
            return await call()
        except aijob.InvalidArgumentError as err:
            if "type" not in [v.field for v in err.field_violations] or time.monotonic() > end:
                raise
            await asyncio.sleep(0.05)


def py_worker(queue: str = "py", **kw: object) -> aijob.Worker:
    return aijob.Worker(GATEWAY_ADDR, api_key=KEY, queues=[queue], slots=4, **kw)  # type: ignore[arg-type]


class ClientAndWorker(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.client = aijob.AsyncClient(JOB_ADDR, api_key=KEY)
        self.w = py_worker()
        self.release = asyncio.Event()
        self.seen: Dict[str, float] = {}

        @self.w.handle("py.echo")
        async def echo(job: aijob.JobContext) -> dict:
            job.report_usage("openai", "gpt-4o-mini", prompt_tokens=12, completion_tokens=3)
            return {"echo": job.input, "attempt": job.attempt, "worker": "python"}

        @self.w.handle("py.progress")
        async def progress(job: aijob.JobContext) -> dict:
            job.progress(40, "forty")
            await asyncio.wait_for(self.release.wait(), DEADLINE)
            return {"done": True}

        @self.w.handle("py.block")
        async def block(job: aijob.JobContext) -> None:
            self.seen["started"] = time.monotonic()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.seen["cancelled"] = time.monotonic()
                raise

        @self.w.handle("py.fail")
        async def fail(job: aijob.JobContext) -> None:
            raise aijob.NonRetryableError("BAD_INPUT", f"refused on attempt {job.attempt}")

    async def asyncTearDown(self) -> None:
        await self.client.close()

    async def test_sync_client_submit_and_wait_runs_on_the_python_worker_with_usage(self) -> None:
        async with serving(self.w):
            def sync_calls() -> aijob.Job:
                with aijob.Client(JOB_ADDR, token=lambda: KEY) as c:  # a callable: asked at every call
                    end = time.monotonic() + DEADLINE
                    while True:
                        try:
                            job = c.submit_and_wait("py.echo", {"x": 1}, queue="py", wait_timeout=DEADLINE)
                            break
                        except aijob.InvalidArgumentError:
                            if time.monotonic() > end:
                                raise
                            time.sleep(0.05)
                    self.assertEqual(c.get(job.id).state, aijob.JobState.SUCCEEDED)
                    return job
            job = await asyncio.get_running_loop().run_in_executor(None, sync_calls)
        self.assertEqual(job.state, aijob.JobState.SUCCEEDED)
        self.assertEqual(job.output, {"echo": {"x": 1.0}, "attempt": 1.0, "worker": "python"})
        self.assertTrue(job.worker_id.startswith(self.w.name + "@"), job.worker_id)
        # The usage it reported is in the usage table (checked by python-sdk.test.ts).

    async def test_async_client_submit_many_watch_get_list(self) -> None:
        async with serving(self.w):
            jobs = await announced(lambda: self.client.submit_many([
                {"type": "py.echo", "input": {"n": n}, "queue": "py", "labels": {"batch": "b1"}} for n in range(3)]))
            self.assertEqual(len(jobs), 3)
            states = [j.state async for j in self.client.watch(jobs[0].id, timeout=DEADLINE)]
            self.assertEqual(states[-1], aijob.JobState.SUCCEEDED)
            for j in jobs[1:]:
                self.assertEqual((await self.client.wait(j.id, timeout=DEADLINE)).state, aijob.JobState.SUCCEEDED)
        got = await self.client.get(jobs[2].id)
        self.assertEqual((got.input, got.labels), ({"n": 2.0}, {"batch": "b1"}))
        page = await self.client.list(queue="py", states=[aijob.JobState.SUCCEEDED], type="py.echo", page_size=1000)
        self.assertTrue({j.id for j in jobs} <= {j.id for j in page.jobs})

    async def test_watch_sees_progress_of_a_running_handler(self) -> None:
        async with serving(self.w):
            job = await announced(lambda: self.client.submit("py.progress", queue="py"))
            async for j in self.client.watch(job.id, timeout=DEADLINE):
                if j.state == aijob.JobState.RUNNING and j.progress >= 40:
                    self.assertEqual(j.progress_note, "forty")
                    self.release.set()
                if j.terminal:
                    break
            self.assertTrue(self.release.is_set(), "the watch saw the progress")
            self.assertEqual(j.state, aijob.JobState.SUCCEEDED)

    async def test_cancellation_reaches_a_running_handler_within_one_second(self) -> None:
        async with serving(self.w):
            job = await announced(lambda: self.client.submit("py.block", queue="py"))
            await until(lambda: "started" in self.seen, "the handler to start")
            asked = time.monotonic()
            await self.client.cancel(job.id, reason="test")
            await until(lambda: "cancelled" in self.seen, "the handler to see the cancel", timeout=5)
            self.assertLess(self.seen["cancelled"] - asked, 1.0)
            done = await self.client.wait(job.id, timeout=DEADLINE)
        self.assertEqual(done.state, aijob.JobState.CANCELLED)

    async def test_a_handler_past_its_timeout_fails_with_timeout(self) -> None:
        async with serving(self.w):
            job = await announced(lambda: self.client.submit_and_wait(
                "py.block", queue="py", timeout=0.3, max_attempts=1, wait_timeout=DEADLINE))
        self.assertEqual(job.state, aijob.JobState.FAILED)
        self.assertEqual(job.error.code if job.error else None, "TIMEOUT")

    async def test_non_retryable_failure_then_retry(self) -> None:
        async with serving(self.w):
            job = await announced(lambda: self.client.submit_and_wait("py.fail", queue="py", wait_timeout=DEADLINE))
            self.assertEqual((job.state, job.attempt), (aijob.JobState.FAILED, 1))
            assert job.error is not None
            self.assertEqual((job.error.code, job.error.retryable, job.error.message), ("BAD_INPUT", False, "refused on attempt 1"))
            again = await self.client.retry(job.id)
            self.assertFalse(again.terminal)
            job = await self.client.wait(job.id, timeout=DEADLINE)
        self.assertEqual((job.state, job.attempt), (aijob.JobState.FAILED, 2))

    async def test_graceful_stop_hands_a_running_job_to_another_worker(self) -> None:
        first = py_worker("py-stop", name="first")
        started = asyncio.Event()

        @first.handle("py.slow")
        async def slow(job: aijob.JobContext) -> dict:
            started.set()
            await asyncio.sleep(3600)
            return {"by": "first"}

        task = asyncio.ensure_future(first.serve())
        await first.wait_connected(DEADLINE)
        job = await announced(lambda: self.client.submit("py.slow", queue="py-stop"))
        await asyncio.wait_for(started.wait(), DEADLINE)
        await first.stop(grace=0.1)
        await asyncio.wait_for(task, DEADLINE)
        second = py_worker("py-stop", name="second")

        @second.handle("py.slow")
        async def quick(job: aijob.JobContext) -> dict:
            return {"by": "second", "attempt": job.attempt}

        async with serving(second):
            done = await self.client.wait(job.id, timeout=DEADLINE)
        self.assertEqual((done.state, done.output), (aijob.JobState.SUCCEEDED, {"by": "second", "attempt": 1.0}))


class Protocol(unittest.IsolatedAsyncioTestCase):
    """The worker protocol itself, over a raw stream: fencing and refusals."""

    async def asyncSetUp(self) -> None:
        self.client = aijob.AsyncClient(JOB_ADDR, api_key=KEY)
        self.channel = grpc.aio.insecure_channel(GATEWAY_ADDR)
        self.stub = gw_grpc.WorkerGatewayServiceStub(self.channel)

    async def asyncTearDown(self) -> None:
        await self.client.close()
        await self.channel.close()

    def hello(self, queue: str, slots: int = 1) -> gw.ConnectRequest:
        return gw.ConnectRequest(hello=gw.WorkerHello(name="raw", queues=[queue], job_types=["py.raw"], slots=slots))

    async def test_a_stale_attempts_result_is_refused_and_the_job_recorded_once(self) -> None:
        out: "asyncio.Queue[gw.ConnectRequest | None]" = asyncio.Queue()
        await out.put(self.hello("py-raw"))

        async def requests():  # type: ignore[no-untyped-def]
            while (m := await out.get()) is not None:
                yield m

        call = self.stub.Connect(requests(), metadata=(("authorization", f"Bearer {KEY}"),))
        replies = call.__aiter__()
        welcome = await asyncio.wait_for(replies.__anext__(), DEADLINE)
        self.assertTrue(welcome.welcome.worker_id.startswith("raw@"))
        job = await announced(lambda: self.client.submit("py.raw", queue="py-raw"))
        pushed = (await asyncio.wait_for(replies.__anext__(), DEADLINE)).job
        self.assertEqual((pushed.job_id, pushed.attempt, json.loads(pushed.input_json or b"{}")), (job.id, 1, {}))

        async def report(msg: gw.ConnectRequest) -> gw.ResultAck:
            await out.put(msg)
            return (await asyncio.wait_for(replies.__anext__(), DEADLINE)).result_ack

        ok = gw.JOB_OUTCOME_SUCCEEDED
        wrong_attempt = await report(gw.ConnectRequest(result=gw.JobResult(job_id=job.id, attempt=2, outcome=ok, output_json=b'{"by":"stale"}')))
        self.assertFalse(wrong_attempt.accepted)
        self.assertIn("not held", wrong_attempt.reason)
        other_job = await report(gw.ConnectRequest(result=gw.JobResult(job_id=str(uuid.uuid4()), attempt=1, outcome=ok)))
        self.assertFalse(other_job.accepted)
        back = await report(gw.ConnectRequest(hand_back=gw.JobHandBack(job_id=job.id, attempt=1)))
        self.assertTrue(back.accepted, back.reason)
        late = await report(gw.ConnectRequest(result=gw.JobResult(job_id=job.id, attempt=1, outcome=ok, output_json=b'{"by":"stale"}')))
        self.assertFalse(late.accepted, "a handed-back attempt's result is stale")
        await out.put(None)
        async for _ in call:
            pass
        self.assertEqual(await call.code(), grpc.StatusCode.OK)

        real = py_worker("py-raw", name="real")

        @real.handle("py.raw")
        async def run(j: aijob.JobContext) -> dict:
            return {"by": "real", "attempt": j.attempt}

        async with serving(real):
            done = await self.client.wait(job.id, timeout=DEADLINE)
        self.assertEqual((done.state, done.output, done.attempt), (aijob.JobState.SUCCEEDED, {"by": "real", "attempt": 1.0}, 1))

    async def connect_status(self, key: str, hello: gw.ConnectRequest) -> grpc.aio.AioRpcError:
        call = self.stub.Connect(iter([hello]), metadata=(("authorization", f"Bearer {key}"),))
        with self.assertRaises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        return caught.exception

    async def test_refusals_have_clear_statuses(self) -> None:
        denied = await self.connect_status(READ_KEY, self.hello("py-x"))
        self.assertEqual(denied.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("workers:run", denied.details() or "")
        bad = await self.connect_status(KEY, self.hello("py-x", slots=0))
        self.assertEqual(bad.code(), grpc.StatusCode.INVALID_ARGUMENT)
        err = aijob.errors.from_rpc_error(bad)
        self.assertIsInstance(err, aijob.InvalidArgumentError)
        self.assertIn("hello.slots", [v.field for v in err.field_violations])
        unknown = aijob.Worker(GATEWAY_ADDR, api_key="aijob_not_a_key", queues=["py-x"])

        @unknown.handle("py.raw")
        async def never(j: aijob.JobContext) -> None:
            return None

        with self.assertRaises(aijob.UnauthenticatedError):
            await asyncio.wait_for(unknown.serve(), DEADLINE)
        with self.assertRaises(aijob.NotFoundError):
            await self.client.get(str(uuid.uuid4()))
        with self.assertRaises(aijob.InvalidArgumentError) as caught:
            await self.client.submit("not a type!", queue="py")
        self.assertIn("type", [v.field for v in caught.exception.field_violations])


if __name__ == "__main__":
    unittest.main(verbosity=2)
