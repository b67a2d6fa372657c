"""A Python worker as its own process, for the platform test (test/e2e/python-sdk.test.ts):
serves `sleep` jobs (input.ms) on AIJOB_QUEUE next to the TypeScript workers and prints one
JSON line per event (connected, started), so the test can kill it mid-job."""
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import aijob  # noqa: E402

worker = aijob.Worker(os.environ["AIJOB_GATEWAY_ADDR"], api_key=os.environ["AIJOB_API_KEY"],
                      queues=[os.environ.get("AIJOB_QUEUE", "default")], slots=int(os.environ.get("AIJOB_SLOTS", "2")),
                      name="py-proc")


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


@worker.handle("sleep")
async def sleep(job: aijob.JobContext) -> dict:
    say(started=job.id, attempt=job.attempt)
    await asyncio.sleep(float(job.input.get("ms", 0)) / 1000)
    return {"slept": job.input.get("ms", 0), "by": "python"}


async def main() -> None:
    serving = asyncio.ensure_future(worker.serve())
    await worker.wait_connected(30)
    say(connected=worker.worker_id)
    await serving


asyncio.run(main())
