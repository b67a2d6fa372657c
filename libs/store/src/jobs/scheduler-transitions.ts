import type { JobStateName } from '../schema/enums.js';
import { jobColumnList, raw, type JobRow, type Queryable } from './job-row.js';
import { fromStates } from './state-machine.js';

/** A job the scheduler tracks while it is not finished. */
export type ActiveJob = Pick<JobRow, 'id' | 'workspaceId' | 'queue' | 'priority' | 'attempt' | 'createdAt' | 'updatedAt' |
  'runAt' | 'nextAttemptAt' | 'gangId' | 'gangSize'> & { state: 'QUEUED' | 'DISPATCHED' | 'RUNNING' | 'RETRY_WAIT' };

export const activeKeys = ['id', 'workspaceId', 'queue', 'priority', 'state', 'attempt', 'createdAt', 'updatedAt', 'runAt',
  'nextAttemptAt', 'gangId', 'gangSize'] as const;

/** A dispatched attempt: what the worker's message is made of. */
export type DispatchedAttempt = Pick<JobRow, 'id' | 'workspaceId' | 'queue' | 'type' | 'attempt' | 'maxAttempts' | 'timeoutMs' |
  'labels' | 'idempotencyKey' | 'createdAt' | 'gangId' | 'gangSize' | 'traceparent'> & {
  /** The stored input as JSON text, passed to the worker untouched. */
  inputJson: string;
  dispatchedAt: Date;
  /** When the attempt could first start (created, run_at reached, or its retry due). */
  readyAt: Date;
};

/** The scheduler's leader lease that fences a dispatch. */
export interface LeaseFence {
  name: string;
  holder: string;
  epoch: number;
}

/**
 * dispatch: QUEUED | RETRY_WAIT → DISPATCHED with the next attempt, in one statement for
 * the whole admitted batch, with history; only while `lease` is held at its epoch
 * (fencing: a deposed leader changes nothing). Returns the jobs dispatched.
 */
export async function dispatchJobs(q: Queryable, ids: readonly string[], lease: LeaseFence): Promise<DispatchedAttempt[]> {
  if (ids.length === 0) return [];
  return q<DispatchedAttempt[]>`
    WITH before AS (
      SELECT id, next_attempt_at FROM jobs WHERE id = ANY(${ids as string[]}::uuid[])
    ), lease AS (
      SELECT 1 FROM leases WHERE name = ${lease.name} AND holder = ${lease.holder}
        AND epoch = ${lease.epoch} AND expires_at > now() FOR SHARE
    ), upd AS (
      UPDATE jobs SET state = 'DISPATCHED', attempt = attempt + 1, dispatched_at = now(), updated_at = now(),
        next_attempt_at = NULL, worker_id = NULL, started_at = NULL, progress = NULL, progress_note = NULL
      WHERE id = ANY(${ids as string[]}::uuid[]) AND state IN (${raw(q, fromStates('dispatch'))}) AND EXISTS (SELECT 1 FROM lease)
      RETURNING id, workspace_id, queue, type, attempt, max_attempts, timeout_ms, input::text AS input_json, labels,
        idempotency_key, created_at, dispatched_at, gang_id, gang_size, traceparent, run_at
    ), hist AS (
      INSERT INTO job_events (job_id, attempt, state, source, at)
      SELECT id, attempt, 'DISPATCHED', 'scheduler', dispatched_at FROM upd
    )
    SELECT upd.id, upd.workspace_id AS "workspaceId", upd.queue, upd.type, upd.attempt, upd.max_attempts AS "maxAttempts",
      upd.timeout_ms AS "timeoutMs", upd.input_json AS "inputJson", upd.labels, upd.idempotency_key AS "idempotencyKey",
      upd.created_at AS "createdAt", upd.dispatched_at AS "dispatchedAt", upd.gang_id AS "gangId", upd.gang_size AS "gangSize",
      upd.traceparent, GREATEST(upd.created_at, upd.run_at, before.next_attempt_at) AS "readyAt"
    FROM upd JOIN before USING (id)`;
}

/**
 * requeueLostDispatch: DISPATCHED → QUEUED for attempts whose dispatch message was lost,
 * each only at the attempt given (a later attempt is not touched). One statement.
 */
export async function requeueLostDispatches(q: Queryable, attempts: readonly { id: string; attempt: number }[]): Promise<ActiveJob[]> {
  if (attempts.length === 0) return [];
  return q<ActiveJob[]>`
    UPDATE jobs j SET state = 'QUEUED', updated_at = now(), dispatched_at = NULL
    FROM json_to_recordset(${JSON.stringify(attempts.map((a) => ({ id: a.id, attempt: a.attempt })))}::text::json) AS c(id uuid, attempt int)
    WHERE j.id = c.id AND j.attempt = c.attempt AND j.state IN (${raw(q, fromStates('requeueLostDispatch'))})
    RETURNING ${raw(q, jobColumnList('j', activeKeys))}`;
}

/** requeueAfterStreamLoss: every DISPATCHED job back to QUEUED (NATS lost the messages). Returns how many. */
export async function requeueAllDispatched(q: Queryable): Promise<number> {
  const res = await q`UPDATE jobs SET state = 'QUEUED', updated_at = now(), dispatched_at = NULL
    WHERE state IN (${raw(q, fromStates('requeueAfterStreamLoss'))})`;
  return res.count;
}

/**
 * failUnplaceableGang: QUEUED | RETRY_WAIT → FAILED (GANG_PLACEMENT_TIMEOUT) for a gang's
 * waiting members, with history, in one statement. Returns the members failed and the state each left.
 */
export async function failUnplaceableGang(q: Queryable, gangId: string):
  Promise<(Pick<JobRow, 'id' | 'attempt' | 'queue' | 'workspaceId' | 'traceparent'> & { previousState: JobStateName })[]> {
  return q`
    WITH old AS (
      SELECT id, state FROM jobs WHERE gang_id = ${gangId} AND state IN (${raw(q, fromStates('failUnplaceableGang'))}) FOR UPDATE
    ), upd AS (
      UPDATE jobs j SET state = 'FAILED', finished_at = now(), updated_at = now(), next_attempt_at = NULL,
        error_code = 'GANG_PLACEMENT_TIMEOUT', error_retryable = false,
        error_message = 'not enough free worker slots to start every member at once within the placement timeout'
      FROM old WHERE j.id = old.id
      RETURNING j.id, j.attempt, j.queue, j.workspace_id, j.traceparent, old.state AS previous_state
    ), hist AS (
      INSERT INTO job_events (job_id, attempt, state, source, detail)
      SELECT id, attempt, 'FAILED', 'scheduler', '{"error":{"code":"GANG_PLACEMENT_TIMEOUT"}}'::jsonb FROM upd
    )
    SELECT id, attempt, queue, workspace_id AS "workspaceId", traceparent, previous_state AS "previousState" FROM upd`;
}
