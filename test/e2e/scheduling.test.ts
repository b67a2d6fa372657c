import t from 'tap';
import { FailedPreconditionError, JobState } from '@aijob/sdk';
import { maxOverlap, type RanJob } from '../helpers/jobs.js';
import { startPlatform, waitFor, type Platform } from '../helpers/platform.js';

type Sql = ReturnType<Platform['sql']>;
const sleeps = (queue: string, n: number, ms = 50) => Array.from({ length: n }, () => ({ type: 'sleep', queue, input: { ms } }));

/**
 * How the scheduler shares the workers of `queues` while all stay backlogged, grouped by
 * `by`: the jobs it holds in flight there (DISPATCHED or RUNNING), summed over `samples`
 * snapshots taken every few dispatches, and the dispatches made meanwhile.
 */
async function shares(sql: Sql, queues: string[], by: 'queue' | 'workspace_id', samples = 20) {
  const dispatched = async () => (await sql`SELECT count(*)::int AS n FROM jobs
    WHERE queue = ANY(${queues}) AND dispatched_at IS NOT NULL`)[0]!['n'] as number;
  let seen = await waitFor(async () => { const n = await dispatched(); return n >= 20 ? n : 0; }, 60_000, 'the run to start', 100);
  const [{ from }] = await sql`SELECT now() AS from`;
  const held: Record<string, number> = {};
  for (let i = 0; i < samples; i++) {
    seen = await waitFor(async () => { const n = await dispatched(); return n >= seen + 6 ? n : 0; }, 60_000, 'more dispatches', 20);
    for (const r of await sql`SELECT ${sql(by)} AS k, count(*)::int AS n FROM jobs
      WHERE queue = ANY(${queues}) AND state IN ('DISPATCHED', 'RUNNING') GROUP BY 1`) {
      held[r['k'] as string] = (held[r['k'] as string] ?? 0) + (r['n'] as number);
    }
  }
  const rows = await sql`SELECT ${sql(by)} AS k, count(*) FILTER (WHERE dispatched_at >= ${from as Date})::int AS n,
      count(*) FILTER (WHERE state = 'QUEUED')::int AS waiting
    FROM jobs WHERE queue = ANY(${queues}) GROUP BY 1`;
  const sent: Record<string, number> = {};
  for (const r of rows) sent[r['k'] as string] = r['n'] as number;
  return { held, sent, backlogged: rows.every((r) => (r['waiting'] as number) > 0) };
}

