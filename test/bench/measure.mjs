// What the benchmark and the soak share: percentiles, the no-op job, open-loop submitting,
// and reading completions and dispatch latency from Postgres (the record of truth).

/** A no-op `echo` job's input: about 200 bytes as JSON. */
export const input = { prompt: 'x'.repeat(150), n: 1, tags: ['bench', 'echo'] };

export const round = (x, d = 2) => Number(x.toFixed(d));
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

/** p50, p99 and p99.9 of a list of numbers, rounded, with the count. */
export function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: round(pct(s, 50)), p99: round(pct(s, 99)), p999: round(pct(s, 99.9)), n: s.length };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `n` jobs labelled `run` have SUCCEEDED; resolves the last one's finish time (ms).
 * Every job of the run is stored by then (submits answer after the insert), so it polls
 * for the run's unfinished jobs, which the partial index of active jobs finds without
 * reading the whole table (a poll that scans it costs Postgres more CPU than the jobs).
 */
export async function waitDone(sql, run, n, timeoutMs = 30 * 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [{ active }] = await sql`SELECT count(*)::int AS active FROM jobs
      WHERE state IN ('QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT') AND labels->>'run' = ${run}`;
    if (active === 0) {
      const [{ done }] = await sql`SELECT count(*)::int AS done FROM jobs WHERE labels->>'run' = ${run} AND state = 'SUCCEEDED'`;
      if (done >= n) break;
      throw new Error(`run ${run}: all jobs ended, ${done} of ${n} SUCCEEDED`);
    }
    if (Date.now() > deadline) throw new Error(`run ${run}: ${active} of ${n} jobs unfinished after ${timeoutMs} ms`);
    await sleep(250);
  }
  const [{ last }] = await sql`SELECT max(finished_at) AS last FROM jobs WHERE labels->>'run' = ${run}`;
  return last.getTime();
}

/** Dispatch latency (submit accepted → handler start) of a run's jobs, from their records. */
export async function dispatchStats(sql, run) {
  const rows = await sql`SELECT extract(epoch FROM (started_at - created_at)) * 1000 AS ms FROM jobs
    WHERE labels->>'run' = ${run} AND started_at IS NOT NULL`;
  return stats(rows.map((r) => Number(r.ms)));
}

/**
 * Submits `rate` jobs a second for `seconds`, on schedule whatever the answers take (open
 * loop, so slow answers cannot lower the offered load). Resolves the submit latencies (ms).
 */
export async function openLoop(clients, { rate, seconds, labels, queue }) {
  const lat = [];
  const pending = [];
  const total = Math.round(rate * seconds);
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait > 1) await sleep(wait);
    const s = performance.now();
    pending.push(clients[i % clients.length].submit({ type: 'echo', input, queue, labels }).then(() => lat.push(performance.now() - s)));
  }
  await Promise.all(pending);
  return { jobs: total, submitMs: lat };
}
