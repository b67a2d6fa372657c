import type { JobStateName } from '../schema/enums.js';
import type { Sql, Tx } from '../client.js';
import { appendHistory } from './history.js';
import { jobColumnList, raw, type JobRow, type Queryable } from './job-row.js';
import { allows, fromStates } from './state-machine.js';

/** What a single-job operator transition did: the rows moved (the job first), or why nothing. */
export interface OperatorOutcome<R> {
  rows: R[];
  /** The job's state before (absent when it does not exist). */
  previous?: JobStateName;
  exists: boolean;
}

/** Runs inside the transition's transaction (the audit row of the request). */
export type InTransaction = (tx: Tx) => Promise<void>;

/**
 * cancel: QUEUED | DISPATCHED | RUNNING | RETRY_WAIT → CANCELLED, the job and every
 * unfinished member of its gang, with history and (through `audit`) the audit row, in
 * one transaction. Nothing changes when the job is missing or already finished.
 */
export async function cancelJob(sql: Sql, c: {
  workspaceId: string; id: string; reason: string; actor: string; audit: InTransaction;
}): Promise<OperatorOutcome<JobRow & { previousState: JobStateName }>> {
  return sql.begin(async (tx) => {
    const old = await lockJob(tx, c.workspaceId, c.id);
    if (!old) return { rows: [], exists: false };
    if (!allows('cancel', old.state)) return { rows: [], exists: true, previous: old.state };
    const rows = await tx<(JobRow & { previousState: JobStateName })[]>`
      WITH old AS (
        SELECT id, state FROM jobs WHERE workspace_id = ${c.workspaceId}
          AND (id = ${c.id} OR (gang_id = ${old.gangId} AND ${old.gangId}::uuid IS NOT NULL))
          AND state IN (${raw(tx, fromStates('cancel'))}) FOR UPDATE
      )
      UPDATE jobs j SET state = 'CANCELLED', finished_at = now(), updated_at = now(), next_attempt_at = NULL,
        error_code = 'CANCELLED', error_message = ${c.reason || 'cancelled by request'}, error_retryable = false
      FROM old WHERE j.id = old.id
      RETURNING ${raw(tx, jobColumnList('j'))}, old.state AS "previousState"`;
    await appendHistory(tx, rows, 'CANCELLED', 'job', { reason: c.reason, by: c.actor });
    await c.audit(tx);
    return { rows: jobFirst(rows, c.id), previous: old.state, exists: true };
  });
}

/**
 * retryFromFailed: FAILED | CANCELLED → QUEUED with a fresh set of attempts, and
 * reopenGangMember for the rest of its gang (SUCCEEDED members too), so the gang runs
 * again as a whole. History and the audit row in the same transaction.
 */
export async function retryJob(sql: Sql, r: {
  workspaceId: string; id: string; actor: string; audit: InTransaction;
}): Promise<OperatorOutcome<JobRow>> {
  return sql.begin(async (tx) => {
    const old = await lockJob(tx, r.workspaceId, r.id);
    if (!old) return { rows: [], exists: false };
    if (!allows('retryFromFailed', old.state)) return { rows: [], exists: true, previous: old.state };
    const rows = await tx<JobRow[]>`
      UPDATE jobs SET state = 'QUEUED', max_attempts = attempt + max_attempts, output = NULL, error_code = NULL,
        error_message = NULL, error_retryable = NULL, finished_at = NULL, started_at = NULL, dispatched_at = NULL,
        next_attempt_at = NULL, worker_id = NULL, progress = NULL, progress_note = NULL, updated_at = now()
      WHERE workspace_id = ${r.workspaceId} AND (id = ${r.id} OR (gang_id = ${old.gangId} AND ${old.gangId}::uuid IS NOT NULL))
        AND state IN (${raw(tx, fromStates('reopenGangMember'))}) AND (id = ${r.id} OR gang_id IS NOT NULL)
      RETURNING ${raw(tx, jobColumnList(''))}`;
    await appendHistory(tx, rows, 'QUEUED', 'job', { retried_by: r.actor });
    await r.audit(tx);
    return { rows: jobFirst(rows, r.id), previous: old.state, exists: true };
  });
}

/**
 * clearQueue: QUEUED | RETRY_WAIT → CANCELLED for a workspace's waiting jobs of a queue
 * (those of `states`, which the transition narrows to its sources), with history, in
 * one statement. Returns the jobs cancelled and the state each left.
 */
export async function cancelWaitingJobs(q: Queryable, c: {
  queue: string; workspaceId: string; states: readonly string[]; reason: string;
}): Promise<(Pick<JobRow, 'id' | 'attempt' | 'traceparent'> & { previousState: JobStateName })[]> {
  return q`
    WITH old AS (
      SELECT id, state FROM jobs WHERE queue = ${c.queue} AND workspace_id = ${c.workspaceId}
        AND state = ANY(${c.states as string[]}::text[]) AND state IN (${raw(q, fromStates('clearQueue'))}) FOR UPDATE
    ), upd AS (
      UPDATE jobs j SET state = 'CANCELLED', finished_at = now(), updated_at = now(), next_attempt_at = NULL,
        error_code = 'CANCELLED', error_message = ${c.reason}, error_retryable = false
      FROM old WHERE j.id = old.id
      RETURNING j.id, j.attempt, old.state AS "previousState", j.traceparent
    ), hist AS (
      INSERT INTO job_events (job_id, attempt, state, source, detail)
      SELECT id, attempt, 'CANCELLED', 'scheduler', json_build_object('reason', ${c.reason}::text, 'by', 'ClearQueue')::jsonb FROM upd
    )
    SELECT * FROM upd`;
}

/** The job's state and gang, its row locked for the rest of the transaction. */
async function lockJob(tx: Tx, workspaceId: string, id: string) {
  const [old] = await tx<Pick<JobRow, 'state' | 'gangId'>[]>`
    SELECT state, gang_id AS "gangId" FROM jobs WHERE id = ${id} AND workspace_id = ${workspaceId} FOR UPDATE`;
  return old;
}

function jobFirst<R extends { id: string }>(rows: R[], id: string): R[] {
  return rows.sort((a, b) => (a.id === id ? -1 : b.id === id ? 1 : 0));
}
