import { stateName, type Job } from '@aijob/sdk';

/** The columns of a job in lists. */
export const jobColumns = ['id', 'state', 'queue', 'type', 'attempt', 'created', 'error'];

export function jobRow(j: Job): Record<string, unknown> {
  return {
    id: j.id, state: stateName(j.state), queue: j.queue, type: j.type, attempt: `${j.attempt}/${j.maxAttempts}`,
    created: j.createdAt, error: j.error ? `${j.error.code}${j.error.retryable ? ' (retryable)' : ''}: ${j.error.message}` : '',
  };
}

/** A job as plain JSON (enum names, ISO times) for --json. */
export function jobJson(j: Job): Record<string, unknown> {
  return { ...j, state: stateName(j.state) };
}

/** Every field of one job, as key/value rows. */
export function jobDetail(j: Job): Record<string, unknown>[] {
  const rows: [string, unknown][] = [
    ['id', j.id], ['state', stateName(j.state)], ['workspace', j.workspaceId], ['queue', j.queue], ['type', j.type],
    ['priority', j.priority], ['attempt', `${j.attempt} of ${j.maxAttempts}`], ['created', j.createdAt],
    ['started', j.startedAt], ['finished', j.finishedAt], ['run at', j.runAt], ['next attempt', j.nextAttemptAt],
    ['worker', j.workerId], ['progress', j.progress ? `${j.progress}% ${j.progressNote}` : ''],
    ['idempotency key', j.idempotencyKey], ['gang', j.gangId ? `${j.gangId} (${j.gangSize})` : ''],
    ['labels', Object.keys(j.labels).length ? j.labels : ''], ['trace id', j.traceId],
    ['input', j.input], ['output', j.output],
    ['error', j.error ? `${j.error.code}${j.error.retryable ? ' (retryable)' : ''}: ${j.error.message}` : ''],
    ['usage', j.usage.length ? j.usage.map((u) => `${u.provider}/${u.model} ${u.promptTokens}+${u.completionTokens} tokens $${u.costUsd.toFixed(6)}`).join('; ') : ''],
  ];
  return rows.filter(([, v]) => v !== undefined && v !== '').map(([field, value]) => ({ field, value }));
}
