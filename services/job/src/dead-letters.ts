import type { DeadLetterFilter } from '@aijob/contracts';
import { InvalidArgumentError } from '@aijob/core';
import { traceIdOf } from '@aijob/telemetry';
import type { AuditWriter, Store } from '@aijob/store';
import type { Caller } from './jobs.js';
import { jobColumns, type JobRow } from './job-record.js';
import type { Submitter } from './submitter.js';
import { parseJobId } from './validation.js';
import type { WatchHub } from './watch-hub.js';

const MAX_IDS = 10_000;

/** SQL conditions (and parameters) for a filter over the caller's FAILED jobs. */
function conditions(workspaceId: string, f: DeadLetterFilter | undefined, alias = 'j'): { where: string; params: unknown[] } {
  const params: unknown[] = [workspaceId];
  const where = [`${alias}.workspace_id = $1`, `${alias}.state = 'FAILED'`];
  const add = (clause: string, v: unknown) => { params.push(v); where.push(clause.replaceAll('?', `$${params.length}`)); };
  if (f?.queue) add(`${alias}.queue = ?`, f.queue);
  if (f?.type) add(`${alias}.type = ?`, f.type);
  if (f?.errorCode) add(`${alias}.error_code = ?`, f.errorCode);
  if (f?.retryable !== undefined) add(`coalesce(${alias}.error_retryable, false) = ?`, f.retryable);
  if (f?.failedAfter) add(`${alias}.finished_at >= ?`, f.failedAfter);
  if (f?.failedBefore) add(`${alias}.finished_at < ?`, f.failedBefore);
  if (f?.provider) add(`coalesce(${alias}.input->>'provider', '') = ?`, f.provider);
  if (f?.jobIds.length) {
    if (f.jobIds.length > MAX_IDS) throw InvalidArgumentError.field('filter.job_ids', `at most ${MAX_IDS}`);
    add(`${alias}.id = ANY(?::uuid[])`, f.jobIds.map((id) => parseJobId(id, 'filter.job_ids')));
  }
  return { where: where.join(' AND '), params };
}

function isEmpty(f: DeadLetterFilter | undefined): boolean {
  return !f || (!f.queue && !f.type && !f.errorCode && f.retryable === undefined && !f.failedAfter && !f.failedBefore &&
    !f.provider && f.jobIds.length === 0);
}

/** Dead letters: jobs that ended FAILED, to inspect, count, retry in bulk or purge. */
export class DeadLetters {
  constructor(private readonly d: { store: Store; submitter: Submitter; hub: WatchHub; audit: AuditWriter }) {}

