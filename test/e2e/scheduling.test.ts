import t from 'tap';
import { JobState } from '@aijob/sdk';
import { maxOverlap, waitForFinished } from '../helpers/jobs.js';
import { startPlatform, waitFor } from '../helpers/platform.js';

t.test('max concurrency holds across workers, and priority then FIFO orders the start', async (t) => {
  const p = await startPlatform(t, { workers: 2, serviceEnv: { worker: { WORKER_QUEUES: 'limited,ordered', WORKER_CONCURRENCY: '6' } } });
  const c = p.client();
  await c.queues.put('limited', { maxConcurrency: 3 });
  await c.submitMany(Array.from({ length: 24 }, () => ({ type: 'sleep', queue: 'limited', input: { ms: 60 } })));
  const ran = await waitForFinished(p.sql(), 24, 'limited');
  t.ok(ran.every((j) => j.state === 'SUCCEEDED'), 'all succeeded');
  const overlap = maxOverlap(ran);
  t.ok(overlap <= 3, `at most 3 ran at once (saw ${overlap})`);
  t.ok(overlap >= 2, `the limit was used (saw ${overlap})`);

  await c.queues.put('ordered', { maxConcurrency: 1 });
  await c.queues.pause('ordered');
  const priorities = [0, 5, -3, 10, 5, 0];
  const submitted = [];
  for (const priority of priorities) submitted.push(await c.submit({ type: 'sleep', queue: 'ordered', priority, input: { ms: 5 } }));
  await c.queues.resume('ordered');
  const ordered = await waitForFinished(p.sql(), priorities.length, 'ordered');
  t.same(ordered.map((j) => j.priority), [10, 5, 5, 0, 0, -3], 'highest priority first');
  const fives = ordered.filter((j) => j.priority === 5).map((j) => j.id);
  t.same(fives, submitted.filter((j) => j.priority === 5).map((j) => j.id), 'FIFO within a priority');
});

t.test('a small workspace is served within one round beside a huge backlog', async (t) => {
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { WORKER_QUEUES: 'shared', WORKER_CONCURRENCY: '4' } } });
  const big = p.client();
  await big.queues.put('shared', { maxConcurrency: 2 });
  for (let i = 0; i < 5; i++) {
    await big.submitMany(Array.from({ length: 1000 }, () => ({ type: 'sleep', queue: 'shared', input: { ms: 20 } })));
  }
  const ws = await big.admin.createWorkspace('small-team', { rateLimitPerMinute: 1000 });
  const small = p.client({ apiKey: (await big.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:write', 'jobs:read'] })).apiKey });
  await waitFor(async () => (await p.sql()`SELECT count(*)::int AS n FROM jobs WHERE state = 'SUCCEEDED'`)[0]!['n'] >= 4, 20_000, 'the backlog to be flowing');
  const mine = await small.submit({ type: 'sleep', queue: 'shared', input: { ms: 1 } });
  const done = await waitFor(async () => {
    const j = await small.get(mine.id);
    return j.state === JobState.JOB_STATE_SUCCEEDED ? j : undefined;
  }, 20_000, 'the small job');
  const [{ n }] = await p.sql()`SELECT count(*)::int AS n FROM jobs WHERE workspace_id <> ${ws.id}
    AND started_at > ${mine.createdAt!} AND started_at < ${done.startedAt!}`;
  t.ok(n <= 2, `${n} backlog jobs started between its submit and its start (one round holds 2)`);
  const [{ waiting }] = await p.sql()`SELECT count(*)::int AS waiting FROM jobs WHERE state = 'QUEUED'`;
  t.ok(waiting > 1000, `the backlog is still there (${waiting} waiting)`);
  await big.queues.clear('shared');
});

t.test('a paused queue accepts jobs but starts none until resumed; delayed jobs wait for run_at', async (t) => {
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { WORKER_QUEUES: 'default,maint' } } });
  const c = p.client();
  await c.queues.put('maint', {});
  const paused = await c.queues.pause('maint');
  t.equal(paused.paused, true);
  const held = await c.submitMany(Array.from({ length: 3 }, () => ({ type: 'echo', queue: 'maint' })));
  // Proof that the scheduler is admitting: a job of another queue finishes meanwhile.
  const other = await c.submitAndWait({ type: 'echo' }, { timeoutMs: 20_000 });
  t.equal(other.state, JobState.JOB_STATE_SUCCEEDED);
  for (const j of held) t.equal((await c.get(j.id)).state, JobState.JOB_STATE_QUEUED, 'still queued while paused');
  const q = await c.queues.get('maint');
  t.equal(q.stats?.pending, 3, 'the queue counts them as pending');
  await c.queues.resume('maint');
  await waitForFinished(p.sql(), 3, 'maint', 20_000);

  const runAt = new Date(Date.now() + 1_500);
  const delayed = await c.submit({ type: 'echo', runAt });
  const d = await waitFor(async () => {
    const j = await c.get(delayed.id);
    return j.state === JobState.JOB_STATE_SUCCEEDED ? j : undefined;
  }, 20_000, 'the delayed job');
  t.ok(d.startedAt!.getTime() >= runAt.getTime(), 'did not start before run_at');

  const audit = await p.sql()`SELECT action FROM audit_log WHERE resource = 'queue/maint' ORDER BY id`;
  t.same(audit.map((r) => r['action']), ['queue.put', 'queue.pause', 'queue.resume'], 'queue changes audited');
  const stats = await c.queues.clusterStats();
  t.equal(stats.liveWorkers, 1);
  t.match(stats.leader, /scheduler-0/);
});

t.test('ClearQueue cancels waiting jobs of the caller\'s workspace only', async (t) => {
  const p = await startPlatform(t, { workers: 0 });
  const c = p.client();
  const mine = await c.submitMany(Array.from({ length: 4 }, () => ({ type: 'echo', queue: 'drain' })));
  const ws = await c.admin.createWorkspace('neighbour', {});
  const other = p.client({ apiKey: (await c.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:write', 'jobs:read'] })).apiKey });
  const theirs = await other.submit({ type: 'echo', queue: 'drain' });
  t.equal(await c.queues.clear('drain', { reason: 'maintenance' }), 4);
  for (const j of mine) t.equal((await c.get(j.id)).state, JobState.JOB_STATE_CANCELLED);
  t.equal((await other.get(theirs.id)).state, JobState.JOB_STATE_QUEUED, 'the other workspace\'s job stays');
});
