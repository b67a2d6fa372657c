import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  attributes: Record<string, unknown>;
}

/** An OTLP/HTTP JSON trace receiver (what Jaeger's collector endpoint accepts), for tests. */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  private server: Server | undefined;
  port = 0;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/v1/traces') this.ingest(Buffer.concat(chunks).toString());
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => { this.server?.closeAllConnections(); this.server?.close(() => r()); });
  }

  private ingest(body: string): void {
    const doc = JSON.parse(body) as {
      resourceSpans: { resource: { attributes: Attr[] }; scopeSpans: { spans: RawSpan[] }[] }[];
    };
    for (const rs of doc.resourceSpans ?? []) {
      const service = String(value(rs.resource.attributes.find((a) => a.key === 'service.name')?.value) ?? '');
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          this.spans.push({
            service, traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name,
            attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, value(a.value)])),
          });
        }
      }
    }
  }
}

interface Attr { key: string; value: Record<string, unknown> }
interface RawSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; attributes?: Attr[] }

function value(v: Record<string, unknown> | undefined): unknown {
  if (!v) return undefined;
  return v['stringValue'] ?? v['intValue'] ?? v['doubleValue'] ?? v['boolValue'];
}
