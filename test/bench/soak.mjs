// `npm run soak -- --minutes N`: a steady open-loop load of no-op jobs for N minutes,
// reporting per minute the submit and dispatch latency and each service's RSS, then the
// drift between the first and the last minute. Flags: --minutes N (default 10),
// --rate R (jobs/s, default 500), --json FILE, and the benchmark's --address, --api-key,
// --database-url, --workers, --concurrency.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AijobClient } from '@aijob/sdk';
import { openTarget, targetOptions } from './launcher.mjs';
import { dispatchStats, openLoop, round, stats, waitDone } from './measure.mjs';
import { Sampler } from './procs.mjs';

const { values } = parseArgs({ options: {
  minutes: { type: 'string', default: '10' }, rate: { type: 'string', default: '500' }, json: { type: 'string' },
  ...targetOptions,
} });
const minutes = Number(values.minutes);
const rate = Number(values.rate);
if (!(minutes > 0) || !(rate > 0)) throw new Error('--minutes and --rate must be positive numbers');
const log = (m) => process.stderr.write(`soak: ${m}\n`);
const services = ['auth', 'job', 'scheduler', 'worker'];

const platform = await openTarget(values);
const clients = Array.from({ length: 8 }, () => new AijobClient({
  address: platform.jobAddr, queueAddress: platform.schedulerAddr, apiKey: platform.apiKey, deadlineMs: 60_000,
}));
const result = { date: new Date().toISOString(), minutes, ratePerSec: rate, perMinute: [] };

try {
  log(`${rate} jobs/s for ${minutes} min`);
  for (let m = 1; m <= minutes; m++) {
    const run = `${platform.id}-soak-${m}`;
    const sampler = new Sampler(Object.fromEntries(services.map((s) => [s, () => platform.pids(s)])), 1_000);
    const { jobs, submitMs } = await openLoop(clients, { rate, seconds: 60, labels: { run } });
    const resources = sampler.stop();
    // The minute's jobs finish while the next minute's load is offered, as in steady state.
    const finished = waitDone(platform.sql, run, jobs).then(() => dispatchStats(platform.sql, run));
    const row = { minute: m, jobs, submitMs: stats(submitMs), finished,
      rssMb: Object.fromEntries(services.map((s) => [s, resources[s].peakRssMb])) };
    result.perMinute.push(row);
    log(`minute ${m}: submit p50 ${row.submitMs.p50} ms, p99 ${row.submitMs.p99} ms; RSS ${services.map((s) => `${s} ${row.rssMb[s]}`).join(', ')} MB`);
  }
  for (const row of result.perMinute) {
    const d = await row.finished;
    delete row.finished;
    row.dispatchMs = { p50: d.p50, p99: d.p99 };
  }
} finally {
  for (const c of clients) c.close();
  await platform.stop();
}

const first = result.perMinute[0];
const last = result.perMinute.at(-1);
result.drift = {
  submitP99Ms: round(last.submitMs.p99 - first.submitMs.p99),
  dispatchP99Ms: round(last.dispatchMs.p99 - first.dispatchMs.p99),
  rssMb: Object.fromEntries(services.map((s) => [s, last.rssMb[s] - first.rssMb[s]])),
};
const lines = [
  `aijob soak, ${result.date}: ${rate} jobs/s for ${minutes} min`,
  '',
  'minute   submit p50 / p99 (ms)   dispatch p50 / p99 (ms)   RSS auth / job / scheduler / worker (MB)',
  ...result.perMinute.map((r) => `${String(r.minute).padStart(6)}   ${`${r.submitMs.p50} / ${r.submitMs.p99}`.padEnd(22)}  ${`${r.dispatchMs.p50} / ${r.dispatchMs.p99}`.padEnd(24)}  ${services.map((s) => r.rssMb[s]).join(' / ')}`),
  '',
  `drift, last minute against the first: submit p99 ${result.drift.submitP99Ms} ms, dispatch p99 ${result.drift.dispatchP99Ms} ms, ` +
    `RSS ${services.map((s) => `${s} ${result.drift.rssMb[s] >= 0 ? '+' : ''}${result.drift.rssMb[s]}`).join(', ')} MB`,
];
process.stdout.write(`${lines.join('\n')}\n`);
if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2));
