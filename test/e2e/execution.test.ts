import t, { type Test } from 'tap';
import { join } from 'node:path';
import { InvalidArgumentError, JobState, ResourceExhaustedError, stateName } from '@aijob/sdk';
import { repoRoot, ServiceProcess } from '../helpers/processes.js';
import { startPlatform, waitFor, type Platform } from '../helpers/platform.js';

async function customWorker(t: Test, p: Platform): Promise<ServiceProcess> {
  const w = new ServiceProcess('custom-worker', join(repoRoot, 'test/fixtures/custom-worker.mjs'), { ...p.env('worker'), CUSTOM_HEARTBEAT_MS: '60000' });
  p.procs.push(w);
  await w.waitForLine((l) => l['msg'] === 'custom worker ready', 30_000);
  void t;
  return w;
}

t.test('a handler registered through the library runs in its own worker process', async (t) => {
  const p = await startPlatform(t, { workers: 0, serviceEnv: { job: { LLM_PRICES: '{"fakeai/m1":{"prompt":1,"completion":2}}' } } });
  const c = p.client();
  await t.rejects(c.submit({ type: 'embed.batch', queue: 'custom' }), InvalidArgumentError, 'unknown type refused before any worker announces it');
  await customWorker(t, p);
  const job = await waitFor(() => c.submit({ type: 'embed.batch', queue: 'custom', input: { texts: ['a', 'bcd'], hold_ms: 400 } })
    .catch(() => undefined), 10_000, 'the type to be announced');
  const seen: string[] = [];
  for await (const j of c.watch(job.id)) seen.push(`${stateName(j.state)}:${j.progress}:${j.progressNote}`);
  t.ok(seen.includes('RUNNING:50:half way'), `progress visible in WatchJob (${seen.join(', ')})`);
  const done = await c.get(job.id);
  t.same(done.output, { vectors: [[1], [3]], attempt: 1, key: job.id });

  // Configured to beat once a minute, the worker keeps to the scheduler's 500 ms, so a 3 s job is not taken for lost.
  const held = await c.submitAndWait({ type: 'embed.batch', queue: 'custom', input: { texts: ['x'], hold_ms: 3_000 } }, { timeoutMs: 20_000 });
  t.same([stateName(held.state), held.attempt], ['SUCCEEDED', 1], 'a library worker keeps to the scheduler\'s heartbeat interval');

  const bad = await c.submitAndWait({ type: 'embed.batch', queue: 'custom', input: { texts: 'nope' } }, { timeoutMs: 20_000 });
  t.equal(bad.state, JobState.JOB_STATE_FAILED);
  t.same(bad.error, { code: 'INVALID_INPUT', message: 'texts must be a list', retryable: false }, 'non-retryable error, no retry');
  t.equal(bad.attempt, 1);

  // A stock worker on the same queue: each kind runs the types it has handlers for and
  // passes the others on, so nothing fails as UNKNOWN_JOB_TYPE.
  await p.addWorker({ WORKER_QUEUES: 'custom' });
  const mixed = await c.submitMany(Array.from({ length: 12 }, (_, i) => i % 2
    ? { type: 'embed.batch', queue: 'custom', input: { texts: ['x'] } }
    : { type: 'echo', queue: 'custom', input: { i } }));
  const ended = await waitFor(async () => {
    const js = await Promise.all(mixed.map((j) => c.get(j.id)));
    return js.every((j) => j.state === JobState.JOB_STATE_SUCCEEDED || j.state === JobState.JOB_STATE_FAILED) ? js : undefined;
  }, 30_000, 'the mixed jobs to end');
  t.same(ended.map((j) => stateName(j.state)), mixed.map(() => 'SUCCEEDED'), 'every job ran on a worker that has its handler');
  const ran = await p.sql()`SELECT DISTINCT type, worker_id FROM jobs WHERE queue = 'custom' AND type IN ('echo', 'embed.batch')
    AND id = ANY(${mixed.map((j) => j.id)}::uuid[]) ORDER BY type`;
  t.same(ran.map((r) => r['type']), ['echo', 'embed.batch'], 'one kind of worker per type');
  t.equal(ran.find((r) => r['type'] === 'echo')?.['worker_id'], `${p.id}-worker-0`, 'echo ran on the stock worker');
});