  async list(caller: Caller, f: DeadLetterFilter | undefined, pageSize: number, pageToken: string):
    Promise<{ rows: JobRow[]; next: string }> {
    if (pageSize < 0 || pageSize > 1000) throw InvalidArgumentError.field('page_size', 'must be between 0 and 1000');
    const limit = pageSize || 100;
    const { where, params } = conditions(caller.principal.workspaceId, f);
    let clause = where;
    if (pageToken) {
      const [at, id] = Buffer.from(pageToken, 'base64url').toString().split('|');
      if (!at || !id || Number.isNaN(Date.parse(at))) throw InvalidArgumentError.field('page_token', 'is not a token from this API');
      params.push(new Date(at), parseJobId(id, 'page_token'));
      clause += ` AND (j.finished_at, j.id) < ($${params.length - 1}, $${params.length}::uuid)`;
    }
    params.push(limit + 1);
    const rows = await this.d.store.sql.unsafe<JobRow[]>(
      `SELECT ${jobColumns} FROM jobs j WHERE ${clause} ORDER BY j.finished_at DESC, j.id DESC LIMIT $${params.length}`,
      params as never[]);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      rows: page,
      next: rows.length > limit && last ? Buffer.from(`${last.finished_at!.toISOString()}|${last.id}`).toString('base64url') : '',
    };
  }

  async stats(caller: Caller, f: DeadLetterFilter | undefined) {
    const { where, params } = conditions(caller.principal.workspaceId, f);
    const rows = await this.d.store.sql.unsafe<{ dim: string; key: string; n: number }[]>(
      `WITH d AS (SELECT j.error_code, coalesce(j.input->>'provider', '') AS provider, j.queue, j.type, j.error_retryable
                  FROM jobs j WHERE ${where})
       SELECT 'total' AS dim, '' AS key, count(*)::int AS n FROM d
       UNION ALL SELECT 'retryable', '', count(*) FILTER (WHERE coalesce(error_retryable, false))::int FROM d
       UNION ALL SELECT 'error_code', coalesce(error_code, ''), count(*)::int FROM d GROUP BY 2
       UNION ALL SELECT 'provider', provider, count(*)::int FROM d GROUP BY 2
       UNION ALL SELECT 'queue', queue, count(*)::int FROM d GROUP BY 2
       UNION ALL SELECT 'type', type, count(*)::int FROM d GROUP BY 2`, params as never[]);
    const by = (dim: string) => rows.filter((r) => r.dim === dim).map((r) => ({ key: r.key, count: r.n }))
      .sort((a, b) => b.count - a.count);
    return {
      total: rows.find((r) => r.dim === 'total')?.n ?? 0,
      retryable: rows.find((r) => r.dim === 'retryable')?.n ?? 0,
      byErrorCode: by('error_code'), byProvider: by('provider').filter((c) => c.key !== ''), byQueue: by('queue'), byType: by('type'),
    };
  }

  /**
   * Reopens the selected dead letters (and the rest of their gangs) with a fresh set of
   * attempts, applying input overrides, oldest failures first.
   */
  async retry(caller: Caller, r: { filter?: DeadLetterFilter; all: boolean; inputOverrides?: Record<string, unknown>;
    modelOverride: string; limit: number }): Promise<string[]> {
    if (isEmpty(r.filter) && !r.all) throw InvalidArgumentError.field('filter', 'is empty; set all=true to retry every dead letter');
    if (r.limit < 0) throw InvalidArgumentError.field('limit', 'must not be negative');
    if (r.modelOverride.length > 256) throw InvalidArgumentError.field('model_override', 'at most 256 characters');
    const overrides = { ...(r.inputOverrides ?? {}), ...(r.modelOverride ? { model: r.modelOverride } : {}) };
    const { where, params } = conditions(caller.principal.workspaceId, r.filter);
    params.push(JSON.stringify(overrides));
    const ov = params.length;
    params.push(r.limit > 0 ? r.limit : null);
    const lim = params.length;
    const rows = await this.d.store.sql.begin(async (tx) => {
      const reopened = await tx.unsafe<JobRow[]>(
        `WITH sel AS (
           SELECT j.id, j.gang_id FROM jobs j WHERE ${where} ORDER BY j.finished_at, j.id LIMIT $${lim} FOR UPDATE
         ), ext AS (
           SELECT id FROM sel
           UNION SELECT g.id FROM jobs g JOIN sel ON g.gang_id = sel.gang_id
             WHERE g.workspace_id = $1 AND g.state IN ('FAILED', 'CANCELLED', 'SUCCEEDED')
         )
         UPDATE jobs SET state = 'QUEUED', input = input || $${ov}::text::jsonb, max_attempts = attempt + max_attempts,
           output = NULL, error_code = NULL, error_message = NULL, error_retryable = NULL, finished_at = NULL,
           started_at = NULL, dispatched_at = NULL, next_attempt_at = NULL, worker_id = NULL, progress = NULL,
           progress_note = NULL, updated_at = now()
         FROM ext WHERE jobs.id = ext.id RETURNING ${jobColumns.split(',').map((c) => `jobs.${c.trim()}`).join(', ')}`,
        params as never[]);
      if (reopened.length > 0) {
        await tx`INSERT INTO job_events (job_id, attempt, state, source, detail)
          SELECT id, attempt, 'QUEUED', 'job', ${JSON.stringify({ retried_by: caller.principal.subject, dead_letter: true })}::text::jsonb
          FROM json_to_recordset(${JSON.stringify(reopened.map((x) => ({ id: x.id, attempt: x.attempt })))}::text::json)
            AS r(id uuid, attempt int)`;
      }
      return reopened;
    });
    for (let i = 0; i < rows.length; i += 1000) await this.d.submitter.announceAgain(rows.slice(i, i + 1000));
    for (const row of rows) this.d.hub.notify(row.id);
    this.record(caller, 'dlq.retry', `${rows.length} jobs reopened`);
    return rows.map((x) => x.id);
  }

  /** Deletes the selected dead letters and their history; usage rows stay for billing. */
  async purge(caller: Caller, filter: DeadLetterFilter | undefined, all: boolean): Promise<number> {
    if (isEmpty(filter) && !all) throw InvalidArgumentError.field('filter', 'is empty; set all=true to purge every dead letter');
    const { where, params } = conditions(caller.principal.workspaceId, filter);
    const [row] = await this.d.store.sql.unsafe<{ n: number }[]>(
      `WITH gone AS (DELETE FROM jobs j WHERE ${where} RETURNING j.id),
            hist AS (DELETE FROM job_events e USING gone WHERE e.job_id = gone.id)
       SELECT count(*)::int AS n FROM gone`, params as never[]);
    this.record(caller, 'dlq.purge', `${row!.n} jobs deleted`);
    return row!.n;
  }

  private record(caller: Caller, action: string, reason: string): void {
    this.d.audit.record({
      actor: caller.principal.subject, workspaceId: caller.principal.workspaceId, action, resource: 'dead-letters',
      outcome: 'allowed', reason, traceId: traceIdOf(caller.traceparent), requestId: caller.requestId,
    });
  }
}
