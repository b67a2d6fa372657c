import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the fake answers to one request. Error kinds answer in the provider's own error
 * shape (OpenAI-compatible `{error: {message, type, code}}`, Anthropic
 * `{type: 'error', error: {type, message}}`), as the real services do.
 */
export type Reply =
  | { kind: 'ok'; content?: string; promptTokens?: number; completionTokens?: number; finishReason?: string }
  | { kind: 'rate_limited'; retryAfter?: string }
  | { kind: 'server_error'; status?: number }
  | { kind: 'auth' }
  | { kind: 'context_length' }
  | { kind: 'content_policy' }
  | { kind: 'status'; status: number; body?: unknown; retryAfter?: string }
  /** Sends nothing until the client gives up; `closed` tells when it does. */
  | { kind: 'hang' };

export interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
  /** Resolves when the client closed the connection before an answer. */
  closed: Promise<void>;
  /** Whether it has (so far). */
  clientClosed: boolean;
}

type Kind = 'openai' | 'anthropic';
type Status = { status: number; body: unknown; retryAfter?: string };

/** Each provider's error answers, shaped as the real APIs send them. */
const errors: Record<Exclude<Reply['kind'], 'ok' | 'status' | 'hang'>, Record<Kind, Status>> = {
  rate_limited: {
    openai: { status: 429, body: { error: { message: 'Rate limit reached for requests', type: 'requests', code: 'rate_limit_exceeded' } } },
    anthropic: { status: 429, body: { type: 'error', error: { type: 'rate_limit_error', message: 'Number of requests has exceeded your rate limit' } } },
  },
  server_error: {
    openai: { status: 500, body: { error: { message: 'The server had an error while processing your request', type: 'server_error' } } },
    anthropic: { status: 500, body: { type: 'error', error: { type: 'api_error', message: 'Internal server error' } } },
  },
  auth: {
    openai: { status: 401, body: { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } } },
    anthropic: { status: 401, body: { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } } },
  },
  context_length: {
    openai: { status: 400, body: { error: {
      message: "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
      type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } } },
    anthropic: { status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: 'prompt is too long: 210000 tokens > 200000 maximum' } } },
  },
  content_policy: {
    openai: { status: 400, body: { error: {
      message: 'Your request was rejected as a result of our safety system.', type: 'invalid_request_error', code: 'content_policy_violation' } } },
    anthropic: { status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: 'Output blocked by content filtering policy' } } },
  },
};

/**
 * A scriptable model server on 127.0.0.1 over real HTTP: OpenAI-compatible
 * (POST /v1/chat/completions) or Anthropic (POST /v1/messages). Replies come from a
 * script in order (the last one repeats); every request is recorded, and whether the
 * client hung up before the answer.
 */
export class FakeLlm {
  readonly seen: Seen[] = [];
  private script: Reply[] = [{ kind: 'ok' }];
  private server: Server | undefined;
  private readonly open = new Set<ServerResponse>();
  private readonly waiting: { index: number; resolve: (s: Seen) => void }[] = [];

  constructor(readonly kind: Kind) {}

  /** The answers to the next requests, in order; the last one repeats. */
  reply(...script: Reply[]): this {
    this.script = script;
    return this;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    return this;
  }

  /** The provider's base URL as a worker is configured with it (OpenAI-compatible ones end in /v1). */
  get baseUrl(): string {
    const port = (this.server!.address() as AddressInfo).port;
    return this.kind === 'openai' ? `http://127.0.0.1:${port}/v1` : `http://127.0.0.1:${port}`;
  }

  /** Resolves with request number `index` (0-based) once it has arrived, body and all. */
  request(index: number): Promise<Seen> {
    const s = this.seen[index];
    if (s) return Promise.resolve(s);
    return new Promise((resolve) => this.waiting.push({ index, resolve }));
  }

  async stop(): Promise<void> {
    for (const r of this.open) r.destroy();
    await new Promise<void>((r) => {
      if (!this.server) return r();
      this.server.closeAllConnections();
      this.server.close(() => r());
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Record<string, unknown> = {};
      try { body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>; } catch { /* keep {} */ }
      let closedResolve!: () => void;
      const seen: Seen = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, clientClosed: false,
        closed: new Promise<void>((r) => { closedResolve = r; }) };
      res.on('close', () => {
        this.open.delete(res);
        if (!res.writableEnded) { seen.clientClosed = true; closedResolve(); }
      });
      this.seen.push(seen);
      for (const w of this.waiting.filter((x) => x.index < this.seen.length)) {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        w.resolve(this.seen[w.index]!);
      }
      this.answer(this.script.length > 1 ? this.script.shift()! : this.script[0]!, body, res);
    });
  }

  private answer(reply: Reply, body: Record<string, unknown>, res: ServerResponse): void {
    if (reply.kind === 'hang') {
      this.open.add(res);
      return;
    }
    if (reply.kind !== 'ok') {
      const e: Status = reply.kind === 'status'
        ? { status: reply.status, body: reply.body ?? { error: { message: `status ${reply.status}` } }, retryAfter: reply.retryAfter }
        : { ...errors[reply.kind][this.kind] };
      if (reply.kind === 'rate_limited') e.retryAfter = reply.retryAfter;
      if (reply.kind === 'server_error' && reply.status) e.status = reply.status;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (e.retryAfter) headers['retry-after'] = e.retryAfter;
      res.writeHead(e.status, headers).end(JSON.stringify(e.body));
      return;
    }
    const model = String(body['model'] ?? 'fake');
    const p = reply.promptTokens ?? 12;
    const c = reply.completionTokens ?? 5;
    const doc = this.kind === 'openai'
      ? { id: 'chatcmpl-1', object: 'chat.completion', model,
          choices: [{ index: 0, message: { role: 'assistant', content: reply.content ?? 'hello' }, finish_reason: reply.finishReason ?? 'stop' }],
          usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c } }
      : { id: 'msg_1', type: 'message', role: 'assistant', model, content: [{ type: 'text', text: reply.content ?? 'hello' }],
          stop_reason: reply.finishReason ?? 'end_turn', usage: { input_tokens: p, output_tokens: c } };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
  }
}
