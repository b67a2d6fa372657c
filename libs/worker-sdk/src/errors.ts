/**
 * Thrown by a handler when retrying cannot help (bad input, refused by policy). The
 * job ends FAILED at once with `code`; any other error is retried while attempts last.
 */
export class NonRetryableError extends Error {
  constructor(readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NonRetryableError';
  }
}

/** Thrown by a handler for a failure worth retrying, with a stable code and an optional delay hint. */
export class RetryableError extends Error {
  constructor(readonly code: string, message: string, readonly retryAfterMs?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RetryableError';
  }
}

/** The recorded form of a handler failure. */
export interface JobFailure {
  code: string;
  message: string;
  retryable: boolean;
  /** The least wait before the next attempt (e.g. Retry-After). */
  retryAfterMs?: number;
}

/** Classifies what a handler threw: stable code, message without stack, retryable or not. */
export function failureOf(err: unknown): JobFailure {
  if (err instanceof NonRetryableError) return { code: err.code, message: err.message, retryable: false };
  if (err instanceof RetryableError) return { code: err.code, message: err.message, retryable: true, retryAfterMs: err.retryAfterMs };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'HANDLER_ERROR', message: message.slice(0, 4096), retryable: true };
}
