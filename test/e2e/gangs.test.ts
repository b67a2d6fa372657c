import t from 'tap';
import { JobState, stateName } from '@aijob/sdk';
import { startPlatform, waitFor, type Platform } from '../helpers/platform.js';

t.test('a gang starts all together only when enough worker slots are free, never partly', async (t) => {
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { WORKER_CONCURRENCY: '2', WORKER_QUEUES: 'train' } } });
  const c = p.client();
  const gang = await c.submit({ type: 'sleep', queue: 'train', gangSize: 3, input: { ms: 300 } });
  t.equal(gang.gangMembers.length, 3, 'three members');
  t.ok(gang.gangMembers.every((m) => m.gangId === gang.gangId && m.gangSize === 3), 'sharing one gang id');
  t.same(gang.gangMembers.map((m) => m.labels['aijob.gang_rank']), ['0', '1', '2']);
  // A plain job in the same queue runs (the scheduler is admitting), yet no member starts.
  const plain = await c.submitAndWait({ type: 'echo', queue: 'train' }, { timeoutMs: 20_000 });
  t.equal(plain.state, JobState.JOB_STATE_SUCCEEDED);
  for (const m of gang.gangMembers) t.equal((await c.get(m.id)).state, JobState.JOB_STATE_QUEUED, 'member waits: 2 slots < 3');

  await p.addWorker({ WORKER_CONCURRENCY: '2', WORKER_QUEUES: 'train' });
  const done = await waitFor(async () => {
    const members = await Promise.all(gang.gangMembers.map((m) => c.get(m.id)));
    return members.every((m) => m.state === JobState.JOB_STATE_SUCCEEDED) ? members : undefined;
  }, 30_000, 'the gang to finish');
  const starts = done.map((m) => m.startedAt!.getTime());
  const ends = done.map((m) => m.finishedAt!.getTime());
  t.ok(Math.max(...starts) < Math.min(...ends), 'every member was running at the same moment');
  const history = await p.sql()`SELECT count(*)::int AS n FROM job_events WHERE state = 'DISPATCHED'
    AND job_id = ANY(${gang.gangMembers.map((m) => m.id)}::uuid[])`;
  t.equal(history[0]!['n'], 3, 'dispatched once each, together');
});

t.test('one member failing retries the whole gang, and a final failure fails it whole', async (t) => {
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { WORKER_CONCURRENCY: '4' }, job: { RETRY_BASE_MS: '50' } } });
  const c = p.client();
  // Rank 1 fails its first attempt only: the gang reruns, and then every member succeeds.
  const retried = await c.submit({ type: 'fail', gangSize: 2, maxAttempts: 3, input: { only_rank: 1, attempts: 1, retryable: true } });
  const ok = await waitFor(async () => {
    const ms = await Promise.all(retried.gangMembers.map((m) => c.get(m.id)));
    return ms.every((m) => m.state === JobState.JOB_STATE_SUCCEEDED) ? ms : undefined;
  }, 30_000, 'the retried gang to succeed');
  t.same(ok.map((m) => m.attempt), [2, 2], 'both members ran a second attempt');

  // Rank 0 fails for good: its sibling fails with it.
  const doomed = await c.submit({ type: 'fail', gangSize: 2, input: { only_rank: 0, code: 'BAD_SHARD' } });
  const failed = await waitFor(async () => {
    const ms = await Promise.all(doomed.gangMembers.map((m) => c.get(m.id)));
    return ms.every((m) => m.state === JobState.JOB_STATE_FAILED || m.state === JobState.JOB_STATE_SUCCEEDED) &&
      ms.some((m) => m.state === JobState.JOB_STATE_FAILED) ? ms : undefined;
  }, 30_000, 'the gang to fail');
  t.equal(failed[0]!.error?.code, 'BAD_SHARD');
  t.match(stateName(failed[1]!.state), /FAILED|SUCCEEDED/, 'the sibling is finished too');

  // Cancelling one member cancels the gang.
  const held = await c.submit({ type: 'sleep', gangSize: 2, input: { ms: 60_000 }, runAt: new Date(Date.now() + 60_000) });
  await c.cancel(held.gangMembers[1]!.id, 'not needed');
  for (const m of held.gangMembers) t.equal((await c.get(m.id)).state, JobState.JOB_STATE_CANCELLED, 'member cancelled');
});

const reconcilePasses = async (p: Platform) => Number(/^controller_reconcile_total (\d+)/m.exec(await p.metrics('scheduler-0'))?.[1] ?? 0);

t.test('the gang placement timeout', async (t) => {
  const p = await startPlatform(t, {
    workers: 1, serviceEnv: { worker: { WORKER_CONCURRENCY: '2' }, scheduler: { GANG_PLACEMENT_TIMEOUT_MS: '5000' } },
  });
  const c = p.client();

  await t.test('a gang that cannot be placed in time fails with GANG_PLACEMENT_TIMEOUT', async (t) => {
    const gang = await c.submit({ type: 'echo', gangSize: 3 });
    const failed = await waitFor(async () => {
      const ms = await Promise.all(gang.gangMembers.map((m) => c.get(m.id)));
      return ms.every((m) => m.state === JobState.JOB_STATE_FAILED) ? ms : undefined;
    }, 30_000, 'the gang to time out');
    t.ok(failed.every((m) => m.error?.code === 'GANG_PLACEMENT_TIMEOUT' && !m.error.retryable));
    t.ok(failed.every((m) => m.attempt === 0), 'no member ever started');
  });

  await t.test('the placement clock of a delayed gang starts at run_at, not at submit', async (t) => {
    // One of the two slots stays busy past run_at, so the gang waits there while ready.
    const blocker = await c.submit({ type: 'sleep', input: { ms: 120_000 } });
    await waitFor(async () => (await c.get(blocker.id)).state === JobState.JOB_STATE_RUNNING, 20_000, 'the blocker to run');
    const runAt = new Date(Date.now() + 6_000);
    const gang = await c.submit({ type: 'echo', gangSize: 2, runAt });
    await waitFor(() => Date.now() > runAt.getTime(), 10_000, 'run_at');
    // Two reconcile passes with the gang ready and unplaceable, more than the timeout after submit.
    const passes = await reconcilePasses(p);
    await waitFor(async () => (await reconcilePasses(p)) >= passes + 2, 10_000, 'two reconcile passes');
    for (const m of gang.gangMembers) t.equal((await c.get(m.id)).state, JobState.JOB_STATE_QUEUED, 'still waiting for slots');
    await c.cancel(blocker.id, 'make room');
    const done = await waitFor(async () => {
      const ms = await Promise.all(gang.gangMembers.map((m) => c.get(m.id)));
      return ms.every((m) => m.state === JobState.JOB_STATE_SUCCEEDED || m.state === JobState.JOB_STATE_FAILED) ? ms : undefined;
    }, 20_000, 'the gang to end');
    t.ok(done.every((m) => m.state === JobState.JOB_STATE_SUCCEEDED), `placed once room was made: ${done.map((m) => m.error?.code ?? 'ok')}`);
    t.ok(done.every((m) => m.startedAt!.getTime() >= runAt.getTime()), 'not before run_at');
  });
});
