import { jobStateFromJSON, msToDuration, type Job } from '@aijob/contracts';
import { traceIdOf } from '@aijob/telemetry';
import type { JobStateName } from '@aijob/store';

/** A jobs row as selected by the repository (snake_case, as Postgres returns it). */
export interface JobRow {
  id: string;
  workspace_id: string;
  queue: string;
  type: string;
  state: JobStateName;
  priority: number;
  attempt: number;
  max_attempts: number;
  timeout_ms: number;
  input: Record<string, unknown>;
  output: Record<string, unknown> | null;
  error_code: string | null;
  error_message: string | null;
  error_retryable: boolean | null;
  labels: Record<string, string>;
  idempotency_key: string | null;
  run_at: Date | null;
  next_attempt_at: Date | null;
  gang_id: string | null;
  gang_size: number;
  worker_id: string | null;
  progress: number | null;
  progress_note: string | null;
  created_by: string;
  traceparent: string;
  created_at: Date;
  updated_at: Date;
  dispatched_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
}

export const jobColumns = `id, workspace_id, queue, type, state, priority, attempt, max_attempts, timeout_ms,
  input, output, error_code, error_message, error_retryable, labels, idempotency_key, run_at, next_attempt_at,
  gang_id, gang_size, worker_id, progress, progress_note, created_by, traceparent, created_at, updated_at,
  dispatched_at, started_at, finished_at`;

export const isTerminal = (state: JobStateName) => state === 'SUCCEEDED' || state === 'FAILED' || state === 'CANCELLED';

const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

/** The API view of a job row. */
export function toJob(r: JobRow): Job {
  return {
    id: r.id,
    workspaceId: r.workspace_id,
    queue: r.queue,
    type: r.type,
    state: jobStateFromJSON(`JOB_STATE_${r.state}`),
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    priority: r.priority,
    input: r.input,
    output: opt(r.output),
    error: r.error_code ? { code: r.error_code, message: r.error_message ?? '', retryable: r.error_retryable ?? false } : undefined,
    labels: r.labels,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    startedAt: opt(r.started_at),
    finishedAt: opt(r.finished_at),
    timeout: msToDuration(r.timeout_ms),
    idempotencyKey: r.idempotency_key ?? '',
    runAt: opt(r.run_at),
    nextAttemptAt: opt(r.next_attempt_at),
    traceId: traceIdOf(r.traceparent),
    workerId: r.worker_id ?? '',
    progress: r.progress ?? 0,
    progressNote: r.progress_note ?? '',
    gangSize: r.gang_size,
    gangId: r.gang_id ?? '',
    usage: [],
  };
}