t.test('usage is recorded, costed, reported, and held to a monthly budget', async (t) => {
  const p = await startPlatform(t, { workers: 0, serviceEnv: { job: { LLM_PRICES: '{"fakeai/m1":{"prompt":1,"completion":2}}' } } });
  const admin = p.client();
  await customWorker(t, p);
  const ws = await admin.admin.createWorkspace('spender', { monthlyBudgetUsd: 0.003, rateLimitPerMinute: 10_000 });
  const team = p.client({ apiKey: (await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read', 'jobs:write', 'usage:read'] })).apiKey });
  const submitLlm = () => team.submit({ type: 'llm.fake', queue: 'custom', input: { model: 'm1' } });
  const first = await waitFor(() => submitLlm().catch(() => undefined), 10_000, 'llm.fake to be announced');
  await waitFor(async () => (await team.get(first.id)).state === JobState.JOB_STATE_SUCCEEDED, 20_000, 'first job');
  const got = await team.get(first.id);
  t.same(got.usage, [{ provider: 'fakeai', model: 'm1', promptTokens: 1000, completionTokens: 500, costUsd: 0.002 }], 'usage on the job, costed');

  const refused = await waitFor(async () => {
    const r = await submitLlm().then(() => undefined, (e: unknown) => e);
    return r instanceof ResourceExhaustedError ? r : undefined;
  }, 30_000, 'the budget to be enforced', 500);
  t.equal(refused.reason, 'BUDGET_EXHAUSTED');
  await t.resolves(team.submit({ type: 'echo' }), 'non-LLM jobs still go');

  const report = await team.usage.report({ groupBy: ['provider', 'model'], lastDays: 1 });
  t.equal(report.rows.length, 1);
  t.same(report.rows[0]!.group, { provider: 'fakeai', model: 'm1' });
  t.ok(report.totals!.costUsd >= 0.004 - 1e-9, `total cost ${report.totals!.costUsd}`);
  t.equal(report.totals!.promptTokens, report.rows[0]!.promptTokens);
  const metrics = await p.metrics('job-0');
  t.match(metrics, /ai_llm_tokens_total\{provider="fakeai",model="m1",type="prompt"\} \d+/, 'token metric exported');
});

t.test('dead letters: list, count, retry by filter with overrides, purge', async (t) => {
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { WORKER_CONCURRENCY: '8' } } });
  const c = p.client();
  const transient = await c.submitMany(Array.from({ length: 4 }, () => ({ type: 'fail', maxAttempts: 2, retryBaseDelayMs: 10,
    input: { code: 'UPSTREAM_DOWN', retryable: true } })));
  const permanent = await c.submitMany(Array.from({ length: 2 }, () => ({ type: 'fail', input: { code: 'BAD_INPUT' } })));
  await waitFor(async () => (await c.listPage({ states: [JobState.JOB_STATE_FAILED] })).jobs.length === 6, 30_000, 'six dead letters');
  const stats = await c.deadLetters.stats();
  t.equal(stats.total, 6);
  t.equal(stats.retryable, 4);
  t.same(stats.byErrorCode, [{ key: 'UPSTREAM_DOWN', count: 4 }, { key: 'BAD_INPUT', count: 2 }]);
  t.equal((await c.get(transient[0]!.id)).attempt, 2, 'retried once before dying');

  const listed = [];
  for await (const j of c.deadLetters.list({ errorCode: 'BAD_INPUT' })) listed.push(j.id);
  t.same(listed.sort(), permanent.map((j) => j.id).sort(), 'filter by error code');
  await t.rejects(c.deadLetters.retry({}), InvalidArgumentError, 'an empty filter needs all');
  const retried = await c.deadLetters.retry({ retryable: true }, { inputOverrides: { attempts: 0 } });
  t.equal(retried.length, 4, 'all retryable dead letters reopened');
  await waitFor(async () => (await Promise.all(transient.map((j) => c.get(j.id)))).every((j) => j.state === JobState.JOB_STATE_SUCCEEDED),
    30_000, 'the retried jobs to succeed with the override');
  t.equal(await c.deadLetters.purge({ type: 'fail' }), 2, 'the permanent ones purged');
  const [{ n }] = await p.sql()`SELECT count(*)::int AS n FROM jobs WHERE state = 'FAILED'`;
  t.equal(n, 0);
  const audit = await p.sql()`SELECT action FROM audit_log WHERE resource = 'dead-letters' ORDER BY id`;
  t.same(audit.map((r) => r['action']), ['dlq.retry', 'dlq.purge'], 'bulk actions audited');

  // Three attempts by default; each wait is full jitter within base * 2^(attempt-1).
  const base = 400;
  const flaky = await c.submitAndWait({ type: 'fail', retryBaseDelayMs: base, input: { code: 'FLAKY', retryable: true } }, { timeoutMs: 30_000 });
  t.equal(flaky.attempt, 3, 'three attempts by default, then FAILED');
  t.equal(flaky.state, JobState.JOB_STATE_FAILED);
  const waits = await p.sql()`SELECT attempt, at, detail FROM job_events WHERE job_id = ${flaky.id} AND state = 'RETRY_WAIT' ORDER BY id`;
  t.same(waits.map((w) => w['attempt']), [1, 2], 'a RETRY_WAIT after each of the first two attempts');
  for (const w of waits) {
    const wait = new Date((w['detail'] as { next_attempt_at: string }).next_attempt_at).getTime() - (w['at'] as Date).getTime();
    const step = base * 2 ** ((w['attempt'] as number) - 1);
    // `at` is the failure's time at the worker; next_attempt_at is set when the job service applies it, a little later.
    t.ok(wait >= 0 && wait <= step + 1_000, `attempt ${w['attempt']} waited ${wait} ms, within [0, ${step}] plus delivery`);
  }
});

