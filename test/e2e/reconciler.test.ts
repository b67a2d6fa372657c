import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { DispatchedJob } from '@aijob/contracts';
import { JobState } from '@aijob/sdk';
import { NATS_URL, startPlatform, waitFor, type Platform } from '../helpers/platform.js';

const metric = async (p: Platform, proc: string, re: RegExp) => Number(re.exec(await p.metrics(proc))?.[1] ?? 0);
const passes = (p: Platform, proc: string) => metric(p, proc, /^controller_reconcile_total (\d+)/m);
const repairs = (p: Platform, proc: string, kind: string) =>
  metric(p, proc, new RegExp(`^controller_reconcile_repairs_total\\{kind="${kind}"\\} (\\d+)`, 'm'));

t.test('the reconciler, one duty at a time', async (t) => {
  const p = await startPlatform(t, {
    workers: 1,
    serviceEnv: { worker: { WORKER_CONCURRENCY: '1' }, scheduler: { DISPATCH_STUCK_MS: '500', LEADER_LEASE_MS: '10000',
      DB_MAINTENANCE: 'always', DB_MAINTENANCE_INTERVAL_MS: '1000', DB_MAINTENANCE_MIN_ROWS: '20' } },
  });
  const c = p.client();
  const sql = p.sql();
  const state = async (id: string) => (await c.get(id)).state;

  await t.test('a DISPATCHED job whose message was lost is queued again and runs; controller_reconcile_total grows', async (t) => {
    const before = await passes(p, 'scheduler-0');
    // The only slot is busy, so the next job's message waits in the stream, where we delete it.
    const blocker = await c.submit({ type: 'sleep', input: { ms: 120_000 } });
    await waitFor(async () => (await state(blocker.id)) === JobState.JOB_STATE_RUNNING, 20_000, 'the blocker to run');
    const victim = await c.submit({ type: 'echo' });
    const nc = await connect({ servers: NATS_URL });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const stream = `${p.namespace.toUpperCase()}_DISPATCH`;
    const seq = await waitFor(async () => {
      const m = await jsm.streams.getMessage(stream, { last_by_subj: `${p.namespace}.dispatch.default` });
      return m && DispatchedJob.decode(m.data).jobId === victim.id ? m.seq : undefined;
    }, 20_000, 'the victim\'s dispatch message');
    t.ok(await jsm.streams.deleteMessage(stream, seq, false), 'dispatch message deleted');

    await waitFor(async () => (await sql`SELECT count(*)::int AS n FROM job_events
      WHERE job_id = ${victim.id} AND state = 'DISPATCHED'`)[0]!['n'] === 2, 30_000, 'the victim dispatched again');
    t.ok((await repairs(p, 'scheduler-0', 'dispatch_lost')) >= 1, 'counted as a dispatch_lost repair');
    await c.cancel(blocker.id, 'make room');
    const done = await waitFor(async () => {
      const j = await c.get(victim.id);
      return j.state === JobState.JOB_STATE_SUCCEEDED ? j : undefined;
    }, 20_000, 'the victim to succeed');
    t.equal(done.attempt, 2, 'it ran as its second attempt');
    const after = await passes(p, 'scheduler-0');
    t.ok(after >= before + 2, `controller_reconcile_total grew from ${before} to ${after}`);
  });

  await t.test('the leader vacuums the jobs table once its finished jobs leave enough dead rows', async (t) => {
    const jobs = await c.submitMany(Array.from({ length: 30 }, (_, i) => ({ type: 'echo', input: { i } })));
    await waitFor(async () => (await sql`SELECT count(*)::int AS n FROM jobs WHERE id = ANY(${jobs.map((j) => j.id)}::uuid[])
      AND state = 'SUCCEEDED'`)[0]!['n'] === 30, 30_000, 'the jobs to succeed');
    // Each job was updated on its way (DISPATCHED, RUNNING, SUCCEEDED): dead rows the leader
    // vacuums (`always`, so that it does whatever the server's autovacuum setting).
    // (An ANALYZE of the table may come first, for rows changed rather than dead.)
    const line = await p.proc('scheduler-0').waitForLine((l) => l['msg'] === 'table maintained' && l['table'] === 'jobs' &&
      l['action'] === 'vacuum', 30_000);
    t.ok((line['dead_rows'] as number) >= 20, `it counted the dead rows (${String(line['dead_rows'])})`);
    t.ok((await metric(p, 'scheduler-0', /^aijob_db_maintenance_total\{table="jobs",action="vacuum",outcome="ok"\} (\d+)/m)) >= 1,
      'aijob_db_maintenance_total counts it');
  });

  await t.test('a RUNNING job past its timeout with no live worker fails with TIMEOUT', async (t) => {
    const job = await c.submit({ type: 'sleep', timeoutMs: 4_000, maxAttempts: 1, input: { ms: 60_000 } });
    await waitFor(async () => (await state(job.id)) === JobState.JOB_STATE_RUNNING, 20_000, 'the job to run');
    // The worker and the only scheduler die together. The next leader can take the lease
    // only after it expires (at least 7.5 s later), well past the job's timeout plus three
    // heartbeats: it finds the attempt running past its timeout on no live worker.
    await p.proc('worker-0').kill();
    await p.proc('scheduler-0').kill();
    await p.spawn('scheduler', { SCHEDULER_ID: `${p.id}-scheduler-1` }, 'scheduler-1');
    const failed = await waitFor(async () => {
      const j = await c.get(job.id);
      return j.state === JobState.JOB_STATE_FAILED ? j : undefined;
    }, 40_000, 'the job to fail');
    t.equal(failed.error?.code, 'TIMEOUT', 'failed as TIMEOUT');
    t.ok((await repairs(p, 'scheduler-1', 'timeout')) >= 1, 'counted as a timeout repair');
  });
});
