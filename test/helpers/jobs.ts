import type postgres from 'postgres';
import { waitFor } from './processes.js';

export interface RanJob {
  id: string;
  workspace_id: string;
  priority: number;
  state: string;
  attempt: number;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  run_at: Date | null;
  labels: Record<string, string>;
}

/** Waits until `n` jobs matching `where` are in a terminal state; returns all of them. */
export async function waitForFinished(sql: postgres.Sql, n: number, queue: string, timeoutMs = 60_000): Promise<RanJob[]> {
  await waitFor(async () => {
    const [row] = await sql`SELECT count(*)::int AS n FROM jobs WHERE queue = ${queue}
      AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED')`;
    return row!['n'] >= n;
  }, timeoutMs, `${n} finished jobs in queue ${queue}`, 100);
  return sql<RanJob[]>`SELECT id, workspace_id, priority, state, attempt, created_at, started_at, finished_at, run_at, labels
    FROM jobs WHERE queue = ${queue} ORDER BY started_at NULLS LAST, id`;
}

/** The most attempts running at once, from the start and end times the workers recorded. */
export function maxOverlap(jobs: RanJob[]): number {
  const points: [number, number][] = [];
  for (const j of jobs) {
    if (!j.started_at || !j.finished_at) continue;
    points.push([j.started_at.getTime(), 1], [j.finished_at.getTime(), -1]);
  }
  // Ends before starts at the same instant: back-to-back attempts do not overlap.
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cur = 0;
  let max = 0;
  for (const [, d] of points) { cur += d; max = Math.max(max, cur); }
  return max;
}