t.test('cancel aborts a running handler within a second; a timeout fails the attempt; in-progress acks keep a long attempt', async (t) => {
  // ack_wait of 2 s: a job running longer stays with its worker only through in-progress acks.
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { ACK_WAIT_MS: '2000' } } });
  const c = p.client();
  const long = await c.submit({ type: 'sleep', input: { ms: 5_000 }, labels: { case: 'long' } });
  const job = await c.submit({ type: 'sleep', input: { ms: 60_000 } });
  await waitFor(async () => (await c.get(job.id)).state === JobState.JOB_STATE_RUNNING, 20_000, 'running');
  const cancelledAt = Date.now();
  const res = await c.cancel(job.id, 'changed my mind');
  t.equal(res.state, JobState.JOB_STATE_CANCELLED, 'CANCELLED at once');
  await waitFor(async () => /worker_jobs_processed_total\{[^}]*status="cancelled"[^}]*\} 1/.test(await p.metrics('worker-0')),
    5_000, 'the worker to report the aborted attempt', 50);
  t.ok(Date.now() - cancelledAt < 1_500, `handler aborted after ${Date.now() - cancelledAt} ms`);
  t.equal((await c.get(job.id)).error?.message, 'changed my mind');

  const slow = await c.submitAndWait({ type: 'sleep', input: { ms: 60_000 }, timeoutMs: 300, maxAttempts: 1 }, { timeoutMs: 20_000 });
  t.equal(slow.state, JobState.JOB_STATE_FAILED);
  t.same(slow.error, { code: 'TIMEOUT', message: 'timed out after 300 ms', retryable: true });

  const done = await waitFor(async () => { const j = await c.get(long.id); return j.state === JobState.JOB_STATE_SUCCEEDED ? j : undefined; },
    20_000, 'the long job to succeed');
  t.equal(done.attempt, 1, 'the 5 s job ran past a 2 s ack_wait as one attempt');
  const runs = /worker_jobs_processed_total\{queue="default",type="sleep",status="succeeded"\} (\d+)/.exec(await p.metrics('worker-0'))?.[1];
  t.equal(runs, '1', 'and its message was not redelivered to run it again');

  // A worker serving two queues, one of them idle: the idle one never keeps the slots.
  await p.addWorker({ WORKER_QUEUES: 'idle-q,busy-q', WORKER_CONCURRENCY: '4' });
  const busy = await c.submitMany(Array.from({ length: 8 }, () => ({ type: 'sleep', queue: 'busy-q', input: { ms: 600 } })));
  const ran = await waitFor(async () => {
    const js = await Promise.all(busy.map((j) => c.get(j.id)));
    return js.every((j) => j.state === JobState.JOB_STATE_SUCCEEDED) ? js : undefined;
  }, 30_000, 'the busy queue\'s jobs to run');
  const spans = ran.map((j) => [j.startedAt!.getTime(), j.finishedAt!.getTime()] as const);
  const overlap = Math.max(...spans.map(([s]) => spans.filter(([a, b]) => a <= s && s < b).length));
  t.ok(overlap >= 3, `${overlap} of the 4 slots ran the busy queue at once (one is left to watch the idle queue)`);
});

