import { NonRetryableError, RetryableError } from '@aijob/worker';

/** Seconds or an HTTP date in Retry-After, as milliseconds from now (capped at an hour). */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const secs = Number(header);
  if (Number.isFinite(secs)) return Math.min(3_600_000, Math.max(0, Math.round(secs * 1000)));
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.min(3_600_000, Math.max(0, at - now));
}

const CONTEXT = /context[_ ]length|maximum context|context window|prompt is too long|too many tokens|max_tokens.*exceed/i;
const POLICY = /content[_ ]policy|content[_ ]filter|safety system|flagged|violat(es|ing) .*polic/i;

/** Trims a provider's error text for the job record (never request bodies or keys). */
export function brief(text: string, max = 500): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/**
 * The failure taxonomy shared by the executors: 429 and 5xx are worth retrying (429
 * honouring Retry-After); 400, 401, 403, 404 and 422 are not, and neither are
 * context-length or content-policy refusals, whatever status they come with.
 */
export function httpFailure(
  status: number, body: string, retryAfter: string | null, codes: { prefix: 'PROVIDER' | 'HTTP'; what: string },
): Error {
  const detail = brief(body);
  const msg = `${codes.what} answered ${status}${detail ? `: ${detail}` : ''}`;
  if (codes.prefix === 'PROVIDER') {
    if (CONTEXT.test(body)) return new NonRetryableError('CONTEXT_LENGTH_EXCEEDED', msg);
    if (POLICY.test(body)) return new NonRetryableError('CONTENT_POLICY', msg);
  }
  if (status === 429) {
    return new RetryableError(codes.prefix === 'PROVIDER' ? 'PROVIDER_RATE_LIMITED' : 'HTTP_429', msg, retryAfterMs(retryAfter));
  }
  if (status >= 500) return new RetryableError(codes.prefix === 'PROVIDER' ? 'PROVIDER_ERROR' : 'HTTP_5XX', msg, retryAfterMs(retryAfter));
  if (codes.prefix === 'HTTP') return new NonRetryableError('HTTP_4XX', msg);
  const code = status === 401 || status === 403 ? 'PROVIDER_AUTH'
    : status === 404 ? 'PROVIDER_NOT_FOUND'
      : status === 422 ? 'PROVIDER_UNPROCESSABLE' : 'PROVIDER_BAD_REQUEST';
  return new NonRetryableError(code, msg);
}

/**
 * A failure of the call itself: the job's own signal (cancel, job timeout, shutdown)
 * passes through untouched so the runtime records it as such; our per-call timeout is
 * a retryable *_TIMEOUT; anything else on the wire is a retryable NETWORK_ERROR.
 */
export function callFailure(err: unknown, jobSignal: AbortSignal, callSignal: AbortSignal, prefix: 'PROVIDER' | 'HTTP', what: string): unknown {
  if (jobSignal.aborted) return jobSignal.reason;
  if (callSignal.aborted) return new RetryableError(`${prefix}_TIMEOUT`, `${what} did not answer in time`);
  if (err instanceof RetryableError || err instanceof NonRetryableError) return err;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return new RetryableError('NETWORK_ERROR', `${what}: ${brief(cause?.code ?? cause?.message ?? (err as Error).message ?? String(err), 200)}`);
}