t.test('fairness on shared workers', async (t) => {
  const p = await startPlatform(t, { workers: 0 });
  const c = p.client();
  const sql = p.sql();
  // Three pools: 'shared' alone, heavy+light on one worker, five queues on another.
  await Promise.all([['shared', 4], ['heavy,light', 6], ['a1,a2,a3,a4,b', 6]]
    .map(([q, n]) => p.addWorker({ WORKER_QUEUES: String(q), WORKER_CONCURRENCY: String(n) })));

  await t.test('a small workspace is served within one round beside a huge backlog', async (t) => {
    await c.queues.put('shared', { maxConcurrency: 2 });
    for (let i = 0; i < 5; i++) await c.submitMany(sleeps('shared', 1000, 100));
    const ws = await c.admin.createWorkspace('small-team', { rateLimitPerMinute: 1000 });
    const small = p.client({ apiKey: (await c.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:write', 'jobs:read'] })).apiKey });
    await waitFor(async () => (await sql`SELECT count(*)::int AS n FROM jobs WHERE state = 'SUCCEEDED'`)[0]!['n'] >= 4, 20_000, 'the backlog to be flowing');
    const mine = await small.submit({ type: 'sleep', queue: 'shared', input: { ms: 1 } });
    const done = await waitFor(async () => {
      const j = await small.get(mine.id);
      return j.state === JobState.JOB_STATE_SUCCEEDED ? j : undefined;
    }, 20_000, 'the small job');
    const [{ n }] = await sql`SELECT count(*)::int AS n FROM jobs WHERE workspace_id <> ${ws.id}
      AND started_at > ${mine.createdAt!} AND started_at < ${done.startedAt!}`;
    t.ok(n <= 2, `${n} backlog jobs started between its submit and its start (one round holds 2)`);
    const [{ waiting }] = await sql`SELECT count(*)::int AS waiting FROM jobs WHERE state = 'QUEUED'`;
    t.ok(waiting > 1000, `the backlog is still there (${waiting} waiting)`);
    await c.queues.clear('shared');
  });

  await t.test('a weight-2 queue is given twice the slots of a weight-1 queue on the same workers', async (t) => {
    await c.queues.put('heavy', { weight: 2 });
    await c.queues.put('light', { weight: 1 });
    await c.submitMany([...sleeps('heavy', 300), ...sleeps('light', 300)]);
    const got = await shares(sql, ['heavy', 'light'], 'queue');
    const ratio = got.held['heavy']! / got.held['light']!;
    t.ok(got.backlogged, 'both queues stayed backlogged');
    t.ok(ratio >= 1.6 && ratio <= 2.5, `heavy:light slots held ${got.held['heavy']}:${got.held['light']} = ${ratio.toFixed(2)} (weights 2:1)`);
    t.comment(`dispatches meanwhile, heavy:light ${got.sent['heavy']}:${got.sent['light']}`);
    await Promise.all(['heavy', 'light'].map((q) => c.queues.clear(q)));
  });

  await t.test('a backlog spread over many queues buys its workspace no bigger share of the same workers', async (t) => {
    const ws = await c.admin.createWorkspace('team-b', { rateLimitPerMinute: 1000 });
    const b = p.client({ apiKey: (await c.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:write', 'jobs:read'] })).apiKey });
    await c.submitMany(['a1', 'a2', 'a3', 'a4'].flatMap((q) => sleeps(q, 100)));
    await b.submitMany(sleeps('b', 250));
    const split = ['a1', 'a2', 'a3', 'a4', 'b'];
    const got = await shares(sql, split, 'workspace_id');
    const share = (m: Record<string, number>) => (m[ws.id] ?? 0) / Object.values(m).reduce((x, y) => x + y, 0);
    t.ok(got.backlogged, 'every queue stayed backlogged');
    t.ok(share(got.held) >= 0.4, `B holds ${share(got.held).toFixed(2)} of the slots (fair: 0.5; one share per queue would give 0.2)`);
    t.comment(`dispatches meanwhile: B ${share(got.sent).toFixed(2)} of ${JSON.stringify(got.sent)}`);
    await Promise.all(split.map((q) => c.queues.clear(q)));
  });
});

t.test('queue controls', async (t) => {
  const p = await startPlatform(t, { workers: 0, serviceEnv: { scheduler: { DEFAULT_QUEUE_CONCURRENCY: '7', DEFAULT_QUEUE_RATE: '2.5' } } });
  const c = p.client();
  const sql = p.sql();
  // One queue per worker, so that a worker's slots serve exactly the queue under test.
  await Promise.all([['limited', 6], ['limited', 6], ['single', 4]]
    .map(([q, n]) => p.addWorker({ WORKER_QUEUES: String(q), WORKER_CONCURRENCY: String(n) })));
  const finished = (ids: string[]) => waitFor(async () => {
    const rows = await sql<(RanJob & { dispatched_at: Date | null })[]>`SELECT id, workspace_id, priority, state, attempt, created_at,
      dispatched_at, started_at, finished_at, run_at, labels FROM jobs
      WHERE id = ANY(${ids}::uuid[]) AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') ORDER BY started_at NULLS LAST, id`;
    return rows.length === ids.length ? rows : undefined;
  }, 60_000, `${ids.length} jobs to finish`, 100);

  await t.test('a paused queue accepts jobs but starts none until resumed; cluster stats count it', async (t) => {
    await c.queues.put('single', { maxConcurrency: 1 });
    const paused = await c.queues.pause('single');
    t.equal(paused.paused, true);
    const held = await c.submitMany(Array.from({ length: 3 }, () => ({ type: 'echo', queue: 'single' })));
    // Proof that the scheduler is admitting: a job of another queue finishes meanwhile.
    const other = await c.submitAndWait({ type: 'echo', queue: 'limited' }, { timeoutMs: 20_000 });
    t.equal(other.state, JobState.JOB_STATE_SUCCEEDED);
    for (const j of held) t.equal((await c.get(j.id)).state, JobState.JOB_STATE_QUEUED, 'still queued while paused');
    const q = await c.queues.get('single');
    t.equal(q.stats?.pending, 3, 'the queue counts them as pending');
    const stats = await c.queues.clusterStats();
    t.equal(stats.queueDepth['single'], 3, 'cluster stats: the paused queue\'s depth');
    await waitFor(async () => {
      const m = await p.metrics('scheduler-0');
      return /aijob_queue_depth\{queue="single"\} 3\b/.test(m) && /aijob_queue_paused\{queue="single"\} 1\b/.test(m);
    }, 10_000, 'the leader to export the paused queue\'s depth and its pause');
    t.equal(stats.totalPending, 3, 'cluster stats: total pending');
    t.equal(stats.liveWorkers, 3, 'cluster stats: live workers');
    t.equal(stats.totalSlots, 16, 'cluster stats: their slots');
    t.match(stats.leader, /scheduler-0$/, 'cluster stats: the leader');
    await waitFor(async () => (await c.queues.clusterStats()).freeSlots === 16, 10_000, 'every slot reported free while idle');
    await c.queues.resume('single');
    await finished(held.map((j) => j.id));
    const audit = await sql`SELECT action FROM audit_log WHERE resource = 'queue/single' ORDER BY id`;
    t.same(audit.map((r) => r['action']), ['queue.put', 'queue.pause', 'queue.resume'], 'queue changes audited');
  });

  await t.test('delayed jobs wait for run_at', async (t) => {
    const runAt = new Date(Date.now() + 4_000);
    const delayed = await c.submit({ type: 'echo', queue: 'single', runAt });
    const m = await waitFor(async () => {
      const text = await p.metrics('scheduler-0');
      return /aijob_queue_delayed\{queue="single"\} 1\b/.test(text) ? text : undefined;
    }, 3_000, 'the delayed job counted as delayed');
    t.match(m, /aijob_queue_depth\{queue="single"\} 0\b/, 'and not as depth: a job due later is no backlog');
    const d = await waitFor(async () => {
      const j = await c.get(delayed.id);
      return j.state === JobState.JOB_STATE_SUCCEEDED ? j : undefined;
    }, 20_000, 'the delayed job');
    t.ok(d.startedAt!.getTime() >= runAt.getTime(), 'did not start before run_at');
  });

  await t.test('max concurrency holds across workers, and priority then FIFO orders the start', async (t) => {
    await c.queues.put('limited', { maxConcurrency: 3 });
    const ran = await finished((await c.submitMany(sleeps('limited', 24, 60))).map((j) => j.id));
    t.ok(ran.every((j) => j.state === 'SUCCEEDED'), 'all succeeded');
    const overlap = maxOverlap(ran);
    t.ok(overlap <= 3, `at most 3 ran at once (saw ${overlap})`);
    t.ok(overlap >= 2, `the limit was used (saw ${overlap})`);

    await c.queues.pause('single');
    const priorities = [0, 5, -3, 10, 5, 0];
    const submitted = [];
    for (const priority of priorities) submitted.push(await c.submit({ type: 'sleep', queue: 'single', priority, input: { ms: 5 } }));
    await c.queues.resume('single');
    const ordered = await finished(submitted.map((j) => j.id));
    t.same(ordered.map((j) => j.priority), [10, 5, 5, 0, 0, -3], 'highest priority first');
    const fives = ordered.filter((j) => j.priority === 5).map((j) => j.id);
    t.same(fives, submitted.filter((j) => j.priority === 5).map((j) => j.id), 'FIFO within a priority');
  });

  await t.test('a job back from RETRY_WAIT keeps its priority', async (t) => {
    // The urgent job is newer than the low ones: only its priority puts it first, again after its retry wait.
    await c.queues.pause('single');
    const low = await c.submitMany(sleeps('single', 15, 100));
    const urgent = await c.submit({ type: 'fail', queue: 'single', priority: 10, maxAttempts: 3, retryBaseDelayMs: 200,
      input: { attempts: 1, retryable: true } });
    await c.queues.resume('single');
    const retried = await finished([...low.map((j) => j.id), urgent.id]);
    const again = retried.find((j) => j.id === urgent.id)!;
    t.equal(again.attempt, 2, 'the urgent job failed once and ran again');
    const after = retried.filter((j) => j.id !== urgent.id && j.started_at! > again.started_at!).length;
    t.ok(after >= 11, `its retry went ahead of ${after} of the 15 priority-0 jobs`);
  });

  await t.test('the dispatch rate limit holds', async (t) => {
    await c.queues.put('single', { maxConcurrency: 100, rateLimitPerSecond: 10 });
    const paced = await c.submitMany(Array.from({ length: 30 }, () => ({ type: 'echo', queue: 'single' })));
    const at = (await finished(paced.map((j) => j.id))).map((j) => j.dispatched_at!.getTime()).sort((x, y) => x - y);
    // 10 jobs/s with a bucket of 10: 30 jobs take at least 2 s, and no second sees more than 20.
    const span = (at[at.length - 1]! - at[0]!) / 1000;
    t.ok(span >= 1.9 && span < 8, `30 dispatches took ${span.toFixed(2)} s`);
    let busiest = 0;
    for (const from of at) busiest = Math.max(busiest, at.filter((x) => x >= from && x < from + 1_000).length);
    t.ok(busiest <= 20, `at most 20 in any second (saw ${busiest})`);
    await c.queues.put('single', { rateLimitPerSecond: 0 });
  });

  await t.test('ClearQueue cancels waiting jobs of the caller\'s workspace only, by state; a queue first named by a submit takes the defaults', async (t) => {
    const mine = await c.submitMany(Array.from({ length: 4 }, () => ({ type: 'echo', queue: 'drain' })));
    const created = await waitFor(() => c.queues.get('drain').catch(() => undefined), 10_000, 'the queue to be created');
    t.match(created, { maxConcurrency: 7, rateLimitPerSecond: 2.5, weight: 1, paused: false }, 'created with the configured defaults');
    const ws = await c.admin.createWorkspace('neighbour', {});
    const other = p.client({ apiKey: (await c.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:write', 'jobs:read'] })).apiKey });
    const theirs = await other.submit({ type: 'echo', queue: 'drain' });

    // In 'single': one job waiting for its retry, one delayed by run_at.
    const retrying = await c.submit({ type: 'fail', queue: 'single', maxAttempts: 3, retryBaseDelayMs: 600_000, input: { retryable: true } });
    const delayed = await c.submit({ type: 'echo', queue: 'single', runAt: new Date(Date.now() + 600_000) });
    await waitFor(async () => (await c.get(retrying.id)).state === JobState.JOB_STATE_RETRY_WAIT, 20_000, 'the retry wait');
    t.equal((await c.queues.get('single')).stats?.oldestPendingAgeSeconds, 0, 'a job delayed by run_at is not counted as waiting');
    t.ok((await c.queues.get('drain')).stats!.oldestPendingAgeSeconds > 0, 'ready jobs are');
    await t.rejects(c.queues.clear('single', { states: [JobState.JOB_STATE_RUNNING] }), FailedPreconditionError, 'running jobs are not cleared');
    t.equal(await c.queues.clear('single', { states: [JobState.JOB_STATE_RETRY_WAIT] }), 1, 'RETRY_WAIT only');
    t.equal((await c.get(retrying.id)).state, JobState.JOB_STATE_CANCELLED);
    t.equal((await c.get(delayed.id)).state, JobState.JOB_STATE_QUEUED, 'the QUEUED job stays');
    t.equal(await c.queues.clear('single', { states: [JobState.JOB_STATE_QUEUED] }), 1, 'then QUEUED only');
    t.equal((await c.get(delayed.id)).state, JobState.JOB_STATE_CANCELLED);

    t.equal(await c.queues.clear('drain', { reason: 'maintenance' }), 4);
    for (const j of mine) t.equal((await c.get(j.id)).state, JobState.JOB_STATE_CANCELLED);
    t.equal((await other.get(theirs.id)).state, JobState.JOB_STATE_QUEUED, 'the other workspace\'s job stays');
  });
});
