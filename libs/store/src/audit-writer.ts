import { Batcher, errorMessage, type Logger } from '@aijob/core';
import type { Sql } from './client.js';
import type { AuditRecord } from './repositories/audit-log.js';

/**
 * Writes audit rows outside request transactions (refused calls, auth changes), many
 * to a statement. `write` resolves once the row is stored; `record` does not wait.
 */
export class AuditWriter {
  private readonly batcher: Batcher<AuditRecord, void>;

  constructor(private readonly sql: Sql, private readonly log: Logger) {
    this.batcher = new Batcher((rows) => this.flush(rows), { maxBatch: 500, concurrency: 2 });
  }

  write(r: AuditRecord): Promise<void> {
    return this.batcher.add(r);
  }

  /** Fire and forget; a failure is logged, never thrown at the caller. */
  record(r: AuditRecord): void {
    this.write(r).catch((err: unknown) => this.log.error({ err: errorMessage(err), action: r.action }, 'audit row not written'));
  }

  async close(): Promise<void> {
    await this.batcher.idle();
  }

  private async flush(rows: AuditRecord[]): Promise<void[]> {
    const doc = rows.map((r) => ({
      at: r.at ?? new Date(), actor: r.actor.slice(0, 256), workspace_id: r.workspaceId.slice(0, 128),
      action: r.action.slice(0, 128), resource: r.resource.slice(0, 512), outcome: r.outcome,
      reason: (r.reason ?? '').slice(0, 1024), trace_id: r.traceId ?? '', request_id: r.requestId ?? '',
    }));
    await this.sql`
      INSERT INTO audit_log (at, actor, workspace_id, action, resource, outcome, reason, trace_id, request_id)
      SELECT at, actor, workspace_id, action, resource, outcome, reason, trace_id, request_id
      FROM json_to_recordset(${JSON.stringify(doc)}::text::json) AS r(at timestamptz, actor text,
        workspace_id text, action text, resource text, outcome text, reason text, trace_id text, request_id text)`;
    return rows.map(() => undefined);
  }
}
