// `npm run bench`: the platform's throughput, latency and footprint on this machine.
// Flags: --json FILE (write results), --quick (smaller runs), --pending N (jobs held
// pending for the backlog scenario; default 1 000 000, 0 skips it), --workers N, --concurrency N.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import os from 'node:os';
import { AijobClient } from '@aijob/sdk';
import { BenchPlatform } from './launcher.mjs';
import { pidsMatching, Sampler } from './procs.mjs';

const { values } = parseArgs({ options: {
  json: { type: 'string' }, quick: { type: 'boolean', default: false }, pending: { type: 'string' },
  workers: { type: 'string', default: '2' }, concurrency: { type: 'string', default: '256' },
} });
const quick = values.quick;
const pendingTarget = Number(values.pending ?? (quick ? 100_000 : 1_000_000));
const input = { prompt: 'x'.repeat(150), n: 1, tags: ['bench', 'echo'] }; // ~200 bytes as JSON
const log = (m) => process.stderr.write(`bench: ${m}\n`);

const pct = (sorted, p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
const stats = (xs) => { const s = [...xs].sort((a, b) => a - b); return { p50: pct(s, 50), p99: pct(s, 99), p999: pct(s, 99.9), n: s.length }; };
const round = (x, d = 2) => Number(x.toFixed(d));

const platform = await new BenchPlatform({ workers: Number(values.workers), concurrency: Number(values.concurrency) }).start();
const clients = Array.from({ length: 8 }, () => new AijobClient({
  address: platform.jobAddr, queueAddress: platform.schedulerAddr, apiKey: platform.apiKey, deadlineMs: 60_000,
}));
const c = clients[0];
const sampler = new Sampler({
  auth: () => platform.pids('auth'), job: () => platform.pids('job'), scheduler: () => platform.pids('scheduler'),
  worker: () => platform.pids('worker'), postgres: () => pidsMatching(/^postgres/), nats: () => pidsMatching(/nats-server/),
});
const results = { date: new Date().toISOString(), machine: { cpus: os.cpus().length, memGb: Math.round(os.totalmem() / 2 ** 30), node: process.version }, runs: {} };

async function waitDone(run, n) {
  for (;;) {
    const [{ done }] = await platform.sql`SELECT count(*)::int AS done FROM jobs WHERE labels->>'run' = ${run} AND state = 'SUCCEEDED'`;
    if (done >= n) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const [{ last }] = await platform.sql`SELECT max(finished_at) AS last FROM jobs WHERE labels->>'run' = ${run}`;
  return last.getTime();
}

async function warmUp() {
  await c.submitMany(Array.from({ length: 500 }, () => ({ type: 'echo', input, labels: { run: 'warm' } })));
  await waitDone('warm', 500);
}

async function batchThroughput(n) {
  const run = 'batch';
  const t0 = Date.now();
  let next = 0;
  await Promise.all(clients.slice(0, 4).map(async (cl) => {
    while (next < n) {
      const k = Math.min(1000, n - next);
      next += k;
      await cl.submitMany(Array.from({ length: k }, () => ({ type: 'echo', input, labels: { run } })));
    }
  }));
  const submitted = Date.now();
  const end = await waitDone(run, n);
  return { jobs: n, submitPerSec: Math.round(n / ((submitted - t0) / 1000)), endToEndPerSec: Math.round(n / ((end - t0) / 1000)), seconds: round((end - t0) / 1000, 1) };
}

async function singleThroughput(n, concurrency) {
  const run = 'single';
  const lat = [];
  let next = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: concurrency }, async (_, i) => {
    const cl = clients[i % clients.length];
    while (next++ < n) {
      const s = performance.now();
      await cl.submit({ type: 'echo', input, labels: { run } });
      lat.push(performance.now() - s);
    }
  }));
  const end = await waitDone(run, n);
  return { jobs: n, clients: concurrency, endToEndPerSec: Math.round(n / ((end - t0) / 1000)), submitMs: stats(lat) };
}

async function openLoop(rate, seconds) {
  const run = `rate${rate}`;
  const lat = [];
  const pending = [];
  const total = rate * seconds;
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const s = performance.now();
    pending.push(clients[i % clients.length].submit({ type: 'echo', input, labels: { run } }).then(() => lat.push(performance.now() - s)));
  }
  await Promise.all(pending);
  await waitDone(run, total);
  const rows = await platform.sql`SELECT extract(epoch FROM (started_at - created_at)) * 1000 AS ms FROM jobs WHERE labels->>'run' = ${run}`;
  const d = stats(rows.map((r) => Number(r.ms)));
  return { offeredPerSec: rate, jobs: total, dispatchMs: { p50: round(d.p50), p99: round(d.p99), p999: round(d.p999) },
    submitMs: Object.fromEntries(Object.entries(stats(lat)).map(([k, v]) => [k, k === 'n' ? v : round(v)])) };
}

