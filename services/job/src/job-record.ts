import { jobStateFromJSON, msToDuration, type Job } from '@aijob/contracts';
import { traceIdOf } from '@aijob/telemetry';
import type { JobRow, JobStateName } from '@aijob/store';

export const isTerminal = (state: JobStateName) => state === 'SUCCEEDED' || state === 'FAILED' || state === 'CANCELLED';

const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

/** The API view of a job row. */
export function toJob(r: JobRow): Job {
  return {
    id: r.id,
    workspaceId: r.workspaceId,
    queue: r.queue,
    type: r.type,
    state: jobStateFromJSON(`JOB_STATE_${r.state}`),
    attempt: r.attempt,
    maxAttempts: r.maxAttempts,
    priority: r.priority,
    input: r.input,
    output: opt(r.output),
    error: r.errorCode ? { code: r.errorCode, message: r.errorMessage ?? '', retryable: r.errorRetryable ?? false } : undefined,
    labels: r.labels,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    startedAt: opt(r.startedAt),
    finishedAt: opt(r.finishedAt),
    timeout: msToDuration(r.timeoutMs),
    idempotencyKey: r.idempotencyKey ?? '',
    runAt: opt(r.runAt),
    nextAttemptAt: opt(r.nextAttemptAt),
    traceId: traceIdOf(r.traceparent),
    workerId: r.workerId ?? '',
    progress: r.progress ?? 0,
    progressNote: r.progressNote ?? '',
    gangSize: r.gangSize,
    gangId: r.gangId ?? '',
    usage: [],
  };
}
