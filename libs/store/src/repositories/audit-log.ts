import { and, asc, desc, eq, gt, gte, inArray, lt } from 'drizzle-orm';
import type { Db, DbOrTx, DbTx, Queryable } from '../client.js';
import { auditLog, type AuditLogRow, type AuditOutcome, type NewAuditLogRow } from '../schema/index.js';

/** One audit row to write: who did what to which resource, and how it ended. */
export type AuditRecord = Omit<NewAuditLogRow, 'id'>;

/** A page of a workspace's audit trail, newest first; empty filters match everything. */
export interface AuditLogQuery {
  workspaceId: string;
  action?: string;
  outcome?: string;
  actor?: string;
  resource?: string;
  startTime?: Date;
  endTime?: Date;
  /** Exclusive upper bound of ids (paging newest first). */
  beforeId?: number;
  limit: number;
}

/** Writes an audit row inside a drizzle transaction (or on its own). */
export async function insertAudit(q: DbOrTx, r: AuditRecord): Promise<void> {
  await q
    .insert(auditLog)
    .values({ ...r, reason: r.reason ?? '', traceId: r.traceId ?? '', requestId: r.requestId ?? '' });
}

/** Writes an audit row inside a postgres.js transaction (the job record's own transactions). */
export async function insertAuditIn(q: Queryable, r: AuditRecord): Promise<void> {
  await q`INSERT INTO audit_log (actor, workspace_id, action, resource, outcome, reason, trace_id, request_id)
    VALUES (${r.actor}, ${r.workspaceId}, ${r.action}, ${r.resource}, ${r.outcome}, ${r.reason ?? ''},
            ${r.traceId ?? ''}, ${r.requestId ?? ''})`;
}

/**
 * Runs `change` in a transaction and, when it returns a row, writes `audit` in the same
 * transaction: a change and its audit row are stored together or not at all.
 */
export function audited<T>(
  db: Db,
  audit: AuditRecord,
  change: (tx: DbTx) => Promise<T | undefined>,
): Promise<T | undefined> {
  return db.transaction(async (tx) => {
    const row = await change(tx);
    if (row !== undefined) await insertAudit(tx, audit);
    return row;
  });
}

/** A workspace's audit rows matching `q`, newest first. */
export function listAuditLog(db: DbOrTx, q: AuditLogQuery): Promise<AuditLogRow[]> {
  const a = auditLog;
  return db
    .select()
    .from(a)
    .where(
      and(
        eq(a.workspaceId, q.workspaceId),
        q.action ? eq(a.action, q.action) : undefined,
        q.outcome ? eq(a.outcome, q.outcome as AuditOutcome) : undefined,
        q.actor ? eq(a.actor, q.actor) : undefined,
        q.resource ? eq(a.resource, q.resource) : undefined,
        q.startTime ? gte(a.at, q.startTime) : undefined,
        q.endTime ? lt(a.at, q.endTime) : undefined,
        q.beforeId !== undefined ? lt(a.id, q.beforeId) : undefined,
      ),
    )
    .orderBy(desc(a.id))
    .limit(q.limit);
}

/** Up to `limit` rows older than `cutoff` with ids above `afterId`, oldest id first (the archive's chunks). */
export function auditLogBefore(db: DbOrTx, cutoff: Date, afterId: number, limit: number): Promise<AuditLogRow[]> {
  return db
    .select()
    .from(auditLog)
    .where(and(lt(auditLog.at, cutoff), gt(auditLog.id, afterId)))
    .orderBy(asc(auditLog.id))
    .limit(limit);
}

/** Deletes the rows `ids` that are still older than `cutoff`; returns how many went. */
export async function deleteAuditLog(db: DbOrTx, ids: number[], cutoff: Date): Promise<number> {
  if (ids.length === 0) return 0;
  const res = await db.delete(auditLog).where(and(inArray(auditLog.id, ids), lt(auditLog.at, cutoff)));
  return res.count;
}
