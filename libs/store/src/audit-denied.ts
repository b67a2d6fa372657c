import { activeTraceId, bearerCredential, type CallContext } from '@aijob/platform';
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
