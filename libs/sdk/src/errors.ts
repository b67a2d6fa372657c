import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { BadRequest, ErrorInfo, RetryInfo, RpcStatus } from '@aijob/contracts';

export interface FieldViolation {
  field: string;
  description: string;
}

/** Base of every error the SDK throws for a failed call; `code` is the gRPC status. */
export class AijobApiError extends Error {
  readonly code: status;
  readonly details: string;
  /** Fields at fault (INVALID_ARGUMENT). */
  readonly fieldViolations: FieldViolation[];
  /** How long the server asks to wait before retrying (RESOURCE_EXHAUSTED), in ms. */
  readonly retryDelayMs: number | undefined;
  /** Machine-readable reason, when the server gave one (e.g. RATE_LIMITED). */
  readonly reason: string | undefined;
  readonly metadata: Metadata;

  constructor(err: ServiceError, options?: ErrorOptions) {
    super(`${status[err.code] ?? err.code}: ${err.details}`, options);
    this.name = new.target.name;
    this.code = err.code;
    this.details = err.details;
    this.metadata = err.metadata ?? new Metadata();
    const parsed = parseDetails(this.metadata);
    this.fieldViolations = parsed.fieldViolations;
    this.retryDelayMs = parsed.retryDelayMs;
    this.reason = parsed.reason;
  }
}

/** INVALID_ARGUMENT: see `fieldViolations`. */
export class InvalidArgumentError extends AijobApiError {}
/** UNAUTHENTICATED: missing, invalid, expired or revoked credential. */
export class UnauthenticatedError extends AijobApiError {}
/** PERMISSION_DENIED: the credential lacks the scope the call needs. */
export class PermissionDeniedError extends AijobApiError {}
/** NOT_FOUND: no such resource in your workspace. */
export class NotFoundError extends AijobApiError {}
/** ALREADY_EXISTS. */
export class AlreadyExistsError extends AijobApiError {}
/** FAILED_PRECONDITION: the resource is not in a state that allows the call. */
export class FailedPreconditionError extends AijobApiError {}
/** RESOURCE_EXHAUSTED: rate limit, quota or backpressure; see `retryDelayMs`. */
export class ResourceExhaustedError extends AijobApiError {}
/** UNAVAILABLE: the service or one of its dependencies is down; safe calls are retried. */
export class UnavailableError extends AijobApiError {}
/** DEADLINE_EXCEEDED: the call ran past its deadline. */
export class DeadlineExceededError extends AijobApiError {}
/** CANCELLED: the call was aborted (by your AbortSignal, for instance). */
export class CancelledError extends AijobApiError {}
/** INTERNAL and anything else unexpected. */
export class InternalError extends AijobApiError {}

const classes: Partial<Record<status, typeof AijobApiError>> = {
  [status.INVALID_ARGUMENT]: InvalidArgumentError,
  [status.UNAUTHENTICATED]: UnauthenticatedError,
  [status.PERMISSION_DENIED]: PermissionDeniedError,
  [status.NOT_FOUND]: NotFoundError,
  [status.ALREADY_EXISTS]: AlreadyExistsError,
  [status.FAILED_PRECONDITION]: FailedPreconditionError,
  [status.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [status.UNAVAILABLE]: UnavailableError,
  [status.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [status.CANCELLED]: CancelledError,
};

/** The typed error for a gRPC failure (an AijobApiError is returned as is). */
export function toApiError(err: ServiceError | AijobApiError): AijobApiError {
  if (err instanceof AijobApiError) return err;
  const Cls = classes[err.code] ?? InternalError;
  return new Cls(err, { cause: err });
}

/**
 * What a call or watch throws when its AbortSignal fires: DeadlineExceededError for a
 * timeout signal (`AbortSignal.timeout`), CancelledError otherwise; `cause` is the
 * signal's reason.
 */
export function abortError(signal: AbortSignal): AijobApiError {
  const reason: unknown = signal.reason;
  const timeout = reason instanceof Error && reason.name === 'TimeoutError';
  const code = timeout ? status.DEADLINE_EXCEEDED : status.CANCELLED;
  const details = timeout ? 'the signal timed out' : 'aborted by the caller';
  const err = Object.assign(new Error(details), { code, details, metadata: new Metadata() }) as ServiceError;
  return new (timeout ? DeadlineExceededError : CancelledError)(err, { cause: reason });
}

function parseDetails(md: Metadata): { fieldViolations: FieldViolation[]; retryDelayMs?: number; reason?: string } {
  const out: { fieldViolations: FieldViolation[]; retryDelayMs?: number; reason?: string } = { fieldViolations: [] };
  const raw = md.get('grpc-status-details-bin')[0];
  if (raw && typeof raw !== 'string') {
    try {
      for (const any of RpcStatus.decode(raw).details) {
        if (any.typeUrl.endsWith('google.rpc.BadRequest')) out.fieldViolations.push(...BadRequest.decode(any.value).fieldViolations);
        if (any.typeUrl.endsWith('google.rpc.RetryInfo')) {
          const d = RetryInfo.decode(any.value).retryDelay;
          if (d) out.retryDelayMs = d.seconds * 1000 + Math.trunc(d.nanos / 1e6);
        }
        if (any.typeUrl.endsWith('google.rpc.ErrorInfo')) out.reason = ErrorInfo.decode(any.value).reason;
      }
    } catch {
      // Undecodable details: keep the status itself.
    }
  }
  return out;
}
