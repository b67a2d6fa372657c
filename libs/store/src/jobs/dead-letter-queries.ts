import type postgres from 'postgres';
import type { Sql } from '../client.js';
import { appendHistory } from './history.js';
import { jobColumnList, raw, type JobRow, type Queryable } from './job-row.js';
import { fromStates } from './state-machine.js';

/** A filter over one workspace's dead letters (jobs that ended FAILED); unset fields match all. */
export interface DeadLetterQuery {
  workspaceId: string;
  queue?: string;
  type?: string;
  errorCode?: string;
  retryable?: boolean;
  failedAfter?: Date;
  failedBefore?: Date;
  provider?: string;
  /** Parsed job ids; empty or absent: any. */
  jobIds?: string[];
}

type Fragment = postgres.PendingQuery<postgres.Row[]>;

/** The filter's conditions on jobs aliased `j`. */
function where(q: Queryable, f: DeadLetterQuery, t: 'retryDeadLetter' | 'purgeDeadLetter' = 'retryDeadLetter'): Fragment {
  const none = q``;
  return q`j.workspace_id = ${f.workspaceId} AND j.state IN (${raw(q, fromStates(t))})
    ${f.queue ? q`AND j.queue = ${f.queue}` : none}
    ${f.type ? q`AND j.type = ${f.type}` : none}
    ${f.errorCode ? q`AND j.error_code = ${f.errorCode}` : none}
    ${f.retryable !== undefined ? q`AND coalesce(j.error_retryable, false) = ${f.retryable}` : none}
    ${f.failedAfter ? q`AND j.finished_at >= ${f.failedAfter}` : none}
    ${f.failedBefore ? q`AND j.finished_at < ${f.failedBefore}` : none}
    ${f.provider ? q`AND coalesce(j.input->>'provider', '') = ${f.provider}` : none}
    ${f.jobIds?.length ? q`AND j.id = ANY(${f.jobIds}::uuid[])` : none}`;
}

/** A page of dead letters, newest failure first, after the (finishedAt, id) cursor. */
export async function listDeadLetters(q: Queryable, f: DeadLetterQuery, page: {
  after?: { finishedAt: Date; id: string }; limit: number;
}): Promise<JobRow[]> {
  const after = page.after ? q`AND (j.finished_at, j.id) < (${page.after.finishedAt}, ${page.after.id}::uuid)` : q``;
  return q<JobRow[]>`
    SELECT ${raw(q, jobColumnList('j'))} FROM jobs j WHERE ${where(q, f)} ${after}
    ORDER BY j.finished_at DESC, j.id DESC LIMIT ${page.limit}`;
}

/** Dead-letter counts by dimension (total, retryable, error_code, provider, queue, type). */
export async function deadLetterCounts(q: Queryable, f: DeadLetterQuery): Promise<{ dim: string; key: string; n: number }[]> {
  return q<{ dim: string; key: string; n: number }[]>`
    WITH d AS (SELECT j.error_code, coalesce(j.input->>'provider', '') AS provider, j.queue, j.type, j.error_retryable
               FROM jobs j WHERE ${where(q, f)})
    SELECT 'total' AS dim, '' AS key, count(*)::int AS n FROM d
    UNION ALL SELECT 'retryable', '', count(*) FILTER (WHERE coalesce(error_retryable, false))::int FROM d
    UNION ALL SELECT 'error_code', coalesce(error_code, ''), count(*)::int FROM d GROUP BY 2
    UNION ALL SELECT 'provider', provider, count(*)::int FROM d GROUP BY 2
    UNION ALL SELECT 'queue', queue, count(*)::int FROM d GROUP BY 2
    UNION ALL SELECT 'type', type, count(*)::int FROM d GROUP BY 2`;
}

/**
 * retryDeadLetter: FAILED → QUEUED for the selected dead letters (at most `limit`, oldest
 * failures first), and reopenGangMember for the rest of their gangs, with a fresh set of
 * attempts and `inputOverrides` merged into the input; history in the same transaction.
 */
export async function retryDeadLetters(sql: Sql, f: DeadLetterQuery, r: {
  inputOverrides: Record<string, unknown>; limit: number | null; actor: string;
}): Promise<JobRow[]> {
  return sql.begin(async (tx) => {
    const reopened = await tx<JobRow[]>`
      WITH sel AS (
        SELECT j.id, j.gang_id FROM jobs j WHERE ${where(tx, f)} ORDER BY j.finished_at, j.id LIMIT ${r.limit} FOR UPDATE
      ), ext AS (
        SELECT id FROM sel
        UNION SELECT g.id FROM jobs g JOIN sel ON g.gang_id = sel.gang_id
          WHERE g.workspace_id = ${f.workspaceId} AND g.state IN (${raw(tx, fromStates('reopenGangMember'))})
      )
      UPDATE jobs SET state = 'QUEUED', input = input || ${JSON.stringify(r.inputOverrides)}::text::jsonb,
        max_attempts = attempt + max_attempts,
        output = NULL, error_code = NULL, error_message = NULL, error_retryable = NULL, finished_at = NULL,
        started_at = NULL, dispatched_at = NULL, next_attempt_at = NULL, worker_id = NULL, progress = NULL,
        progress_note = NULL, updated_at = now()
      FROM ext WHERE jobs.id = ext.id RETURNING ${raw(tx, jobColumnList('jobs'))}`;
    if (reopened.length > 0) await appendHistory(tx, reopened, 'QUEUED', 'job', { retried_by: r.actor, dead_letter: true });
    return reopened;
  });
}

/** purgeDeadLetter: deletes the selected dead letters and their history (usage rows stay, for billing). */
export async function purgeDeadLetters(q: Queryable, f: DeadLetterQuery): Promise<number> {
  const [row] = await q<{ n: number }[]>`
    WITH gone AS (DELETE FROM jobs j WHERE ${where(q, f, 'purgeDeadLetter')} RETURNING j.id),
         hist AS (DELETE FROM job_events e USING gone WHERE e.job_id = gone.id)
    SELECT count(*)::int AS n FROM gone`;
  return row!.n;
}
