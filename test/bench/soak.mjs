// `npm run soak -- --minutes N`: a steady open-loop load of no-op jobs for N minutes,
// reporting per minute the submit and dispatch latency and each service's RSS, then the
// drift between the first and the last minute, with each process's CPU per minute and the
// jobs table's live and dead rows so a drift can be traced to where it comes from. The
// soak reads completions only once the load has ended, so its own queries load nothing
// meanwhile. Flags: --minutes N (default 10),
// --rate R (jobs/s, default 500), --json FILE, and the benchmark's --address, --api-key,
// --database-url, --workers, --concurrency.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AijobClient } from '@aijob/sdk';
import { openTarget, targetOptions } from './launcher.mjs';
import { dispatchStats, openLoop, round, stats, waitDone } from './measure.mjs';
import { platformGroups, Sampler } from './procs.mjs';

const { values } = parseArgs({ options: {
  minutes: { type: 'string', default: '10' }, rate: { type: 'string', default: '500' }, json: { type: 'string' },
  ...targetOptions,
} });
const minutes = Number(values.minutes);
const rate = Number(values.rate);
if (!(minutes > 0) || !(rate > 0)) throw new Error('--minutes and --rate must be positive numbers');
const log = (m) => process.stderr.write(`soak: ${m}\n`);
const services = ['auth', 'job', 'scheduler', 'worker'];
const processes = [...services, 'postgres', 'nats'];
/** The CPU columns of the table (auth's is near zero). */
const cpuColumns = processes.filter((s) => s !== 'auth');

const platform = await openTarget(values);
const clients = Array.from({ length: 8 }, () => new AijobClient({
  address: platform.jobAddr, queueAddress: platform.schedulerAddr, apiKey: platform.apiKey, deadlineMs: 60_000,
}));
const result = { date: new Date().toISOString(), minutes, ratePerSec: rate, perMinute: [] };

try {
  log(`${rate} jobs/s for ${minutes} min`);
  for (let m = 1; m <= minutes; m++) {
    const run = `${platform.id}-soak-${m}`;
    const sampler = new Sampler(platformGroups(platform), 1_000);
    const { jobs, submitMs } = await openLoop(clients, { rate, seconds: 60, labels: { run } });
    const resources = sampler.stop();
    const [table] = await platform.sql`SELECT n_live_tup::int AS live, n_dead_tup::int AS dead,
      (pg_total_relation_size('jobs') / 1048576)::int AS mb FROM pg_stat_user_tables WHERE relid = 'jobs'::regclass`;
    const row = { minute: m, run, jobs, submitMs: stats(submitMs),
      rssMb: Object.fromEntries(services.map((s) => [s, resources[s].peakRssMb])),
      cpuSeconds: Object.fromEntries(processes.map((s) => [s, resources[s].cpuSeconds])),
      jobsTable: table };
    result.perMinute.push(row);
    log(`minute ${m}: submit p50 ${row.submitMs.p50} ms, p99 ${row.submitMs.p99} ms; ` +
      `RSS ${services.map((s) => `${s} ${row.rssMb[s]}`).join(', ')} MB; ` +
      `CPU s ${processes.map((s) => `${s} ${row.cpuSeconds[s]}`).join(', ')}; ` +
      `jobs table ${table.live} live, ${table.dead} dead, ${table.mb} MB`);
  }
  // The jobs of each minute finished while later minutes' load was offered (steady state);
  // their records say when each started.
  for (const row of result.perMinute) {
    await waitDone(platform.sql, row.run, row.jobs);
    const d = await dispatchStats(platform.sql, row.run);
    delete row.run;
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
  'minute   submit p50 / p99 (ms)   dispatch p50 / p99 (ms)   RSS auth / job / scheduler / worker (MB)   CPU s job / scheduler / worker / postgres / nats   jobs live / dead',
  ...result.perMinute.map((r) => `${String(r.minute).padStart(6)}   ${`${r.submitMs.p50} / ${r.submitMs.p99}`.padEnd(22)}  ${`${r.dispatchMs.p50} / ${r.dispatchMs.p99}`.padEnd(24)}  ${services.map((s) => r.rssMb[s]).join(' / ').padEnd(41)}  ${cpuColumns.map((s) => r.cpuSeconds[s]).join(' / ').padEnd(48)}  ${r.jobsTable.live} / ${r.jobsTable.dead}`),
  '',
  `drift, last minute against the first: submit p99 ${result.drift.submitP99Ms} ms, dispatch p99 ${result.drift.dispatchP99Ms} ms, ` +
    `RSS ${services.map((s) => `${s} ${result.drift.rssMb[s] >= 0 ? '+' : ''}${result.drift.rssMb[s]}`).join(', ')} MB`,
];
process.stdout.write(`${lines.join('\n')}\n`);
if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2));
