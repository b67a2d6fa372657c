import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { Any, BadRequest, ErrorInfo, RetryInfo, RpcStatus, msToDuration } from '@aijob/contracts';
import { isAijobError, type AijobError, type ErrorKind } from './errors.js';

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

function details(err: AijobError): Any[] {
  const out: Any[] = [];
  if (err.kind === 'invalid_argument' && 'violations' in err) {
    const violations = err.violations as { field: string; description: string }[];
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
    return { code: status.INTERNAL, details: 'internal error', metadata: new Metadata() };
  }
  const code = codes[err.kind];
  const metadata = new Metadata();
  const extra = details(err);
  if (extra.length > 0) {
    const encoded = RpcStatus.encode({ code, message: err.message, details: extra }).finish();
    metadata.set('grpc-status-details-bin', Buffer.from(encoded));
  }
  if (err.kind === 'resource_exhausted' && 'retryAfterMs' in err) {
    metadata.set('retry-after-ms', String(err.retryAfterMs));
  }
  return { code, details: err.message, metadata };
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
