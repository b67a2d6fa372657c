import { NonRetryableError, type Handler, type JobContext } from '@aijob/worker';
import type { LlmProvider } from '../config.js';
import { MinuteLimiter } from './minute-limiter.js';
import { callFailure, httpFailure } from './failures.js';

interface Message { role: string; content: unknown }

export interface ChatOutput {
  provider: string;
  model: string;
  content: string;
  finish_reason: string;
  usage: { prompt_tokens: number; completion_tokens: number };
  raw_id: string;
}

/** Rough token estimate for limiting before the call (about four characters a token). */
const estimate = (messages: Message[], maxTokens: number) =>
  Math.ceil(JSON.stringify(messages).length / 4) + maxTokens;

function text(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((c) => (typeof c === 'object' && c && 'text' in c ? String(c.text) : '')).join('');
  return '';
}

/**
 * `llm.chat`: one chat completion from a configured provider. Input:
 * `{ provider?, model, messages: [{role, content}], max_tokens?, ...params }`.
 * Output is normalised across OpenAI-compatible and Anthropic APIs; usage is reported
 * for cost accounting; provider limits are waited out before calling.
 */
export function llmChat(o: { providers: LlmProvider[]; defaultProvider?: string; timeoutMs: number }): Handler {
  const limiters = new Map(o.providers.map((p) => [p.name, new MinuteLimiter(p.rpm, p.tpm)]));
  return async (job, ctx) => {
    const input = job.input as { provider?: unknown; model?: unknown; messages?: unknown; max_tokens?: unknown } & Record<string, unknown>;
    const name = typeof input.provider === 'string' && input.provider ? input.provider : o.defaultProvider ?? o.providers[0]?.name;
    const p = o.providers.find((x) => x.name === name);
    if (!p) throw new NonRetryableError('LLM_PROVIDER_NOT_CONFIGURED', `no LLM provider "${name ?? ''}" is configured on this worker`);
    if (typeof input.model !== 'string' || !input.model) throw new NonRetryableError('INVALID_INPUT', 'input.model is required');
    if (!Array.isArray(input.messages) || input.messages.length === 0 ||
      !input.messages.every((m) => m && typeof m === 'object' && typeof (m as Message).role === 'string')) {
      throw new NonRetryableError('INVALID_INPUT', 'input.messages must be a non-empty list of {role, content}');
    }
    const messages = input.messages as Message[];
    const maxTokens = typeof input.max_tokens === 'number' ? input.max_tokens : p.kind === 'anthropic' ? 1024 : 0;
    const slot = await limiters.get(p.name)!.acquire(estimate(messages, maxTokens), ctx.signal);
    const out = await call(p, input, messages, maxTokens, ctx, o.timeoutMs);
    slot.settle(out.usage.prompt_tokens + out.usage.completion_tokens);
    ctx.reportUsage({ provider: p.name, model: out.model, promptTokens: out.usage.prompt_tokens, completionTokens: out.usage.completion_tokens });
    return out;
  };
}

async function call(p: LlmProvider, input: Record<string, unknown>, messages: Message[], maxTokens: number,
  ctx: JobContext, timeoutMs: number): Promise<ChatOutput> {
  const { provider: _p, ...params } = input;
  void _p;
  const callSignal = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([ctx.signal, callSignal]);
  const what = `provider ${p.name}`;
  let url: string;
  let body: Record<string, unknown>;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (p.kind === 'anthropic') {
    url = `${p.baseUrl}/v1/messages`;
    const system = messages.filter((m) => m.role === 'system').map((m) => text(m.content)).join('\n');
    body = { ...params, max_tokens: maxTokens, messages: messages.filter((m) => m.role !== 'system'), ...(system ? { system } : {}) };
    headers['anthropic-version'] = p.anthropicVersion;
    if (p.apiKey) headers['x-api-key'] = p.apiKey;
  } else {
    url = `${p.baseUrl}/chat/completions`;
    body = { ...params, messages, stream: false };
    if (p.apiKey) headers['authorization'] = `Bearer ${p.apiKey}`;
  }
  let res: Response;
  let raw: string;
  try {
    res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body), signal });
    raw = await res.text();
  } catch (err) {
    throw callFailure(err, ctx.signal, callSignal, 'PROVIDER', what);
  }
  if (!res.ok) throw httpFailure(res.status, raw, res.headers.get('retry-after'), { prefix: 'PROVIDER', what });
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw httpFailure(502, `not JSON: ${raw.slice(0, 200)}`, null, { prefix: 'PROVIDER', what });
  }
  return p.kind === 'anthropic' ? fromAnthropic(p.name, doc) : fromOpenAi(p.name, doc);
}

function fromOpenAi(provider: string, d: Record<string, unknown>): ChatOutput {
  const choice = (d['choices'] as { message?: { content?: unknown }; finish_reason?: string }[] | undefined)?.[0];
  const usage = (d['usage'] ?? {}) as { prompt_tokens?: number; completion_tokens?: number };
  return {
    provider, model: String(d['model'] ?? ''), content: text(choice?.message?.content), finish_reason: choice?.finish_reason ?? '',
    usage: { prompt_tokens: usage.prompt_tokens ?? 0, completion_tokens: usage.completion_tokens ?? 0 }, raw_id: String(d['id'] ?? ''),
  };
}

function fromAnthropic(provider: string, d: Record<string, unknown>): ChatOutput {
  const usage = (d['usage'] ?? {}) as { input_tokens?: number; output_tokens?: number };
  return {
    provider, model: String(d['model'] ?? ''), content: text(d['content']), finish_reason: String(d['stop_reason'] ?? ''),
    usage: { prompt_tokens: usage.input_tokens ?? 0, completion_tokens: usage.output_tokens ?? 0 }, raw_id: String(d['id'] ?? ''),
  };
}
