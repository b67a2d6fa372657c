// Domain errors. Code throws these; one place (grpc-status.ts) turns them into gRPC
// statuses. Anything else that escapes a handler becomes a logged, generic INTERNAL.

export interface FieldViolation {
  /** Path of the field at fault, e.g. `type`, `jobs[3].timeout`. */
  field: string;
  description: string;
}

/** Base of every error aijob raises on purpose. */
export abstract class AijobError extends Error {
  abstract readonly kind: ErrorKind;
  /** What the refused call was about (e.g. `job/<id>`), for the audit log. */
  subject?: string;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }

  /** Names the resource the error is about; returns the error (for `throw x.about(...)`). */
  about(subject: string): this {
    this.subject = subject;
    return this;
  }
}

export type ErrorKind =
  | 'invalid_argument'
  | 'unauthenticated'
  | 'permission_denied'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'unavailable'
  | 'deadline_exceeded'
  | 'aborted';

/** Thrown when a request has malformed fields; lists every field at fault. */
export class InvalidArgumentError extends AijobError {
  readonly kind = 'invalid_argument';
  constructor(readonly violations: FieldViolation[]) {
    super(violations.map((v) => `${v.field}: ${v.description}`).join('; ') || 'invalid request');
  }
  static field(field: string, description: string): InvalidArgumentError {
    return new InvalidArgumentError([{ field, description }]);
  }
}

/** Thrown when a call carries no credential or one that is not valid. */
export class UnauthenticatedError extends AijobError {
  readonly kind = 'unauthenticated';
}

/** Thrown when the caller is known but lacks the scope the call needs. */
export class PermissionDeniedError extends AijobError {
  readonly kind = 'permission_denied';
}

/** Thrown when a resource does not exist or belongs to another workspace. */
export class NotFoundError extends AijobError {
  readonly kind = 'not_found';
  constructor(readonly resource: string, readonly id: string) {
    super(`${resource} ${id} not found`);
  }
}

/** Thrown when creating something that already exists. */
export class AlreadyExistsError extends AijobError {
  readonly kind = 'already_exists';
}

/** Thrown when the resource is not in a state that allows the operation. */
export class FailedPreconditionError extends AijobError {
  readonly kind = 'failed_precondition';
}

/** Thrown when a limit is hit; `retryAfterMs` tells the client when to try again. */
export class ResourceExhaustedError extends AijobError {
  readonly kind = 'resource_exhausted';
  constructor(message: string, readonly retryAfterMs: number, readonly reason = 'RATE_LIMITED') {
    super(message);
  }
}

/** Thrown when a dependency (Postgres, NATS, another service) cannot be reached. */
export class UnavailableError extends AijobError {
  readonly kind = 'unavailable';
}

/** Thrown when an operation ran past its deadline. */
export class DeadlineExceededError extends AijobError {
  readonly kind = 'deadline_exceeded';
}

export function isAijobError(err: unknown): err is AijobError {
  return err instanceof AijobError;
}
