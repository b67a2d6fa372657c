import { NonRetryableError, RetryableError, type Handler, type JobContext } from '@aijob/worker';
import type { LlmProvider } from '../config.js';
import { buildRequest, normalise, type ChatOutput, type ChatRequest, type Message } from './llm-apis.js';
import { callFailure, isRefusal, providerFailure } from './failures.js';
import { LimitWaitTooLong, MinuteLimiter, realClock, type Clock } from './minute-limiter.js';

export interface LlmChatOptions {
  providers: LlmProvider[];
  /** For jobs that name no provider; the first configured one when unset. */
  defaultProvider?: string;
  /** Per model call, inside the job's own timeout. */
  timeoutMs: number;
  /** For tests of the rate limits. */
  clock?: Clock;
}

/**
 * Tokens a call may use, reserved against the provider's TPM before calling: about four
 * characters a token for the prompt, plus the completion allowed. Corrected afterwards
 * with the usage the provider reports.
 */
export const estimateTokens = (messages: Message[], maxTokens: number | undefined) =>
  Math.ceil(JSON.stringify(messages).length / 4) + (maxTokens ?? 0);

/**
 * `llm.chat`: one chat completion from a configured provider. Input:
 * `{ provider?, model, messages: [{role, content}], max_tokens?, ...params }`; output
 * `{ provider, model, content, finish_reason, usage, raw_id }` for either API kind.
 * The provider's per-minute limits are waited out before calling (never past the job's
 * timeout); usage is reported for cost accounting under the requested model name, the
 * one price tables and budgets know.
 */
export function llmChat(o: LlmChatOptions): Handler {
  const clock = o.clock ?? realClock;
  const limiters = new Map(o.providers.map((p) => [p.name, new MinuteLimiter(p.rpm, p.tpm, clock)]));
  return async (job, ctx) => {
    // The job's timer started just before the handler; waiting longer than it is pointless.
    const deadline = clock.now() + job.timeoutMs;
    const { provider: named, ...rest } = job.input as Record<string, unknown>;
    const name = typeof named === 'string' && named ? named : o.defaultProvider ?? o.providers[0]?.name;
    const p = o.providers.find((x) => x.name === name);
    if (!p) {
      throw new NonRetryableError('LLM_PROVIDER_NOT_CONFIGURED',
        `no LLM provider "${name ?? ''}" is configured on this worker (configured: ${o.providers.map((x) => x.name).join(', ') || 'none'})`);
    }
    const req = chatRequest(rest);
    const what = `provider ${p.name}`;

    const estimate = estimateTokens(req.messages, req.maxTokens);
    const limiter = limiters.get(p.name)!;
    const wait = limiter.waitMs(estimate);
    if (wait > 0 && clock.now() + wait < deadline) {
      ctx.log.info({ provider: p.name, wait_ms: wait }, 'waiting for the provider rate limit');
      ctx.progress(0, `waiting ${Math.ceil(wait / 1000)} s for ${what}'s rate limit`);
    }
    let slot: { settle: (actual: number) => void };
    try {
      slot = await limiter.acquire(estimate, ctx.signal, deadline);
    } catch (err) {
      if (!(err instanceof LimitWaitTooLong)) throw err;
      throw new RetryableError('PROVIDER_RATE_LIMITED',
        `${what}: this worker's rpm/tpm limit frees up in ${err.waitMs} ms, after the job's timeout`, err.waitMs);
    }
    const out = await call(p, req, ctx, o.timeoutMs, what);
    const used = out.usage.prompt_tokens + out.usage.completion_tokens;
    slot.settle(used > 0 ? used : estimate);
    ctx.reportUsage({ provider: p.name, model: req.model, promptTokens: out.usage.prompt_tokens, completionTokens: out.usage.completion_tokens });
    // Tokens were spent (and reported), but a filtered answer is no answer.
    if (isRefusal(out.finish_reason)) throw new NonRetryableError('CONTENT_POLICY', `${what} refused to answer (finish_reason ${out.finish_reason})`);
    return out;
  };
}

/** The job's input as a request, or INVALID_INPUT naming what is wrong. */
function chatRequest(input: Record<string, unknown>): ChatRequest {
  const { model, messages, max_tokens: maxTokens, ...params } = input;
  if (typeof model !== 'string' || !model) throw new NonRetryableError('INVALID_INPUT', 'input.model is required');
  if (!Array.isArray(messages) || messages.length === 0 ||
    !messages.every((m) => m && typeof m === 'object' && typeof (m as Message).role === 'string')) {
    throw new NonRetryableError('INVALID_INPUT', 'input.messages must be a non-empty list of {role, content}');
  }
  if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && (maxTokens as number) > 0)) {
    throw new NonRetryableError('INVALID_INPUT', 'input.max_tokens must be a positive whole number');
  }
  return { model, messages: messages as Message[], maxTokens: maxTokens as number | undefined, params };
}

/**
 * One HTTP call under the per-call timeout and the job's signal together: either
 * aborts the request, which closes the connection, so a cancelled job stops costing.
 */
async function call(p: LlmProvider, req: ChatRequest, ctx: JobContext, timeoutMs: number, what: string): Promise<ChatOutput> {
  const callSignal = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([ctx.signal, callSignal]);
  const { url, headers, body } = buildRequest(p, req);
  let res: Response;
  let raw: string;
  try {
    res = await fetch(url, { method: 'POST', headers, body, signal });
    raw = await res.text();
  } catch (err) {
    throw callFailure(err, ctx.signal, callSignal, 'PROVIDER', what);
  }
  if (!res.ok) throw providerFailure(res.status, raw, res.headers.get('retry-after'), what, [p.apiKey]);
  return normalise(p, raw, req.model);
}
