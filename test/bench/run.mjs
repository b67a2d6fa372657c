// `npm run bench`: the platform's throughput, latency and footprint on this machine.
// Flags: --json FILE (write results), --quick (smaller runs), --pending N (jobs held
// pending for the backlog scenario; default 1 000 000, 0 skips it), --workers N, --concurrency N;
// --address HOST:PORT --api-key KEY --database-url URL [--scheduler-address HOST:PORT] measure
// a platform that is already running instead of starting one; --only alone,batch,single,load,backlog
// runs some of the scenarios. Each scenario's jobs are costed: CPU ms per job per process,
// Postgres statements (or transactions), rows and WAL bytes per job (db-work.mjs); the
// `alone` scenario also counts every NATS message per job (nats-tap.mjs).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import os from 'node:os';
import { AijobClient } from '@aijob/sdk';
import { openTarget, targetOptions } from './launcher.mjs';
import { dispatchStats, input, openLoop, round, stats, waitDone as waitRun } from './measure.mjs';
import { DbWork } from './db-work.mjs';
import { NatsTap } from './nats-tap.mjs';
import { platformGroups, Sampler } from './procs.mjs';

const { values } = parseArgs({ options: {
  json: { type: 'string' }, quick: { type: 'boolean', default: false }, pending: { type: 'string' },
  only: { type: 'string', default: 'alone,batch,single,load,backlog' }, ...targetOptions,
} });
const quick = values.quick;
const only = new Set(values.only.split(','));
const log = (m) => process.stderr.write(`bench: ${m}\n`);

const platform = await openTarget(values);
// A platform given by address keeps its jobs: no million-job backlog there unless asked for.
const pendingTarget = only.has('backlog') ? Number(values.pending ?? (platform.remote ? 0 : quick ? 100_000 : 1_000_000)) : 0;
const tag = (name) => `${platform.id}-${name}`;
const clients = Array.from({ length: 8 }, () => new AijobClient({
  address: platform.jobAddr, queueAddress: platform.schedulerAddr, apiKey: platform.apiKey, deadlineMs: 60_000,
}));
const c = clients[0];
const sampler = new Sampler({ ...platformGroups(platform), 'bench client': () => [process.pid] });
const results = { date: new Date().toISOString(), machine: { cpus: os.cpus().length, memGb: Math.round(os.totalmem() / 2 ** 30), node: process.version }, runs: {} };

const waitDone = (run, n) => waitRun(platform.sql, run, n);
const db = await new DbWork(platform.sql, () => platform.ownStatements()).init();
const platformProcesses = ['auth', 'job', 'scheduler', 'worker', 'postgres', 'nats'];
let lastDb;

/**
 * Runs a scenario and adds what each of its jobs cost: CPU ms per process (from the
 * first submit to the last job's end) and Postgres work (statements, rows, WAL bytes).
 */
async function measured(fn) {
  lastDb ??= await db.read();
  const cpu0 = sampler.cpu();
  const r = await fn();
  const cpu1 = sampler.cpu();
  const ms = Object.fromEntries(Object.keys(cpu1).map((k) => [k, round(((cpu1[k] - cpu0[k]) * 1000) / r.jobs, 3)]));
  ms.platform = round(platformProcesses.reduce((n, k) => n + ms[k], 0), 3);
  r.cpuMsPerJob = ms;
  const now = await db.read();
  r.postgres = db.perJob(lastDb, now, r.jobs);
  lastDb = now;
  return r;
}

async function warmUp() {
  await c.submitMany(Array.from({ length: 500 }, () => ({ type: 'echo', input, labels: { run: tag('warm') } })));
  await waitDone(tag('warm'), 500);
}

async function batchThroughput(n) {
  const run = tag('batch');
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
  const run = tag('single');
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

async function fixedLoad(rate, seconds) {
  const run = tag(`rate${rate}`);
  const { jobs, submitMs } = await openLoop(clients, { rate, seconds, labels: { run } });
  await waitDone(run, jobs);
  const d = await dispatchStats(platform.sql, run);
  return { offeredPerSec: rate, jobs, dispatchMs: { p50: d.p50, p99: d.p99, p999: d.p999 }, submitMs: stats(submitMs) };
}

/**
 * One job at a time: 200 jobs spaced 20 ms apart, so that each goes through the platform
 * alone (no batching with others), with every NATS message of the namespace counted.
 * Per job: statements, rows, WAL bytes, NATS messages (see docs/performance.md).
 */
async function alone() {
  const tap = await new NatsTap(platform.nats, platform.id).start();
  try {
    const r = await measured(async () => {
      const run = tag('alone');
      tap.take();
      const { jobs } = await openLoop([c], { rate: 50, seconds: 4, labels: { run } });
      await waitDone(run, jobs);
      return { jobs, nats: tap.take() };
    });
    r.natsPerJob = Object.fromEntries(Object.entries(r.nats).sort().map(([k, v]) => [k, round(v / r.jobs, 2)]));
    delete r.nats;
    return r;
  } finally {
    await tap.stop();
  }
}

async function sequentialSubmitLatency(n, queue) {
  const lat = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await c.submit({ type: 'echo', input, queue, labels: { run: tag(`seq-${queue}`) } });
    lat.push(performance.now() - s);
  }
  const s = stats(lat);
  return { p50: s.p50, p99: s.p99 };
}

