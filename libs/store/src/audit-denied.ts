import { mutatingRpcs, type AijobError } from '@aijob/core';
import { activeTraceId } from '@aijob/telemetry';
import { bearerCredential, type CallContext } from '@aijob/server';
import type { AuditWriter } from './audit-writer.js';

/**
 * The audit row of a refused call: who tried (the key's id or token's subject when the
 * credential was valid, otherwise "anonymous" and the key's visible prefix if any),
 * which RPC, and why. Shared by every service's authorizer.
 */
export function auditDenied(audit: AuditWriter) {
  return (ctx: CallContext, err: Error) => {
    let hint = '';
    try {
      const cred = bearerCredential(ctx.metadata);
      const m = /^aijob_([a-z0-9]{1,32})_/.exec(cred);
      hint = m ? ` (key_${m[1]})` : cred.includes('.') ? ' (token)' : '';
    } catch {
      // no usable credential at all
    }
    audit.record({
      actor: ctx.principal?.subject ?? `anonymous${hint}`,
      workspaceId: ctx.principal?.workspaceId ?? '',
      action: `rpc.${ctx.method.split('/')[1] ?? ctx.method}`,
      resource: ctx.method,
      outcome: 'denied',
      reason: err.message.slice(0, 512),
      traceId: activeTraceId(),
      requestId: ctx.requestId,
    });
  };
}

/**
 * The audit row of a mutating call its handler refused (a scope it may not grant, a
 * limit, a job in the wrong state, a missing resource…). NOT_FOUND is recorded only
 * with `notFound: true`: a service whose domain code audits its own NOT_FOUNDs (the job
 * service's isolation probes) leaves it off so that no call leaves two rows. A NOT_FOUND
 * row is `denied` whether the resource is missing or another workspace's, so a tenant
 * reading its own audit log learns nothing about other workspaces.
 */
export function auditRefused(audit: AuditWriter, o: { notFound?: boolean } = {}) {
  return (ctx: CallContext, err: AijobError) => {
    if (!mutatingRpcs.has(ctx.method) || !ctx.principal) return;
    if (err.kind === 'not_found' && !o.notFound) return;
    const denied = err.kind === 'permission_denied' || err.kind === 'resource_exhausted' ||
      err.kind === 'unauthenticated' || err.kind === 'not_found';
    audit.record({
      actor: ctx.principal.subject,
      workspaceId: ctx.principal.workspaceId,
      action: `rpc.${ctx.method.split('/')[1] ?? ctx.method}`,
      resource: err.subject ?? ctx.method,
      outcome: denied ? 'denied' : 'failed',
      reason: err.message.slice(0, 512),
      traceId: activeTraceId(),
      requestId: ctx.requestId,
    });
  };
}
