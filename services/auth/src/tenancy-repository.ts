import type { Store, Tx } from '@aijob/store';
import type { AuditRecord } from '@aijob/store';

export interface WorkspaceRow {
  id: string;
  name: string;
  rate_limit_per_minute: number;
  max_pending: number;
  allowed_job_types: string[] | null;
  monthly_budget_usd: number | null;
  created_at: Date;
  updated_at: Date;
}

export interface ApiKeyRow {
  id: string;
  workspace_id: string;
  name: string;
  scopes: string[];
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

export interface PolicyChange {
  rateLimitPerMinute?: number;
  maxPending?: number;
  /** null restores the platform default. */
  allowedJobTypes?: string[] | null;
  monthlyBudgetUsd?: number | null;
}

const wsColumns = 'id, name, rate_limit_per_minute, max_pending, allowed_job_types, monthly_budget_usd, created_at, updated_at';
const keyColumns = 'id, workspace_id, name, scopes, created_at, expires_at, revoked_at, last_used_at';

/** Queries of the tables the auth service owns; every change writes its audit row in the same transaction. */
export class TenancyRepository {
  constructor(private readonly store: Store) {}

  async workspace(id: string): Promise<WorkspaceRow | undefined> {
    const [row] = await this.store.sql.unsafe<WorkspaceRow[]>(`SELECT ${wsColumns} FROM workspaces WHERE id = $1`, [id]);
    return row;
  }

  async workspaces(afterId: string, limit: number): Promise<WorkspaceRow[]> {
    return this.store.sql.unsafe<WorkspaceRow[]>(
      `SELECT ${wsColumns} FROM workspaces WHERE id > $1 ORDER BY id LIMIT $2`, [afterId, limit]);
  }

  /** Inserts a workspace; undefined when the name is taken. */
  async createWorkspace(row: Omit<WorkspaceRow, 'created_at' | 'updated_at'>, audit: AuditRecord): Promise<WorkspaceRow | undefined> {
    return this.store.sql.begin(async (tx) => {
      const [created] = await tx.unsafe<WorkspaceRow[]>(
        `INSERT INTO workspaces (id, name, rate_limit_per_minute, max_pending, allowed_job_types, monthly_budget_usd)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING ${wsColumns}`,
        [row.id, row.name, row.rate_limit_per_minute, row.max_pending, row.allowed_job_types as never, row.monthly_budget_usd]);
      if (created) await insertAudit(tx, { ...audit, resource: `workspace/${created.id}` });
      return created;
    });
  }

  async updatePolicy(id: string, c: PolicyChange, audit: AuditRecord): Promise<WorkspaceRow | undefined> {
    return this.store.sql.begin(async (tx) => {
      const [row] = await tx.unsafe<WorkspaceRow[]>(
        `UPDATE workspaces SET
           rate_limit_per_minute = COALESCE($2, rate_limit_per_minute),
           max_pending = COALESCE($3, max_pending),
           allowed_job_types = CASE WHEN $4::boolean THEN $5::text[] ELSE allowed_job_types END,
           monthly_budget_usd = CASE WHEN $6::boolean THEN $7::double precision ELSE monthly_budget_usd END,
           updated_at = now()
         WHERE id = $1 RETURNING ${wsColumns}`,
        [id, c.rateLimitPerMinute ?? null, c.maxPending ?? null, c.allowedJobTypes !== undefined,
          (c.allowedJobTypes ?? null) as never, c.monthlyBudgetUsd !== undefined, c.monthlyBudgetUsd ?? null]);
      if (row) await insertAudit(tx, audit);
      return row;
    });
  }

  async createKey(k: { id: string; workspaceId: string; name: string; hash: string; scopes: string[]; expiresAt: Date | null },
    audit: AuditRecord): Promise<ApiKeyRow> {
    return this.store.sql.begin(async (tx) => {
      const [row] = await tx.unsafe<ApiKeyRow[]>(
        `INSERT INTO api_keys (id, workspace_id, name, secret_hash, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${keyColumns}`,
        [k.id, k.workspaceId, k.name, k.hash, k.scopes as never, k.expiresAt]);
      await insertAudit(tx, audit);
      return row!;
    });
  }

  async keys(workspaceId: string, includeRevoked: boolean): Promise<ApiKeyRow[]> {
    return this.store.sql.unsafe<ApiKeyRow[]>(
      `SELECT ${keyColumns} FROM api_keys WHERE workspace_id = $1 AND ($2 OR revoked_at IS NULL) ORDER BY created_at, id`,
      [workspaceId, includeRevoked]);
  }

  async key(id: string): Promise<ApiKeyRow | undefined> {
    const [row] = await this.store.sql.unsafe<ApiKeyRow[]>(`SELECT ${keyColumns} FROM api_keys WHERE id = $1`, [id]);
    return row;
  }

  async revokeKey(id: string, audit: AuditRecord): Promise<ApiKeyRow | undefined> {
    return this.store.sql.begin(async (tx) => {
      const [row] = await tx.unsafe<ApiKeyRow[]>(
        `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING ${keyColumns}`, [id]);
      if (row) await insertAudit(tx, audit);
      return row;
    });
  }

  /** Writes an audit row inside another change's transaction. */
  async auditIn(tx: Tx, r: AuditRecord): Promise<void> {
    await insertAudit(tx, r);
  }
}

async function insertAudit(sql: Tx | Store['sql'], r: AuditRecord): Promise<void> {
  await sql`INSERT INTO audit_log (actor, workspace_id, action, resource, outcome, reason, trace_id, request_id)
    VALUES (${r.actor}, ${r.workspaceId}, ${r.action}, ${r.resource}, ${r.outcome}, ${r.reason ?? ''},
            ${r.traceId ?? ''}, ${r.requestId ?? ''})`;
}
