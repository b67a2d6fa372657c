import { RetryableError } from '@aijob/worker';
import type { LlmProvider } from '../config.js';

/** A chat message as jobs give it; `content` is a string or the API's content blocks. */
export interface Message { role: string; content: unknown }

/** What llm.chat answers, the same for every provider kind. */
export interface ChatOutput {
  provider: string;
  model: string;
  content: string;
  finish_reason: string;
  usage: { prompt_tokens: number; completion_tokens: number };
  raw_id: string;
}

export interface ChatRequest {
  model: string;
  messages: Message[];
  /** Anthropic requires it; for OpenAI-compatible servers it is sent only when the job set it. */
  maxTokens: number | undefined;
  /** Everything else from the input (temperature, top_p, stop, tools, …), passed through. */
  params: Record<string, unknown>;
}

/** Anthropic requires max_tokens; this is what a job that sets none gets. */
export const ANTHROPIC_DEFAULT_MAX_TOKENS = 1024;

/** The text of a message's content, whether a string or a list of `{type: 'text', text}` blocks. */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((c) => (c && typeof c === 'object' && typeof (c as { text?: unknown }).text === 'string' ? (c as { text: string }).text : '')).join('');
  }
  return '';
}

/** The HTTP request for one chat call. Streaming is always off: the job stores one answer. */
export function buildRequest(p: LlmProvider, r: ChatRequest): { url: string; headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (p.kind === 'anthropic') {
    if (p.apiKey) headers['x-api-key'] = p.apiKey;
    headers['anthropic-version'] = p.anthropicVersion;
    // The messages API takes the system prompt apart from the turns.
    const system = [typeof r.params['system'] === 'string' ? r.params['system'] : '',
      ...r.messages.filter((m) => m.role === 'system').map((m) => textOf(m.content))].filter(Boolean).join('\n');
    const body = {
      ...r.params, model: r.model, max_tokens: r.maxTokens ?? ANTHROPIC_DEFAULT_MAX_TOKENS, stream: false,
      messages: r.messages.filter((m) => m.role !== 'system'), ...(system ? { system } : {}),
    };
    return { url: `${p.baseUrl}/v1/messages`, headers, body: JSON.stringify(body) };
  }
  if (p.apiKey) headers['authorization'] = `Bearer ${p.apiKey}`;
  const body = { ...r.params, model: r.model, messages: r.messages, stream: false, ...(r.maxTokens !== undefined ? { max_tokens: r.maxTokens } : {}) };
  return { url: `${p.baseUrl}/chat/completions`, headers, body: JSON.stringify(body) };
}

const count = (n: unknown) => (typeof n === 'number' && Number.isFinite(n) && n >= 0 ? Math.trunc(n) : 0);
const malformed = (p: LlmProvider, why: string) =>
  // A 200 we cannot read is the server's fault and often passing (a proxy's error page).
  new RetryableError('PROVIDER_ERROR', `provider ${p.name} answered 200 but ${why}`);

/** One answer in the common shape; `model` falls back to the requested one when the server omits it. */
export function normalise(p: LlmProvider, raw: string, requested: string): ChatOutput {
  let d: Record<string, unknown>;
  try {
    d = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw malformed(p, 'not with JSON');
  }
  if (!d || typeof d !== 'object') throw malformed(p, 'not with a JSON object');
  const model = typeof d['model'] === 'string' && d['model'] ? d['model'] : requested;
  const raw_id = typeof d['id'] === 'string' ? d['id'] : '';
  if (p.kind === 'anthropic') {
    if (!Array.isArray(d['content'])) throw malformed(p, 'without content');
    const u = (d['usage'] ?? {}) as { input_tokens?: unknown; output_tokens?: unknown };
    return {
      provider: p.name, model, content: textOf(d['content']), finish_reason: String(d['stop_reason'] ?? ''),
      usage: { prompt_tokens: count(u.input_tokens), completion_tokens: count(u.output_tokens) }, raw_id,
    };
  }
  const choice = Array.isArray(d['choices']) ? d['choices'][0] as { message?: { content?: unknown }; finish_reason?: unknown } | undefined : undefined;
  if (!choice) throw malformed(p, 'without choices');
  const u = (d['usage'] ?? {}) as { prompt_tokens?: unknown; completion_tokens?: unknown };
  return {
    provider: p.name, model, content: textOf(choice.message?.content), finish_reason: String(choice.finish_reason ?? ''),
    usage: { prompt_tokens: count(u.prompt_tokens), completion_tokens: count(u.completion_tokens) }, raw_id,
  };
}