async function sequentialSubmitLatency(n, queue) {
  const lat = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await c.submit({ type: 'echo', input, queue, labels: { run: `seq-${queue}` } });
    lat.push(performance.now() - s);
  }
  const s = stats(lat);
  return { p50: round(s.p50), p99: round(s.p99) };
}

async function backlog(n) {
  await c.queues.put('backlog', {});
  await c.queues.pause('backlog');
  const empty = await sequentialSubmitLatency(quick ? 300 : 1000, 'default');
  const t0 = Date.now();
  let next = 0;
  await Promise.all(clients.slice(0, 4).map(async (cl) => {
    while (next < n) {
      const k = Math.min(1000, n - next);
      next += k;
      await cl.submitMany(Array.from({ length: k }, () => ({ type: 'echo', queue: 'backlog', input, labels: { run: 'backlog' } })));
      if (next % 100_000 < 1000) log(`  ${next} pending`);
    }
  }));
  const fillSeconds = (Date.now() - t0) / 1000;
  const stats = await c.queues.clusterStats();
  const loaded = await sequentialSubmitLatency(quick ? 300 : 1000, 'default');
  return { pending: Number(stats.totalPending), fillPerSec: Math.round(n / fillSeconds), submitMsEmpty: empty, submitMsWithBacklog: loaded };
}

try {
  log(`platform up (${platform.workers} workers x ${platform.concurrency}); warming up`);
  await warmUp();
  log('batch submits (SubmitJobs, 1000 a call)');
  results.runs.batch = await batchThroughput(quick ? 20_000 : 60_000);
  log(JSON.stringify(results.runs.batch));
  log('single submits from 64 concurrent callers');
  results.runs.single = await singleThroughput(quick ? 10_000 : 30_000, 64);
  log(JSON.stringify(results.runs.single));
  results.runs.openLoop = [];
  for (const rate of [200, 500, 2000]) {
    log(`open loop at ${rate} jobs/s`);
    results.runs.openLoop.push(await openLoop(rate, quick ? 5 : 10));
    log(JSON.stringify(results.runs.openLoop.at(-1)));
  }
  results.resources = sampler.stop();
  if (pendingTarget > 0) {
    log(`${pendingTarget} jobs pending`);
    const schedulerSampler = new Sampler({ scheduler: () => platform.pids('scheduler'), job: () => platform.pids('job') });
    results.runs.backlog = await backlog(pendingTarget);
    results.runs.backlog.resources = schedulerSampler.stop();
    log(JSON.stringify(results.runs.backlog));
  }
} finally {
  for (const cl of clients) cl.close();
  await platform.stop();
}

const r = results.runs;
const lines = [
  `aijob benchmark, ${results.date}, ${results.machine.cpus} cores, ${results.machine.memGb} GiB, Node ${results.machine.node}`,
  '',
  `end to end, batch submits (SubmitJobs x1000):  ${r.batch.endToEndPerSec} jobs/s  (submits accepted at ${r.batch.submitPerSec}/s)`,
  `end to end, single submits, 64 callers:       ${r.single.endToEndPerSec} jobs/s  (submit p50 ${round(r.single.submitMs.p50)} ms, p99 ${round(r.single.submitMs.p99)} ms)`,
  '',
  'offered load   dispatch p50 / p99 / p99.9 (ms)   submit p50 / p99 (ms)',
  ...r.openLoop.map((o) => `${String(o.offeredPerSec).padStart(6)} jobs/s   ${`${o.dispatchMs.p50} / ${o.dispatchMs.p99} / ${o.dispatchMs.p999}`.padEnd(32)}${o.submitMs.p50} / ${o.submitMs.p99}`),
  '',
  'process      peak RSS (MB)   CPU (s)',
  ...Object.entries(results.resources).map(([k, v]) => `${k.padEnd(12)} ${String(v.peakRssMb).padStart(13)}   ${v.cpuSeconds}`),
];
if (r.backlog) {
  lines.push('', `with ${r.backlog.pending} pending: submit p50 ${r.backlog.submitMsWithBacklog.p50} ms, p99 ${r.backlog.submitMsWithBacklog.p99} ms` +
    ` (empty: ${r.backlog.submitMsEmpty.p50} / ${r.backlog.submitMsEmpty.p99}); scheduler peak RSS ${r.backlog.resources.scheduler.peakRssMb} MB` +
    `; filled at ${r.backlog.fillPerSec} jobs/s`);
}
process.stdout.write(`${lines.join('\n')}\n`);
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
