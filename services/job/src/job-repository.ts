import {
  insertAuditIn, listAuditLog, type AuditLogQuery, type AuditLogRow, type AuditRecord, type JobStateName, type Store, type Tx,
} from '@aijob/store';
import { jobColumns, type JobRow } from './job-record.js';

/** An audit row of a job-service call (its trace and request always known). */
export type AuditEntry = AuditRecord & { traceId: string; requestId: string };

export interface ListFilter {
  workspaceId: string;
  queue?: string;
  type?: string;
  states: JobStateName[];
  /** Exclusive upper bound of ids (paging newest first). */
  beforeId?: string;
  limit: number;
}

/** ListAuditEvents' request: a filter and a page. */
export type AuditQuery = Omit<AuditLogQuery, 'beforeId' | 'limit'> & { pageSize: number; pageToken: string };

/** Reads and single-job writes of the job record, always scoped to a workspace. */
export class JobRepository {
  constructor(private readonly store: Store) {}

  async get(workspaceId: string, id: string): Promise<JobRow | undefined> {
    const [row] = await this.store.sql.unsafe<JobRow[]>(
      `SELECT ${jobColumns} FROM jobs WHERE id = $1 AND workspace_id = $2`, [id, workspaceId]);
    return row;
  }

  /** Several jobs of one workspace by id (in no particular order). */
  async getMany(workspaceId: string, ids: string[]): Promise<JobRow[]> {
    if (ids.length === 0) return [];
    return this.store.sql.unsafe<JobRow[]>(
      `SELECT ${jobColumns} FROM jobs WHERE id = ANY($1::uuid[]) AND workspace_id = $2`, [ids, workspaceId]);
  }

  async list(f: ListFilter): Promise<JobRow[]> {
    const where = ['workspace_id = $1'];
    const params: unknown[] = [f.workspaceId];
    const add = (clause: string, value: unknown) => { params.push(value); where.push(clause.replace('?', `$${params.length}`)); };
    if (f.queue) add('queue = ?', f.queue);
    if (f.type) add('type = ?', f.type);
    if (f.states.length > 0) add('state = ANY(?::text[])', f.states);
    if (f.beforeId) add('id < ?::uuid', f.beforeId);
    params.push(f.limit);
    return this.store.sql.unsafe<JobRow[]>(
      `SELECT ${jobColumns} FROM jobs WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT $${params.length}`,
      params as never[]);
  }

  /**
   * Cancels a job that has not finished, and with it every unfinished member of its
   * gang. Returns the job's row first, each with the state it left; nothing when the
   * job is missing (`exists: false`) or already finished (`previous` says how).
   */
  async cancel(workspaceId: string, id: string, reason: string, audit: AuditEntry):
    Promise<{ rows: (JobRow & { previous_state: JobStateName })[]; previous?: JobStateName; exists: boolean }> {
    return this.store.sql.begin(async (tx) => {
      const [old] = await tx<{ state: JobStateName; gang_id: string | null }[]>`
        SELECT state, gang_id FROM jobs WHERE id = ${id} AND workspace_id = ${workspaceId} FOR UPDATE`;
      if (!old) return { rows: [], exists: false };
      if (old.state === 'SUCCEEDED' || old.state === 'FAILED' || old.state === 'CANCELLED') {
        return { rows: [], exists: true, previous: old.state };
      }
      const rows = await tx.unsafe<(JobRow & { previous_state: JobStateName })[]>(
        `WITH old AS (
           SELECT id, state FROM jobs WHERE workspace_id = $2
             AND (id = $1 OR (gang_id = $4 AND $4 IS NOT NULL))
             AND state IN ('QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT') FOR UPDATE
         )
         UPDATE jobs j SET state = 'CANCELLED', finished_at = now(), updated_at = now(), next_attempt_at = NULL,
           error_code = 'CANCELLED', error_message = $3, error_retryable = false
         FROM old WHERE j.id = old.id
         RETURNING ${jobColumns.split(',').map((c) => `j.${c.trim()}`).join(', ')}, old.state AS previous_state`,
        [id, workspaceId, reason || 'cancelled by request', old.gang_id]);
      await tx`INSERT INTO job_events (job_id, attempt, state, source, detail)
        SELECT id, attempt, 'CANCELLED', 'job', ${JSON.stringify({ reason, by: audit.actor })}::text::jsonb
        FROM json_to_recordset(${JSON.stringify(rows.map((r) => ({ id: r.id, attempt: r.attempt })))}::text::json)
          AS r(id uuid, attempt int)`;
      await this.audit(tx, audit);
      rows.sort((a, b) => (a.id === id ? -1 : b.id === id ? 1 : 0));
      return { rows, previous: old.state, exists: true };
    });
  }