async function backlog(n) {
  const queue = tag('backlog');
  await c.queues.put(queue, {});
  await c.queues.pause(queue);
  const empty = await sequentialSubmitLatency(quick ? 300 : 1000, 'default');
  const t0 = Date.now();
  let next = 0;
  await Promise.all(clients.slice(0, 4).map(async (cl) => {
    while (next < n) {
      const k = Math.min(1000, n - next);
      next += k;
      await cl.submitMany(Array.from({ length: k }, () => ({ type: 'echo', queue, input, labels: { run: tag('backlog') } })));
      if (next % 100_000 < 1000) log(`  ${next} pending`);
    }
  }));
  const fillSeconds = (Date.now() - t0) / 1000;
  const cluster = await c.queues.clusterStats();
  const loaded = await sequentialSubmitLatency(quick ? 300 : 1000, 'default');
  if (platform.remote) await c.queues.clear(queue, { reason: 'benchmark backlog' });
  return { pending: Number(cluster.totalPending), fillPerSec: Math.round(n / fillSeconds), submitMsEmpty: empty, submitMsWithBacklog: loaded };
}

try {
  log(platform.remote ? `measuring the platform at ${platform.jobAddr}; warming up`
    : `platform up (${platform.workers} workers x ${platform.concurrency}); warming up`);
  await warmUp();
  if (only.has('alone') && !platform.remote) {
    log('one job at a time (50/s), counting its work');
    results.runs.alone = await alone();
    log(JSON.stringify(results.runs.alone));
  }
  if (only.has('batch')) {
    log('batch submits (SubmitJobs, 1000 a call)');
    results.runs.batch = await measured(() => batchThroughput(quick ? 20_000 : 60_000));
    log(JSON.stringify(results.runs.batch));
  }
  if (only.has('single')) {
    log('single submits from 64 concurrent callers');
    results.runs.single = await measured(() => singleThroughput(quick ? 10_000 : 30_000, 64));
    log(JSON.stringify(results.runs.single));
  }
  if (only.has('load')) {
    results.runs.openLoop = [];
    for (const rate of [200, 500, 2000]) {
      log(`open loop at ${rate} jobs/s`);
      results.runs.openLoop.push(await measured(() => fixedLoad(rate, quick ? 5 : 10)));
      log(JSON.stringify(results.runs.openLoop.at(-1)));
    }
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
];
if (r.batch) lines.push(`end to end, batch submits (SubmitJobs x1000):  ${r.batch.endToEndPerSec} jobs/s  (submits accepted at ${r.batch.submitPerSec}/s)`);
if (r.single) lines.push(`end to end, single submits, 64 callers:       ${r.single.endToEndPerSec} jobs/s  (submit p50 ${r.single.submitMs.p50} ms, p99 ${r.single.submitMs.p99} ms)`);
if (r.openLoop) {
  lines.push('', 'offered load   dispatch p50 / p99 / p99.9 (ms)   submit p50 / p99 (ms)',
    ...r.openLoop.map((o) => `${String(o.offeredPerSec).padStart(6)} jobs/s   ${`${o.dispatchMs.p50} / ${o.dispatchMs.p99} / ${o.dispatchMs.p999}`.padEnd(32)}${o.submitMs.p50} / ${o.submitMs.p99}`));
}
lines.push('', 'process      peak RSS (MB, largest process / all)   CPU (s)',
  ...Object.entries(results.resources).map(([k, v]) => `${k.padEnd(12)} ${`${v.peakProcessRssMb} / ${v.peakRssMb}`.padStart(20)}                    ${v.cpuSeconds}`));
const costed = [['alone (50/s)', r.alone], ['batch', r.batch], ['single', r.single], ...(r.openLoop ?? []).map((o) => [`${o.offeredPerSec}/s`, o])].filter(([, x]) => x);
if (costed.length) {
  const cols = [...platformProcesses, 'platform', 'bench client'];
  lines.push('', `CPU ms per job   ${cols.map((c) => c.padStart(9)).join(' ')}`,
    ...costed.map(([name, x]) => `${name.padEnd(16)} ${cols.map((c) => String(x.cpuMsPerJob[c]).padStart(9)).join(' ')}`));
  const pg = costed[0][1].postgres;
  lines.push('', `Postgres per job (${pg.method}; WAL is the whole server's)`,
    `                 ${pg.statements !== undefined ? 'statements ' : ''}transactions  rows written   jobs ins/upd   job_events ins   audit_log ins   WAL bytes`,
    ...costed.map(([name, { postgres: p }]) => `${name.padEnd(16)} ${p.statements !== undefined ? String(p.statements).padStart(10) + ' ' : ''}` +
      `${String(p.transactions).padStart(12)} ${String(p.rowsWritten).padStart(13)}   ${`${p.rows.jobs.inserted} / ${p.rows.jobs.updated}`.padStart(12)}` +
      `   ${String(p.rows.job_events.inserted).padStart(14)}   ${String(p.rows.audit_log.inserted).padStart(13)}   ${String(p.walBytes).padStart(9)}`));
}
if (r.alone) {
  lines.push('', 'NATS messages per job, one job at a time (the namespace\'s subjects, acks, pull requests)',
    ...Object.entries(r.alone.natsPerJob).map(([k, v]) => `  ${k.padEnd(28)} ${v}`));
}
if (r.backlog) {
  lines.push('', `with ${r.backlog.pending} pending: submit p50 ${r.backlog.submitMsWithBacklog.p50} ms, p99 ${r.backlog.submitMsWithBacklog.p99} ms` +
    ` (empty: ${r.backlog.submitMsEmpty.p50} / ${r.backlog.submitMsEmpty.p99}); scheduler peak RSS ${r.backlog.resources.scheduler.peakRssMb} MB` +
    `; filled at ${r.backlog.fillPerSec} jobs/s`);
}
process.stdout.write(`${lines.join('\n')}\n`);
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
