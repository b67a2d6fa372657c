import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { NonRetryableError, type Handler } from '@aijob/worker';
import { callFailure, httpFailure } from './failures.js';
import { resolveAllowed } from './host-guard.js';

export interface HttpOptions {
  allowedHosts: string[];
  allowPrivate: boolean;
  maxResponseBytes: number;
  timeoutMs: number;
}

const MAX_REDIRECTS = 5;
const safeHeaders = ['content-type', 'content-length', 'etag', 'last-modified', 'location', 'retry-after', 'x-request-id'];

interface Answer { status: number; headers: IncomingHttpHeaders; body: Buffer }

/** One request to a checked address, with the body capped. */
function send(url: URL, method: string, headers: Record<string, string>, body: string | undefined,
  address: { address: string; family: number }, maxBytes: number, signal: AbortSignal): Promise<Answer> {
  // Connect to the address already checked; never look the name up again.
  const pinned: LookupFunction = (_host, opts, cb) => {
    if ((opts as { all?: boolean }).all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [address]);
    else cb(null, address.address, address.family);
  };
  const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method, headers, lookup: pinned, signal });
  return new Promise((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          req.destroy();
          reject(new NonRetryableError('HTTP_RESPONSE_TOO_LARGE', `response larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.end(body);
  });
}

/**
 * `http.request`: a webhook call to allow-listed hosts only. Input:
 * `{ url, method? (POST), headers?, body? (JSON value or string), timeout_ms? }`.
 * Private, loopback and link-local targets (cloud metadata) are refused unless
 * allowed; redirects are followed only to allowed hosts; the response is capped.
 */
export function httpRequestHandler(o: HttpOptions): Handler {
  return async (job, ctx) => {
    const input = job.input as { url?: unknown; method?: unknown; headers?: unknown; body?: unknown; timeout_ms?: unknown };
    let url: URL;
    try {
      url = new URL(String(input.url ?? ''));
    } catch {
      throw new NonRetryableError('INVALID_INPUT', 'input.url must be an absolute http(s) URL');
    }
    const method = typeof input.method === 'string' ? input.method.toUpperCase() : 'POST';
    if (!/^(GET|POST|PUT|PATCH|DELETE|HEAD)$/.test(method)) throw new NonRetryableError('INVALID_INPUT', `method ${method} not allowed`);
    const headers: Record<string, string> = {};
    if (input.headers && typeof input.headers === 'object') {
      for (const [k, v] of Object.entries(input.headers as Record<string, unknown>)) headers[k.toLowerCase()] = String(v);
    }
    let body: string | undefined;
    if (input.body !== undefined && method !== 'GET' && method !== 'HEAD') {
      body = typeof input.body === 'string' ? input.body : JSON.stringify(input.body);
      headers['content-type'] ??= typeof input.body === 'string' ? 'text/plain' : 'application/json';
    }
    headers['idempotency-key'] ??= ctx.idempotencyKey;
    const timeout = typeof input.timeout_ms === 'number' && input.timeout_ms > 0 ? Math.min(input.timeout_ms, o.timeoutMs * 4) : o.timeoutMs;
    const callSignal = AbortSignal.timeout(timeout);
    const signal = AbortSignal.any([ctx.signal, callSignal]);

    for (let hop = 0; ; hop++) {
      const address = await resolveAllowed(url, o);
      let res: Answer;
      try {
        res = await send(url, method, headers, body, address, o.maxResponseBytes, signal);
      } catch (err) {
        if (err instanceof NonRetryableError) throw err;
        throw callFailure(err, ctx.signal, callSignal, 'HTTP', `${url.host}`);
      }
      if (res.status >= 300 && res.status < 400 && res.headers.location) {
        if (hop >= MAX_REDIRECTS) throw new NonRetryableError('HTTP_TOO_MANY_REDIRECTS', `more than ${MAX_REDIRECTS} redirects`);
        url = new URL(res.headers.location, url);
        continue; // the next hop is checked like the first
      }
      const text = res.body.toString('utf8');
      if (res.status >= 400) throw httpFailure(res.status, text, String(res.headers['retry-after'] ?? '') || null, { prefix: 'HTTP', what: url.host });
      const isJson = /json/i.test(String(res.headers['content-type'] ?? ''));
      let parsed: unknown = text;
      if (isJson && text) {
        try { parsed = JSON.parse(text); } catch { parsed = text; }
      }
      return {
        status: res.status,
        headers: Object.fromEntries(safeHeaders.filter((h) => res.headers[h] !== undefined).map((h) => [h, String(res.headers[h])])),
        body: parsed,
      };
    }
  };
}
