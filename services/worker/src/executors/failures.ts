import { NonRetryableError, RetryableError } from '@aijob/worker';

/**
 * The failure taxonomy shared by llm.chat and http.request. Codes are stable (they land
 * in JobError.code, dead-letter filters and alerts): `<PREFIX>_TIMEOUT` and
 * NETWORK_ERROR, 429 and 5xx are retryable; other 4xx are not; neither are a model's
 * context-length or content-policy refusals, whatever status they come with.
 */
export type Prefix = 'PROVIDER' | 'HTTP';

/** Retry-After, in seconds or as an HTTP date, as milliseconds from `now` (capped at an hour). */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header?.trim()) return undefined;
  const secs = Number(header);
  if (Number.isFinite(secs)) return Math.min(3_600_000, Math.max(0, Math.round(secs * 1000)));
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.min(3_600_000, Math.max(0, at - now));
}

/** Trims text for the job record, where it outlives the call (dead letters, logs). */
export function brief(text: string, max = 500): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** Masks secrets a server may echo back (some proxies quote the Authorization header). */
export function redact(text: string, secrets: (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  return out;
}

// Matched against the provider's error code and message: OpenAI `context_length_exceeded`,
// vLLM/OpenAI "maximum context length", Anthropic "prompt is too long", llama.cpp
// "context size", LiteLLM ContextWindowExceededError, Ollama "context length".
const CONTEXT = /context[_ -]?(length|window|size)|maximum context|prompt is too long|too many tokens/i;
// OpenAI `content_policy_violation`, Azure `content_filter` / ResponsibleAIPolicyViolation,
// Anthropic "blocked by content filtering policy", safety-system refusals.
const POLICY = /content[_ -]?(policy|filter|management)|responsible ?ai|safety (system|polic)/i;

/**
 * The useful part of an error response: OpenAI-compatible and Anthropic servers send
 * `{error: {message, code, type}}`, some `{detail}` or `{message}`; anything else is text.
 */
export function errorDetail(body: string): { message: string; code: string } {
  try {
    const doc = JSON.parse(body) as Record<string, unknown>;
    const e = (typeof doc['error'] === 'object' && doc['error'] ? doc['error'] : doc) as Record<string, unknown>;
    const message = [e['message'], doc['detail'], typeof doc['error'] === 'string' ? doc['error'] : undefined]
      .find((m) => typeof m === 'string' && m) as string | undefined;
    const code = [e['code'], e['type'], (e['innererror'] as { code?: unknown } | undefined)?.code]
      .filter((c) => typeof c === 'string').join(' ');
    return { message: message ?? (code ? '' : body), code };
  } catch {
    return { message: body, code: '' };
  }
}

/** A non-2xx status as the job error, by status alone. */
export function statusFailure(status: number, message: string, retryAfter: string | null, prefix: Prefix): Error {
  // 408: the server gave up waiting for us, like our own timeout.
  if (status === 408) return new RetryableError(`${prefix}_TIMEOUT`, message, retryAfterMs(retryAfter));
  if (status === 429) return new RetryableError(prefix === 'PROVIDER' ? 'PROVIDER_RATE_LIMITED' : 'HTTP_429', message, retryAfterMs(retryAfter));
  if (status >= 500) return new RetryableError(prefix === 'PROVIDER' ? 'PROVIDER_ERROR' : 'HTTP_5XX', message, retryAfterMs(retryAfter));
  if (prefix === 'HTTP') return new NonRetryableError('HTTP_4XX', message);
  const code = status === 401 || status === 403 ? 'PROVIDER_AUTH'
    : status === 404 ? 'PROVIDER_NOT_FOUND'
      : status === 422 ? 'PROVIDER_UNPROCESSABLE' : 'PROVIDER_BAD_REQUEST';
  return new NonRetryableError(code, message);
}

/** A model provider's error answer; `secrets` (its key) never reach the message. */
export function providerFailure(status: number, body: string, retryAfter: string | null, what: string, secrets: (string | undefined)[] = []): Error {
  const d = errorDetail(body);
  const detail = brief(redact([d.code, d.message].filter(Boolean).join(': '), secrets));
  const message = `${what} answered ${status}${detail ? `: ${detail}` : ''}`;
  // A 429 or 5xx that mentions tokens is load, not the prompt: keep it retryable.
  if (status !== 429 && status < 500) {
    const said = `${d.code} ${d.message}`;
    if (CONTEXT.test(said)) return new NonRetryableError('CONTEXT_LENGTH_EXCEEDED', message);
    if (POLICY.test(said)) return new NonRetryableError('CONTENT_POLICY', message);
  }
  return statusFailure(status, message, retryAfter, 'PROVIDER');
}

/** A webhook's error answer (its body, briefly, for whoever reads the dead letter). */
export function httpFailure(status: number, body: string, retryAfter: string | null, what: string): Error {
  const detail = brief(body);
  return statusFailure(status, `${what} answered ${status}${detail ? `: ${detail}` : ''}`, retryAfter, 'HTTP');
}

/** A model's refusal in a 200 answer (finish_reason content_filter / stop_reason refusal). */
export function isRefusal(finishReason: string): boolean {
  return finishReason === 'content_filter' || finishReason === 'refusal';
}

/**
 * A failure of the call itself. The job's own abort (cancel, job timeout, shutdown)
 * passes through untouched so the runtime records CANCELLED or TIMEOUT, or hands the attempt back;
 * our per-call timeout is a retryable <PREFIX>_TIMEOUT; anything else on the wire
 * (refused, reset, DNS) is a retryable NETWORK_ERROR.
 */
export function callFailure(err: unknown, jobSignal: AbortSignal, callSignal: AbortSignal, prefix: Prefix, what: string): unknown {
  if (jobSignal.aborted) return jobSignal.reason;
  if (callSignal.aborted) return new RetryableError(`${prefix}_TIMEOUT`, `${what} did not answer in time`);
  if (err instanceof RetryableError || err instanceof NonRetryableError) return err;
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } } | undefined;
  const why = e?.cause?.code ?? e?.code ?? e?.cause?.message ?? e?.message ?? String(err);
  return new RetryableError('NETWORK_ERROR', `${what}: ${brief(why, 200)}`);
}
