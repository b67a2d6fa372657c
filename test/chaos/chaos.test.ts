import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { AijobClient } from '@aijob/sdk';
import { PrivateNats } from '../helpers/nats-server.js';
import { PrivatePostgres } from '../helpers/private-postgres.js';
import { repoRoot, ServiceProcess } from '../helpers/processes.js';
import { startPlatform, waitFor, type Platform } from '../helpers/platform.js';

/** Jobs in the run: CHAOS_JOBS (5000 with `npm run test:chaos`; the regular suite runs a smaller one). */
const N = Number(process.env['CHAOS_JOBS'] ?? 1500);
const CRASHES = 5;

function chaosWorker(p: Platform, n: number, logFile: string): Promise<ServiceProcess> {
  const w = new ServiceProcess(`chaos-worker-${n}`, join(repoRoot, 'test/fixtures/chaos-worker.mjs'),
    { ...p.env('worker'), WORKER_ID: `${p.id}-chaos-${n}`, WORKER_CONCURRENCY: '32', CHAOS_LOG: logFile });
  p.procs.push(w);
  return w.waitForLine((l) => l['msg'] === 'chaos worker ready', 30_000).then(() => w);
}

t.test(`chaos: ${N} jobs through a worker kill, a leader kill, a job-replica kill, a NATS restart and a Postgres restart`, async (t) => {
  const pg = await new PrivatePostgres().start();
  const nats = await new PrivateNats().start();
  t.teardown(async () => { await nats.remove(); await pg.remove(); });
  const p = await startPlatform(t, {
    pgBase: pg.base, natsUrl: nats.url, schedulers: 2, jobReplicas: 2, workers: 0,
    serviceEnv: { scheduler: { LEADER_LEASE_MS: '3000' }, job: { RETRY_BASE_MS: '100' } },
  });
  const logFile = join(tmpdir(), `aijob-chaos-${p.id}.log`);
  const workers = [await chaosWorker(p, 0, logFile), await chaosWorker(p, 1, logFile)];
  const clients = p.jobAddrs.map((address) => new AijobClient({ address, apiKey: p.apiKey, deadlineMs: 10_000, maxAttempts: 1 }));
  t.teardown(() => { for (const c of clients) c.close(); });
  const dead = new Set<number>();

  // Submit in batches with idempotency keys, so a batch whose answer was lost can be sent again safely.
  const acked = new Map<string, string>();
  const submitting = (async () => {
    for (let i = 0; i < N; i += 50) {
      const batch = Array.from({ length: Math.min(50, N - i) }, (_, k) => ({
        type: 'chaos.work', input: { ms: 5 + ((i + k) % 15) }, idempotencyKey: `chaos-${i + k}`, maxAttempts: 10,
      }));
      for (let attempt = 0; ; attempt++) {
        const r = (i / 50 + attempt) % clients.length;
        if (dead.has(r)) continue;
        try {
          const res = await clients[r]!.submitMany(batch);
          res.forEach((j, k) => acked.set(batch[k]!.idempotencyKey, j.id));
          break;
        } catch {
          if (attempt > 300) throw new Error('submits kept failing');
          await new Promise((res) => setTimeout(res, 200));
        }
      }
    }
  })();
  const progress = (fraction: number) => waitFor(() => acked.size >= N * fraction, 120_000, `${fraction * 100}% submitted`, 20);
  const leader = async () => ((await p.sql()`SELECT holder FROM leases WHERE expires_at > now()`.catch(() => []))[0]?.['holder'] ?? '') as string;

  await progress(0.15);
  await workers[0]!.kill();
  workers.push(await chaosWorker(p, 2, logFile));
  t.pass('killed a worker (-9), started another');

  await progress(0.3);
  const first = await waitFor(leader, 10_000, 'a leader');
  await p.procs.find((x) => first.endsWith(x.name))!.kill();
  t.pass(`killed the leader ${first} (-9)`);

  await progress(0.45);
  dead.add(1);
  await p.proc('job-1').kill();
  t.pass('killed a job-service replica (-9)');

  await progress(0.6);
  await nats.stop();
  await nats.start();
  t.pass('restarted NATS');

  await progress(0.75);
  await pg.stop();
  await pg.start();
  t.pass('restarted Postgres');

  await submitting;
  t.equal(acked.size, N, 'every submit was acknowledged (retried through the outages)');
  const ids = [...acked.values()];
  const sql = p.sql();
  await waitFor(async () => {
    const [{ n }] = await sql`SELECT count(*)::int AS n FROM jobs WHERE state IN ('SUCCEEDED', 'FAILED', 'CANCELLED')`;
    return n >= N;
  }, 240_000, 'every job to end', 500);

  const rows = await sql<{ id: string; state: string; attempt: number }[]>`SELECT id, state, attempt FROM jobs`;
  t.equal(rows.length, N, 'exactly the acknowledged jobs exist: none lost, none extra');
  const inDb = new Set(rows.map((r) => r.id));
  t.ok(ids.every((id) => inDb.has(id)), 'every acknowledged submit is in Postgres');
  t.equal(rows.filter((r) => r.state === 'SUCCEEDED').length, N, 'every job succeeded');
  const [{ twice }] = await sql`SELECT count(*)::int AS twice FROM (SELECT job_id FROM job_events
    WHERE state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') GROUP BY job_id HAVING count(*) > 1) d`;
  t.equal(twice, 0, 'no job recorded as finished twice');
  const runs = new Map<string, number>();
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    const [id] = line.split(' ');
    if (id && id.length === 36) runs.set(id, (runs.get(id) ?? 0) + 1);
  }
  t.equal(runs.size, N, 'every job\'s handler ran');
  const worst = Math.max(...runs.values());
  t.ok(worst <= 1 + CRASHES, `a handler ran at most once more per crash (worst: ${worst} runs)`);
  t.comment(`re-runs: ${[...runs.values()].filter((n) => n > 1).length} jobs ran more than once`);
});