  /**
   * Reopens a FAILED or CANCELLED job with a fresh set of attempts — and, for a gang,
   * every member, so the gang runs again as a whole. The job's row comes first.
   */
  async retry(workspaceId: string, id: string, audit: AuditEntry):
    Promise<{ rows: JobRow[]; previous?: JobStateName; exists: boolean }> {
    return this.store.sql.begin(async (tx) => {
      const [old] = await tx<{ state: JobStateName; gang_id: string | null }[]>`
        SELECT state, gang_id FROM jobs WHERE id = ${id} AND workspace_id = ${workspaceId} FOR UPDATE`;
      if (!old) return { rows: [], exists: false };
      if (old.state !== 'FAILED' && old.state !== 'CANCELLED') return { rows: [], exists: true, previous: old.state };
      const rows = await tx.unsafe<JobRow[]>(
        `UPDATE jobs SET state = 'QUEUED', max_attempts = attempt + max_attempts, output = NULL, error_code = NULL,
           error_message = NULL, error_retryable = NULL, finished_at = NULL, started_at = NULL, dispatched_at = NULL,
           next_attempt_at = NULL, worker_id = NULL, progress = NULL, progress_note = NULL, updated_at = now()
         WHERE workspace_id = $2 AND (id = $1 OR (gang_id = $3 AND $3 IS NOT NULL))
           AND state IN ('FAILED', 'CANCELLED', 'SUCCEEDED') AND (id = $1 OR gang_id IS NOT NULL)
         RETURNING ${jobColumns}`, [id, workspaceId, old.gang_id]);
      await tx`INSERT INTO job_events (job_id, attempt, state, source, detail)
        SELECT id, attempt, 'QUEUED', 'job', ${JSON.stringify({ retried_by: audit.actor })}::text::jsonb
        FROM json_to_recordset(${JSON.stringify(rows.map((r) => ({ id: r.id, attempt: r.attempt })))}::text::json)
          AS r(id uuid, attempt int)`;
      await this.audit(tx, audit);
      rows.sort((a, b) => (a.id === id ? -1 : b.id === id ? 1 : 0));
      return { rows, previous: old.state, exists: true };
    });
  }

  async usage(jobId: string): Promise<{ provider: string; model: string; promptTokens: number; completionTokens: number; costUsd: number }[]> {
    const rows = await this.store.sql<{ provider: string; model: string; p: string; c: string; cost: number }[]>`
      SELECT provider, model, prompt_tokens::text AS p, completion_tokens::text AS c, cost_usd AS cost
      FROM usage WHERE job_id = ${jobId} ORDER BY id`;
    return rows.map((r) => ({ provider: r.provider, model: r.model, promptTokens: Number(r.p), completionTokens: Number(r.c), costUsd: r.cost }));
  }

  /** Whether job `id` exists in a workspace other than `workspaceId`. */
  /** The workspace a job belongs to when it is not `workspaceId`'s, or undefined. */
  async ownerElsewhere(workspaceId: string, id: string): Promise<string | undefined> {
    const [row] = await this.store.sql<{ workspace_id: string }[]>`
      SELECT workspace_id FROM jobs WHERE id = ${id} AND workspace_id <> ${workspaceId}`;
    return row?.workspace_id;
  }

  auditEvents(q: AuditLogQuery): Promise<AuditLogRow[]> {
    return listAuditLog(this.store.db, q);
  }

  async audit(tx: Tx | Store['sql'], e: AuditEntry): Promise<void> {
    await insertAuditIn(tx, e);
  }
}
