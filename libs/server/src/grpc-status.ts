import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { Any, BadRequest, ErrorInfo, RetryInfo, RpcStatus, msToDuration } from '@aijob/contracts';
import { isAijobError, type AijobError, type ErrorKind } from '@aijob/core';

const codes: Record<ErrorKind, status> = {
  invalid_argument: status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  permission_denied: status.PERMISSION_DENIED,
  not_found: status.NOT_FOUND,
  already_exists: status.ALREADY_EXISTS,
  failed_precondition: status.FAILED_PRECONDITION,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  deadline_exceeded: status.DEADLINE_EXCEEDED,
  aborted: status.ABORTED,
};

const typeUrl = (name: string) => `type.googleapis.com/${name}`;

/**
 * Status texts travel in HTTP/2 trailers, which clients cap (grpc-js: 8 KiB of metadata)
 * and drop whole when exceeded, so a message echoing a huge input must be clipped.
 */
const MAX_TEXT = 512;
const clip = (s: string) => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}… (${s.length} characters)` : s);
const MAX_VIOLATIONS = 20;

function details(err: AijobError): Any[] {
  const out: Any[] = [];
  if (err.kind === 'invalid_argument' && 'violations' in err) {
    const violations = (err.violations as { field: string; description: string }[])
      .slice(0, MAX_VIOLATIONS).map((v) => ({ field: clip(v.field), description: clip(v.description) }));
    out.push({
      typeUrl: typeUrl('google.rpc.BadRequest'),
      value: Buffer.from(BadRequest.encode({ fieldViolations: violations }).finish()),
    });
  }
  if (err.kind === 'resource_exhausted' && 'retryAfterMs' in err) {
    out.push({
      typeUrl: typeUrl('google.rpc.RetryInfo'),
      value: Buffer.from(RetryInfo.encode({ retryDelay: msToDuration(err.retryAfterMs as number) }).finish()),
    });
    out.push({
      typeUrl: typeUrl('google.rpc.ErrorInfo'),
      value: Buffer.from(ErrorInfo.encode({ reason: String((err as { reason?: string }).reason ?? ''), domain: 'aijob.dev', metadata: {} }).finish()),
    });
  }
  return out;
}

/**
 * The gRPC status for anything a handler threw. Domain errors keep their message and
 * carry google.rpc details (BadRequest, RetryInfo) in `grpc-status-details-bin`; any
 * other error becomes a generic INTERNAL whose text reveals nothing.
 */
export function toStatus(err: unknown): Partial<StatusObject> & { code: status; details: string } {
  if (!isAijobError(err)) {
    if (isDependencyDown(err)) {
      const metadata = new Metadata();
      metadata.set('retry-after-ms', '1000');
      return { code: status.UNAVAILABLE, details: 'a dependency is unavailable; retry shortly', metadata };
    }
    return { code: status.INTERNAL, details: 'internal error', metadata: new Metadata() };
  }
  const code = codes[err.kind];
  const metadata = new Metadata();
  const extra = details(err);
  if (extra.length > 0) {
    const encoded = RpcStatus.encode({ code, message: clip(err.message), details: extra }).finish();
    metadata.set('grpc-status-details-bin', Buffer.from(encoded));
  }
  if (err.kind === 'resource_exhausted' && 'retryAfterMs' in err) {
    metadata.set('retry-after-ms', String(err.retryAfterMs));
  }
  return { code, details: clip(err.message), metadata };
}

/** Decodes the google.rpc details a status carries (client side and tests). */
export function decodeStatusDetails(metadata: Metadata | undefined): {
  fieldViolations: { field: string; description: string }[];
  retryDelayMs?: number;
  reason?: string;
} {
  const raw = metadata?.get('grpc-status-details-bin')[0];
  const result: ReturnType<typeof decodeStatusDetails> = { fieldViolations: [] };
  if (!raw || typeof raw === 'string') return result;
  for (const any of RpcStatus.decode(raw).details) {
    if (any.typeUrl.endsWith('/google.rpc.BadRequest')) {
      result.fieldViolations.push(...BadRequest.decode(any.value).fieldViolations);
    } else if (any.typeUrl.endsWith('/google.rpc.RetryInfo')) {
      const d = RetryInfo.decode(any.value).retryDelay;
      if (d) result.retryDelayMs = d.seconds * 1000 + Math.trunc(d.nanos / 1e6);
    } else if (any.typeUrl.endsWith('/google.rpc.ErrorInfo')) {
      result.reason = ErrorInfo.decode(any.value).reason;
    }
  }
  return result;
}

const downCodes = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  // postgres.js
  'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT',
  // Postgres: admin shutdown, crash shutdown, cannot connect now, too many connections
  '57P01', '57P02', '57P03', '53300',
]);

/**
 * Whether an unexpected error means Postgres or NATS is unreachable (answered as
 * UNAVAILABLE, which clients retry) rather than a bug (INTERNAL).
 */
export function isDependencyDown(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; name?: string; message?: string; cause?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (downCodes.has(code) || code.startsWith('08')) return true;
  // nats.js: closed or draining connection, request timeouts, no JetStream responders
  if (/^(ClosedConnectionError|ConnectionError|TimeoutError|NoRespondersError|DrainingConnectionError)$/.test(e.name ?? '')) return true;
  if (/connection (closed|draining)|no responders|timeout/i.test(e.message ?? '') && /nats|jetstream|TIMEOUT|closed/i.test(`${e.name} ${e.message}`)) return true;
  return e.cause !== undefined && e.cause !== err ? isDependencyDown(e.cause) : false;
}