t.test('SIGTERM during work finishes what it holds and loses no job', async (t) => {
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { WORKER_CONCURRENCY: '2', SHUTDOWN_GRACE_MS: '10000' } } });
  const c = p.client();
  const jobs = await c.submitMany(Array.from({ length: 6 }, () => ({ type: 'sleep', input: { ms: 600 } })));
  await waitFor(async () => (await p.sql()`SELECT count(*)::int AS n FROM jobs WHERE state = 'RUNNING'`)[0]!['n'] === 2, 20_000, 'two running');
  const w = p.proc('worker-0');
  t.equal(await w.stop(), 0, 'the worker exits cleanly');
  const [{ done }] = await p.sql()`SELECT count(*)::int AS done FROM jobs WHERE state = 'SUCCEEDED'`;
  t.ok(done >= 2, `the ${done} jobs in hand finished before it exited`);
  await p.addWorker();
  const all = await waitFor(async () => {
    const js = await Promise.all(jobs.map((j) => c.get(j.id)));
    return js.every((j) => j.state === JobState.JOB_STATE_SUCCEEDED) ? js : undefined;
  }, 30_000, 'every job to succeed');
  t.ok(all.every((j) => j.attempt === 1), 'no attempt lost or repeated');

  // Past the grace period the attempts still running are handed back, not failed: they
  // finish on another worker as the same attempt (max_attempts 1 leaves none to spare).
  const quick = await p.addWorker({ SHUTDOWN_GRACE_MS: '300' });
  const quickId = `${p.id}-worker-2`;
  const long = await c.submitMany(Array.from({ length: 4 }, () => ({ type: 'sleep', input: { ms: 2_500 }, maxAttempts: 1 })));
  await waitFor(async () => (await p.sql()`SELECT count(*)::int AS n FROM jobs
    WHERE state = 'RUNNING' AND worker_id = ${quickId}`)[0]!['n'] === 2, 20_000, 'the short-grace worker to hold two');
  t.equal(await quick.stop(), 0, 'the short-grace worker exits cleanly');
  t.equal(quick.lines.filter((l) => l['msg'] === 'attempt handed back at shutdown').length, 2, 'it handed back both');
  const finished = await waitFor(async () => {
    const js = await Promise.all(long.map((j) => c.get(j.id)));
    return js.every((j) => j.state !== JobState.JOB_STATE_RUNNING && j.state !== JobState.JOB_STATE_DISPATCHED) ? js : undefined;
  }, 30_000, 'the long jobs to end');
  t.same(finished.map((j) => [stateName(j.state), j.attempt]), long.map(() => ['SUCCEEDED', 1]), 'all succeeded, as their first attempt');
  const [{ n }] = await p.sql()`SELECT count(*)::int AS n FROM job_events WHERE state = 'DISPATCHED' AND detail->>'handed_back' = 'true'`;
  t.equal(n, 2, 'the history records the two hand-backs');
});
