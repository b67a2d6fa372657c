import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { JobState } from '@aijob/sdk';
import { maxOverlap, type RanJob } from '../helpers/jobs.js';
import { NATS_URL, startPlatform, waitFor } from '../helpers/platform.js';

const count = async (sql: ReturnType<import('../helpers/platform.js').Platform['sql']>, state: string) =>
  (await sql`SELECT count(*)::int AS n FROM jobs WHERE state = ${state}`)[0]!['n'] as number;

t.test('kill -9 of the leader mid-run: the standby takes over within 10 s, every job succeeds once, max_concurrency holds throughout', async (t) => {
  const p = await startPlatform(t, {
    schedulers: 2, workers: 2,
    serviceEnv: { worker: { WORKER_CONCURRENCY: '32', WORKER_QUEUES: 'default,capped' }, scheduler: { LEADER_LEASE_MS: '3000' } },
  });
  const c = p.client();
  const sql = p.sql();
  const leaderOf = async () => ((await sql`SELECT holder FROM leases WHERE name = 'scheduler' AND expires_at > now()`)[0]?.['holder'] ?? '') as string;
  const first = await waitFor(leaderOf, 10_000, 'a leader');
  const leaderProc = p.procs.find((x) => first.endsWith(x.name))!;
  const standby = p.procs.find((x) => x.name.startsWith('scheduler') && x !== leaderProc)!;
  t.ok(leaderProc, `leader process ${first}`);
  t.match(await p.metrics(leaderProc.name), /controller_leader_election_master\{name="scheduler"\} 1/, 'the leader reports 1');
  t.match(await p.metrics(standby.name), /controller_leader_election_master\{name="scheduler"\} 0/, 'the standby reports 0');

  await c.queues.put('capped', { maxConcurrency: 4 });
  const capped = await c.submitMany(Array.from({ length: 400 }, () => ({ type: 'sleep', queue: 'capped', input: { ms: 60 } })));
  for (let i = 0; i < 2; i++) await c.submitMany(Array.from({ length: 1000 }, () => ({ type: 'sleep', input: { ms: 5 } })));
  await waitFor(async () => (await count(sql, 'SUCCEEDED')) >= 200, 30_000, 'the run to be under way');
  const killedAt = Date.now();
  await leaderProc.kill();
  const [{ left }] = await sql`SELECT count(*)::int AS left FROM jobs WHERE queue = 'capped' AND state = 'QUEUED'`;
  t.ok(left > 0, `the capped queue was mid-run at the kill (${left} waiting)`);
  const second = await waitFor(async () => { const l = await leaderOf(); return l && l !== first ? l : undefined; }, 15_000, 'a new leader');
  t.ok(Date.now() - killedAt < 10_000, `replaced within ${Date.now() - killedAt} ms`);
  t.not(second, first);
  await waitFor(async () => (await count(sql, 'SUCCEEDED')) === 2400, 120_000, 'all 2400 jobs to succeed');
  const [{ dup }] = await sql`SELECT count(*)::int AS dup FROM (
    SELECT job_id FROM job_events WHERE state = 'SUCCEEDED' GROUP BY job_id HAVING count(*) > 1) d`;
  t.equal(dup, 0, 'each job recorded SUCCEEDED once');
  const ran = await sql<RanJob[]>`SELECT id, workspace_id, priority, state, attempt, created_at, started_at, finished_at, run_at, labels
    FROM jobs WHERE id = ANY(${capped.map((j) => j.id)}::uuid[])`;
  const overlap = maxOverlap(ran);
  t.ok(overlap <= 4 && overlap >= 3, `the capped queue ran at most 4 at once across the failover (saw ${overlap})`);
  const metrics = await p.metrics(p.procs.find((x) => second.endsWith(x.name))!.name);
  t.match(metrics, /controller_leader_election_master\{name="scheduler"\} 1/, 'the new leader says so');
});

t.test('NATS loses its streams mid-run: every job still ends', async (t) => {
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { WORKER_CONCURRENCY: '16' } } });
  const c = p.client();
  const sql = p.sql();
  await c.submitMany(Array.from({ length: 500 }, () => ({ type: 'sleep', input: { ms: 20 } })));
  await waitFor(async () => (await count(sql, 'SUCCEEDED')) >= 50, 30_000, 'the run to be under way');
  const nc = await connect({ servers: NATS_URL });
  const jsm = await jetstreamManager(nc);
  for (const s of ['JOBS', 'DISPATCH', 'EVENTS']) await jsm.streams.delete(`${p.namespace.toUpperCase()}_${s}`);
  await nc.close();
  await waitFor(async () => {
    const [{ n }] = await sql`SELECT count(*)::int AS n FROM jobs WHERE state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')`;
    return n === 0;
  }, 120_000, 'every job to end');
  t.equal(await count(sql, 'SUCCEEDED'), 500, 'all 500 succeeded');
});

t.test('a worker killed mid-job: its jobs run again, as a new attempt, on another worker', async (t) => {
  const p = await startPlatform(t, { workers: 2, serviceEnv: { worker: { WORKER_CONCURRENCY: '2' } } });
  const c = p.client();
  const jobs = await c.submitMany(Array.from({ length: 4 }, () => ({ type: 'sleep', input: { ms: 4_000 } })));
  const running = await waitFor(async () => {
    const rows = await p.sql()`SELECT id, worker_id FROM jobs WHERE state = 'RUNNING'`;
    return rows.length === 4 ? rows : undefined;
  }, 20_000, 'all four running');
  const victim = p.procs.find((x) => x.name === 'worker-0')!;
  const victimJobs = running.filter((r) => String(r['worker_id']).endsWith('worker-0')).map((r) => r['id'] as string);
  t.ok(victimJobs.length > 0, 'the victim holds jobs');
  await victim.kill();
  const done = await waitFor(async () => {
    const all = await Promise.all(jobs.map((j) => c.get(j.id)));
    return all.every((j) => j.state === JobState.JOB_STATE_SUCCEEDED) ? all : undefined;
  }, 60_000, 'every job to succeed');
  for (const j of done.filter((d) => victimJobs.includes(d.id))) {
    t.equal(j.attempt, 2, 'the lost attempt counted');
    t.match(j.workerId, /worker-1$/, 'finished on the surviving worker');
  }
  const lost = await p.sql()`SELECT count(*)::int AS n FROM job_events WHERE state = 'RETRY_WAIT'`;
  t.equal(lost[0]!['n'], victimJobs.length, 'one retry per lost job');
});
