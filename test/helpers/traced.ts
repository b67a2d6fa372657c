// Calls carrying a trace context the test chose, so audit rows can be matched to the
// call by trace id, and raw unary calls with metadata the SDK does not send.
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type postgres from 'postgres';
import type { AijobClient } from '@aijob/sdk';
import { waitFor } from './processes.js';

/** `client`'s credential metadata plus a fresh `traceparent`; `extra` entries too. */
export async function traced(client: AijobClient, extra: Record<string, string> = {}): Promise<{ traceId: string; md: grpc.Metadata }> {
  const traceId = randomBytes(16).toString('hex');
  const md = await client.metadata();
  md.set('traceparent', `00-${traceId}-${randomBytes(8).toString('hex')}-01`);
  for (const [k, v] of Object.entries(extra)) md.set(k, v);
  return { traceId, md };
}

/** A unary call of a generated client (`method` as in the client: `pauseQueue`); rejects with the ServiceError. */
export function unary<R = unknown>(client: grpc.Client, method: string, request: unknown, md: grpc.Metadata): Promise<R> {
  const fn = (client as unknown as Record<string, (...a: unknown[]) => void>)[method];
  if (!fn) throw new Error(`no method ${method}`);
  return new Promise((resolve, reject) => fn.call(client, request, md, { deadline: Date.now() + 20_000 },
    (err: grpc.ServiceError | null, res: R) => (err ? reject(err) : resolve(res))));
}

/** The status code a call ends with (0 when it succeeds). */
export function codeOf(p: Promise<unknown>): Promise<number> {
  return p.then(() => grpc.status.OK, (e: grpc.ServiceError) => e.code);
}

export interface AuditRow {
  actor: string;
  workspace_id: string;
  action: string;
  resource: string;
  outcome: string;
  reason: string;
  trace_id: string;
}

/** The audit rows of one trace, once there are `n` of them. */
export async function auditOf(sql: postgres.Sql, traceId: string, n = 1): Promise<AuditRow[]> {
  return waitFor(async () => {
    const rows = await sql<AuditRow[]>`SELECT actor, workspace_id, action, resource, outcome, reason, trace_id
      FROM audit_log WHERE trace_id = ${traceId} ORDER BY id`;
    return rows.length >= n ? rows : undefined;
  }, 10_000, `${n} audit row(s) of trace ${traceId}`);
}
