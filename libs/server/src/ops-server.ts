import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorMessage } from '@aijob/core';
import { registry } from '@aijob/telemetry';

/** A named probe of a real dependency; throws when it is not usable. */
export type ReadinessCheck = () => Promise<void>;

/**
 * Readiness of a service: all checks pass and it is not draining. Results are cached
 * for a moment so frequent probes do not hammer the dependencies.
 */
export class Readiness {
  private draining = false;
  private last: { at: number; ready: boolean; checks: Record<string, string> } | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly checks: Record<string, ReadinessCheck>, private readonly timeoutMs = 2_000) {}

  /** Marks the service as going away: readiness turns false for good. */
  drain(): void {
    this.draining = true;
    this.last = undefined;
  }

  async evaluate(maxAgeMs = 500): Promise<{ ready: boolean; checks: Record<string, string> }> {
    if (this.last && Date.now() - this.last.at < maxAgeMs) return this.last;
    const entries = await Promise.all(Object.entries(this.checks).map(async ([name, check]) => {
      try {
        await withTimeout(check(), this.timeoutMs, `${name} check timed out`);
        return [name, 'ok'] as const;
      } catch (err) {
        return [name, errorMessage(err)] as const;
      }
    }));
    const checks = Object.fromEntries(entries);
    if (this.draining) checks['draining'] = 'shutting down';
    const ready = !this.draining && entries.every(([, r]) => r === 'ok');
    this.last = { at: Date.now(), ready, checks };
    return this.last;
  }

  /** Re-evaluates every `intervalMs` and reports changes (drives gRPC health). */
  watch(intervalMs: number, onChange: (ready: boolean) => void): void {
    let previous: boolean | undefined;
    const tick = async () => {
      const { ready } = await this.evaluate(0);
      if (ready !== previous) { previous = ready; onChange(ready); }
      this.timer = setTimeout(tick, intervalMs).unref();
    };
    void tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

export type Route = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

/** The ops HTTP server: /healthz, /readyz, /metrics, plus service-specific routes. */
export async function startOpsServer(opts: {
  host: string;
  port: number;
  readiness: Readiness;
  routes?: Record<string, Route>;
}): Promise<{ server: Server; port: number; close: () => Promise<void> }> {
  const routes: Record<string, Route> = {
    '/healthz': (_req, res) => json(res, 200, { status: 'ok' }),
    '/readyz': async (_req, res) => {
      const r = await opts.readiness.evaluate();
      json(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', checks: r.checks });
    },
    '/metrics': async (_req, res) => {
      const body = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType }).end(body);
    },
    ...opts.routes,
  };
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = req.method === 'GET' || req.method === 'HEAD' ? routes[path] : undefined;
    if (!route) return json(res, 404, { error: 'not found' });
    Promise.resolve(route(req, res)).catch(() => {
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

export function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
