import { request as httpRequest, validateHeaderName, validateHeaderValue, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { NonRetryableError, type Handler } from '@aijob/worker';
import { callFailure, httpFailure } from './failures.js';
import { resolveAllowed } from './host-guard.js';

export interface HttpOptions {
  allowedHosts: string[];
  allowPrivate: boolean;
  maxResponseBytes: number;
  /** Per call when the job sets no timeout_ms. */
  timeoutMs: number;
}

const MAX_REDIRECTS = 5;
const MAX_TIMEOUT_MS = 600_000;
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD']);
/** Response headers a job's output may keep; the rest (cookies, server details) stay out of the job record. */
const SAFE_RESPONSE_HEADERS = ['content-type', 'content-length', 'etag', 'last-modified', 'location', 'retry-after', 'x-request-id'];
/** Request headers the client manages itself: a job setting them could smuggle requests or retarget the host. */
const RESERVED_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'proxy-connection']);
/** Credentials that must not follow a redirect to another origin. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

interface Call { url: URL; method: string; headers: Record<string, string>; body: string | undefined }
interface Answer { status: number; headers: IncomingHttpHeaders; body: Buffer }

/**
 * `http.request`: a webhook call to allow-listed hosts only. Input:
 * `{ url, method? (POST), headers?, body? (JSON value or string), timeout_ms? }`;
 * output `{ status, headers (a safe subset), body (parsed when JSON) }`. Private,
 * loopback and link-local targets (cloud metadata) are refused unless allowed; each
 * redirect hop is checked like the first; the response is capped.
 */
export function httpRequestHandler(o: HttpOptions): Handler {
  return async (job, ctx) => {
    const call = parseInput(job.input);
    call.headers['idempotency-key'] ??= ctx.idempotencyKey;
    const timeout = typeof job.input['timeout_ms'] === 'number' ? job.input['timeout_ms'] : o.timeoutMs;
    const callSignal = AbortSignal.timeout(timeout);
    const signal = AbortSignal.any([ctx.signal, callSignal]);

    for (let hop = 0; ; hop++) {
      const address = await resolveAllowed(call.url, o);
      let res: Answer;
      try {
        res = await send(call, address, o.maxResponseBytes, signal);
      } catch (err) {
        throw callFailure(err, ctx.signal, callSignal, 'HTTP', call.url.host);
      }
      const next = redirectTarget(res, call.url);
      if (next) {
        if (hop >= MAX_REDIRECTS) throw new NonRetryableError('HTTP_TOO_MANY_REDIRECTS', `more than ${MAX_REDIRECTS} redirects`);
        follow(call, res.status, next);
        continue; // the next hop is checked like the first
      }
      const text = res.body.toString('utf8');
      if (res.status >= 400) throw httpFailure(res.status, text, headerValue(res.headers['retry-after']), call.url.host);
      let parsed: unknown = text;
      if (/\bjson\b|\+json/i.test(String(res.headers['content-type'] ?? '')) && text) {
        try { parsed = JSON.parse(text); } catch { /* keep the text: the body says more than a parse error */ }
      }
      return {
        status: res.status,
        headers: Object.fromEntries(SAFE_RESPONSE_HEADERS.filter((h) => res.headers[h] !== undefined).map((h) => [h, String(res.headers[h])])),
        body: parsed,
      };
    }
  };
}

/** The job's input as a call, or INVALID_INPUT naming what is wrong. */
function parseInput(input: Record<string, unknown>): Call {
  let url: URL;
  try {
    url = new URL(String(input['url'] ?? ''));
  } catch {
    throw new NonRetryableError('INVALID_INPUT', 'input.url must be an absolute http(s) URL');
  }
  const method = typeof input['method'] === 'string' ? input['method'].toUpperCase() : 'POST';
  if (!METHODS.has(method)) throw new NonRetryableError('INVALID_INPUT', `input.method ${method} is not one of ${[...METHODS].join(', ')}`);
  const t = input['timeout_ms'];
  if (t !== undefined && !(Number.isInteger(t) && (t as number) > 0 && (t as number) <= MAX_TIMEOUT_MS)) {
    throw new NonRetryableError('INVALID_INPUT', `input.timeout_ms must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`);
  }
  const headers: Record<string, string> = {};
  const given = input['headers'];
  if (given !== undefined && (given === null || typeof given !== 'object' || Array.isArray(given))) {
    throw new NonRetryableError('INVALID_INPUT', 'input.headers must be an object of name → value');
  }
  for (const [k, v] of Object.entries((given ?? {}) as Record<string, unknown>)) {
    const name = k.toLowerCase();
    const value = String(v);
    if (RESERVED_HEADERS.has(name)) throw new NonRetryableError('INVALID_INPUT', `input.headers: ${name} is set by the worker`);
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      throw new NonRetryableError('INVALID_INPUT', `input.headers: ${name} is not a valid header`);
    }
    headers[name] = value;
  }
  let body: string | undefined;
  if (input['body'] !== undefined) {
    if (method === 'GET' || method === 'HEAD') throw new NonRetryableError('INVALID_INPUT', `input.body is not sent with ${method}`);
    body = typeof input['body'] === 'string' ? input['body'] : JSON.stringify(input['body']);
    headers['content-type'] ??= typeof input['body'] === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
  }
  return { url, method, headers, body };
}

/** Where a 3xx points, or undefined when the answer is final (not a redirect, or no usable Location). */
function redirectTarget(res: Answer, from: URL): URL | undefined {
  const location = headerValue(res.headers.location);
  if (![301, 302, 303, 307, 308].includes(res.status) || !location) return undefined;
  try {
    return new URL(location, from);
  } catch {
    return undefined;
  }
}

/** Moves `call` to the redirect target the way browsers and fetch do. */
function follow(call: Call, status: number, next: URL): void {
  // 303, and 301/302 after a POST, continue as a GET without the body; 307/308 repeat as is.
  if ((status === 303 && call.method !== 'HEAD') || ((status === 301 || status === 302) && call.method === 'POST')) {
    call.method = 'GET';
    call.body = undefined;
    delete call.headers['content-type'];
  }
  if (next.origin !== call.url.origin) for (const h of CREDENTIAL_HEADERS) delete call.headers[h];
  call.url = next;
}

const headerValue = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v) ?? null;

/**
 * One request to the checked address, the body capped. The lookup is pinned, so the
 * connection goes where the check said; the URL keeps its host name for the Host
 * header and, over TLS, for SNI and certificate checks.
 */
function send(call: Call, address: { address: string; family: number }, maxBytes: number, signal: AbortSignal): Promise<Answer> {
  const pinned: LookupFunction = (_host, opts, cb) => {
    if ((opts as { all?: boolean }).all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [address]);
    else cb(null, address.address, address.family);
  };
  return new Promise((resolve, reject) => {
    const req = (call.url.protocol === 'https:' ? httpsRequest : httpRequest)(call.url, { method: call.method, headers: call.headers, lookup: pinned, signal });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          // Stop reading at once: the rest may be endless. An error's or a redirect's body
          // only feeds a message, so its status still decides (a huge 503 page stays retryable).
          req.destroy();
          if ((res.statusCode ?? 0) >= 300) resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) });
          else reject(new NonRetryableError('HTTP_RESPONSE_TOO_LARGE', `response larger than ${maxBytes} bytes (HTTP_MAX_RESPONSE_BYTES)`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.end(call.body);
  });
}
