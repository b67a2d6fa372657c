import { jobColumnsOf, type JobRow, type Queryable } from './job-row.js';

/** A validated submission with its identity: what `submit` stores. */
export interface JobSubmission {
  id: string;
  workspaceId: string;
  queue: string;
  type: string;
  priority: number;
  maxAttempts: number;
  timeoutMs: number;
  retryBaseMs: number | null;
  input: Record<string, unknown>;
  labels: Record<string, string>;
  idempotencyKey: string | null;
  runAt: Date | null;
  gangId: string | null;
  gangSize: number;
  createdBy: string;
  traceparent: string;
  /** Goes to the audit row written with the job. */
  requestId: string;
}

/**
 * submit: (new) → QUEUED. One statement for a whole group commit: inserts every job
 * (QUEUED, attempt 0) and its `job.submit` audit row. A job whose (workspace,
 * idempotency key) is taken is skipped. Returns the stored jobs' rows.
 */
export async function submitJobs(q: Queryable, jobs: readonly JobSubmission[]): Promise<JobRow[]> {
  if (jobs.length === 0) return [];
  // One JSON parameter for the whole batch: one round trip, no per-row parameters.
  const doc = jobs.map((j) => ({
    id: j.id, workspace_id: j.workspaceId, queue: j.queue, type: j.type, priority: j.priority,
    max_attempts: j.maxAttempts, timeout_ms: j.timeoutMs, input: j.input, labels: j.labels,
    idempotency_key: j.idempotencyKey, run_at: j.runAt, created_by: j.createdBy, traceparent: j.traceparent,
    request_id: j.requestId, gang_id: j.gangId, gang_size: j.gangSize, retry_base_ms: j.retryBaseMs,
  }));
  const stored = await q<{ id: string; created_at: Date }[]>`
    WITH u AS (
      SELECT * FROM json_to_recordset(${JSON.stringify(doc)}::text::json) AS u(
        id uuid, workspace_id text, queue text, type text, priority int, max_attempts int, timeout_ms int,
        input jsonb, labels jsonb, idempotency_key text, run_at timestamptz, created_by text, traceparent text,
        request_id text, gang_id uuid, gang_size int, retry_base_ms int)
    ), ins AS (
      INSERT INTO jobs (id, workspace_id, queue, type, state, priority, max_attempts, timeout_ms, input,
                        labels, idempotency_key, run_at, created_by, traceparent, gang_id, gang_size, retry_base_ms)
      SELECT id, workspace_id, queue, type, 'QUEUED', priority, max_attempts, timeout_ms, input,
             labels, idempotency_key, run_at, created_by, traceparent, gang_id, gang_size, retry_base_ms
      FROM u
      ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
      RETURNING id, created_at
    ), audit AS (
      INSERT INTO audit_log (at, actor, workspace_id, action, resource, outcome, trace_id, request_id)
      SELECT ins.created_at, u.created_by, u.workspace_id, 'job.submit', 'job/' || u.id, 'allowed',
             split_part(u.traceparent, '-', 2), u.request_id
      FROM ins JOIN u ON u.id = ins.id
    )
    SELECT id, created_at FROM ins`;
  const byId = new Map(jobs.map((j) => [j.id, j]));
  return stored.map((s) => submittedRow(byId.get(s.id)!, s.created_at));
}

/** The row of a job just stored (what the insert wrote, without reading it back). */
function submittedRow(j: JobSubmission, createdAt: Date): JobRow {
  return {
    id: j.id, workspaceId: j.workspaceId, queue: j.queue, type: j.type, state: 'QUEUED', priority: j.priority,
    attempt: 0, maxAttempts: j.maxAttempts, timeoutMs: j.timeoutMs, retryBaseMs: j.retryBaseMs, input: j.input,
    output: null, errorCode: null, errorMessage: null, errorRetryable: null, labels: j.labels,
    idempotencyKey: j.idempotencyKey, runAt: j.runAt, nextAttemptAt: null, gangId: j.gangId, gangSize: j.gangSize,
    workerId: null, progress: null, progressNote: null, createdBy: j.createdBy, traceparent: j.traceparent,
    createdAt, updatedAt: createdAt, dispatchedAt: null, startedAt: null, finishedAt: null,
  };
}

/** The jobs holding these (workspace, idempotency key) pairs. */
export async function jobsByIdempotencyKey(q: Queryable, keys: readonly { workspaceId: string; key: string }[]): Promise<JobRow[]> {
  if (keys.length === 0) return [];
  return q<JobRow[]>`
    SELECT ${jobColumnsOf(q, '')} FROM jobs WHERE (workspace_id, idempotency_key) IN
      (SELECT * FROM unnest(${keys.map((k) => k.workspaceId)}::text[], ${keys.map((k) => k.key)}::text[]))`;
}

/** Jobs past their idempotency window give up their key, so a new job may take it. */
export async function releaseIdempotencyKeys(q: Queryable, ids: readonly string[]): Promise<void> {
  await q`UPDATE jobs SET idempotency_key = NULL WHERE id = ANY(${ids as string[]}::uuid[])`;
}
