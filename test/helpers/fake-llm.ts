import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the fake answers to one request. */
export type Reply =
  | { kind: 'ok'; content?: string; promptTokens?: number; completionTokens?: number }
  | { kind: 'status'; status: number; body?: unknown; retryAfter?: string }
  | { kind: 'hang' };

export interface Seen {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
  /** Resolves when the client closed the connection before an answer. */
  closed: Promise<void>;
}

/**
 * A scriptable model server on 127.0.0.1: OpenAI-compatible (/chat/completions) or
 * Anthropic (/v1/messages). Replies are taken from a script in order (the last one
 * repeats); every request is recorded, and hanging ones tell when the client hung up.
 */
export class FakeLlm {
  readonly seen: Seen[] = [];
  private script: Reply[] = [{ kind: 'ok' }];
  private server: Server | undefined;
  private readonly open = new Set<ServerResponse>();

  constructor(readonly kind: 'openai' | 'anthropic') {}

  reply(...script: Reply[]): this {
    this.script = script;
    return this;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    return this;
  }

  get baseUrl(): string {
    const port = (this.server!.address() as AddressInfo).port;
    return this.kind === 'openai' ? `http://127.0.0.1:${port}/v1` : `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    for (const r of this.open) r.destroy();
    await new Promise<void>((r) => { this.server?.closeAllConnections(); this.server?.close(() => r()); });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let closedResolve!: () => void;
      const closed = new Promise<void>((r) => { closedResolve = r; });
      res.on('close', () => { if (!res.writableEnded) closedResolve(); });
      let body: Record<string, unknown> = {};
      try { body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>; } catch { /* keep {} */ }
      this.seen.push({ path: req.url ?? '', headers: req.headers, body, closed });
      const reply = this.script.length > 1 ? this.script.shift()! : this.script[0]!;
      if (reply.kind === 'hang') { this.open.add(res); return; }
      if (reply.kind === 'status') {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (reply.retryAfter) headers['retry-after'] = reply.retryAfter;
        res.writeHead(reply.status, headers).end(JSON.stringify(reply.body ?? { error: { message: `status ${reply.status}` } }));
        return;
      }
      const model = String(body['model'] ?? 'fake');
      const p = reply.promptTokens ?? 12;
      const c = reply.completionTokens ?? 5;
      const doc = this.kind === 'openai'
        ? { id: 'chatcmpl-1', model, choices: [{ message: { role: 'assistant', content: reply.content ?? 'hello' }, finish_reason: 'stop' }],
            usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c } }
        : { id: 'msg_1', model, type: 'message', content: [{ type: 'text', text: reply.content ?? 'hello' }], stop_reason: 'end_turn',
            usage: { input_tokens: p, output_tokens: c } };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    });
  }
}
