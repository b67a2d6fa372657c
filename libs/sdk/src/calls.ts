import * as grpc from '@grpc/grpc-js';
import { abortError, toApiError, UnauthenticatedError, UnavailableError } from './errors.js';
import type { Credentials } from './credentials.js';

/** Per-call options. */
export interface CallOptions {
  /** Deadline of the whole call, retries included, in ms. Default: the client's `deadlineMs`. */
  deadlineMs?: number;
  /** Aborting ends the call (or its retry wait) at once with CancelledError (DeadlineExceededError for `AbortSignal.timeout`). */
  signal?: AbortSignal;
}

/** Starts one unary call; grpc-js's callback style. */
export type Invoke<R> = (md: grpc.Metadata, co: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: R) => void) => grpc.ClientUnaryCall;

/** Runs a unary call with the client's credentials, deadline, retries and abort handling. */
export type Unary = <R>(invoke: Invoke<R>, opts: CallOptions | undefined, safeToRetry: boolean) => Promise<R>;

/** Full-jitter exponential backoff before attempt `attempt + 1`: up to 100 ms * 2^attempt, at most 2 s. */
export function backoffMs(attempt: number): number {
  return Math.min(2_000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);
}

/** Waits `ms`, or rejects with the abort error as soon as `signal` fires. */
export function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => { clearTimeout(timer); reject(abortError(signal!)); };
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Whether `err` is a gRPC status (or already a typed error), not a bug or a system error. */
export function isServiceError(err: unknown): err is grpc.ServiceError {
  return typeof (err as { code?: unknown } | null)?.code === 'number';
}

/** Metadata carrying a credential. */
export function bearer(credential: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${credential}`);
  return md;
}

/** One attempt; the abort listener lives only as long as the attempt. */
function attempt<R>(invoke: Invoke<R>, md: grpc.Metadata, deadline: number, signal: AbortSignal | undefined): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => call.cancel();
    const call = invoke(md, { deadline }, (err, res) => {
      signal?.removeEventListener('abort', onAbort);
      if (!err) return resolve(res);
      reject(signal?.aborted ? abortError(signal) : toApiError(err));
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The retry loop behind every unary call. UNAVAILABLE is retried with backoff only when
 * `safeToRetry` (reads, and writes that are idempotent) and while the deadline allows;
 * an UNAUTHENTICATED answer to an exchanged JWT fetches a fresh one and tries once more
 * (the server refused before doing anything, so this is safe for every call).
 */
export async function runUnary<R>(
  creds: Credentials, maxAttempts: number, defaultDeadlineMs: number,
  invoke: Invoke<R>, opts: CallOptions | undefined, safeToRetry: boolean,
): Promise<R> {
  const signal = opts?.signal;
  const deadline = Date.now() + (opts?.deadlineMs ?? defaultDeadlineMs);
  const attempts = safeToRetry ? maxAttempts : 1;
  let refreshed = false;
  for (let n = 1; ; n++) {
    let credential: string | undefined;
    try {
      if (signal?.aborted) throw abortError(signal);
      credential = await creds.current();
      return await attempt(invoke, bearer(credential), deadline, signal);
    } catch (err) {
      if (!isServiceError(err)) throw err;
      const e = toApiError(err);
      if (e instanceof UnauthenticatedError && !refreshed && credential !== undefined && creds.invalidate(credential)) {
        refreshed = true;
        n--;
        continue;
      }
      const wait = backoffMs(n);
      if (!(e instanceof UnavailableError) || n >= attempts || Date.now() + wait >= deadline) throw e;
      await pause(wait, signal);
    }
  }
}
