import t from 'tap';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AbortReason, NonRetryableError, RetryableError, type JobContext, type JobInfo } from '@aijob/worker';
import { createLogger } from '@aijob/platform';
import { httpRequestHandler } from '../../services/worker/dist/executors/http-request.js';
import { hostAllowed, isPrivate } from '../../services/worker/dist/executors/host-guard.js';
import { MinuteLimiter } from '../../services/worker/dist/executors/minute-limiter.js';
import { retryAfterMs } from '../../services/worker/dist/executors/failures.js';

async function waitForClose(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) await new Promise((r) => setImmediate(r));
}

function ctx(signal = new AbortController().signal): JobContext {
  return { signal, attempt: 1, idempotencyKey: 'idem-1', progress: () => undefined, reportUsage: () => undefined, log: createLogger('test', 'silent') };
}
const job = (input: Record<string, unknown>): JobInfo => ({
  id: 'j1', workspaceId: 'ws', queue: 'default', type: 'http.request', input, labels: {}, attempt: 1, maxAttempts: 3,
  timeoutMs: 10_000, createdAt: new Date(),
});

async function server(t: Tap.Test, handler: Parameters<typeof createServer>[1]): Promise<string> {
  const s: Server = createServer(handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); }));
  return `127.0.0.1:${(s.address() as AddressInfo).port}`;
}

t.test('private, loopback, link-local and metadata addresses are recognised', async (t) => {
  for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '0.0.0.0', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '224.0.0.1']) {
    t.ok(isPrivate(a), `${a} is blocked`);
  }
  for (const a of ['93.184.216.34', '1.1.1.1', '2606:4700:4700::1111']) t.notOk(isPrivate(a), `${a} is public`);
  t.ok(hostAllowed('hooks.example.com', '443', ['*.example.com']));
  t.notOk(hostAllowed('example.com.evil.io', '443', ['*.example.com']));
  t.ok(hostAllowed('api.local', '8080', ['api.local:8080']));
  t.notOk(hostAllowed('api.local', '9090', ['api.local:8080']));
  t.equal(retryAfterMs('2'), 2000);
  t.ok(Math.abs(retryAfterMs(new Date(Date.now() + 5000).toUTCString())! - 5000) < 1500);
});

t.test('http.request calls allowed hosts, refuses the rest, caps and classifies', async (t) => {
  const target = await server(t, (req, res) => {
    if (req.url === '/json') { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ got: req.headers['idempotency-key'] })); return; }
    if (req.url === '/big') { res.writeHead(200).end('x'.repeat(5000)); return; }
    if (req.url === '/redirect') { res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end(); return; }
    const m = /^\/status\/(\d+)$/.exec(req.url ?? '');
    if (m) { res.writeHead(Number(m[1]), { 'retry-after': '3' }).end('nope'); return; }
    res.writeHead(404).end();
  });
  const base = { allowedHosts: [target], allowPrivate: true, maxResponseBytes: 1000, timeoutMs: 2000 };
  const call = httpRequestHandler(base);
  const ok = await call(job({ url: `http://${target}/json`, method: 'GET' }), ctx()) as { status: number; body: unknown };
  t.same(ok.body, { got: 'idem-1' }, 'JSON parsed; the idempotency key is passed on');
  t.equal(ok.status, 200);

  await t.rejects(httpRequestHandler({ ...base, allowedHosts: ['other.example.com'] })(job({ url: `http://${target}/json` }), ctx()),
    { code: 'HTTP_HOST_NOT_ALLOWED' }, 'a host not on the list');
  await t.rejects(httpRequestHandler({ ...base, allowPrivate: false })(job({ url: `http://${target}/json` }), ctx()),
    { code: 'HTTP_HOST_NOT_ALLOWED', message: /private or reserved/ }, 'loopback refused unless allowed');
  await t.rejects(httpRequestHandler({ ...base, allowedHosts: ['169.254.169.254'], allowPrivate: false })(job({ url: 'http://169.254.169.254/latest' }), ctx()),
    { code: 'HTTP_HOST_NOT_ALLOWED' }, 'cloud metadata refused');
  await t.rejects(call(job({ url: `http://${target}/big` }), ctx()), { code: 'HTTP_RESPONSE_TOO_LARGE' });
  await t.rejects(call(job({ url: `http://${target}/redirect` }), ctx()), { code: 'HTTP_HOST_NOT_ALLOWED' }, 'a redirect to a disallowed host');
  const e429 = await call(job({ url: `http://${target}/status/429` }), ctx()).catch((e: unknown) => e);
  t.type(e429, RetryableError);
  t.same([(e429 as RetryableError).code, (e429 as RetryableError).retryAfterMs], ['HTTP_429', 3000]);
  t.equal(((await call(job({ url: `http://${target}/status/503` }), ctx()).catch((e: unknown) => e)) as RetryableError).code, 'HTTP_5XX');
  const e404 = await call(job({ url: `http://${target}/status/404` }), ctx()).catch((e: unknown) => e);
  t.type(e404, NonRetryableError);
  t.equal((e404 as NonRetryableError).code, 'HTTP_4XX');
});

t.test('a hanging webhook times out retryably; a cancelled job aborts it', async (t) => {
  let closed = 0;
  let arrived!: () => void;
  const reached = new Promise<void>((r) => { arrived = r; });
  const target = await server(t, (req, res) => { res.on('close', () => closed++); if (req.url === '/held') arrived(); });
  const call = httpRequestHandler({ allowedHosts: [target], allowPrivate: true, maxResponseBytes: 1000, timeoutMs: 300 });
  await t.rejects(call(job({ url: `http://${target}/slow` }), ctx()), { code: 'HTTP_TIMEOUT' });
  const abort = new AbortController();
  const pending = call(job({ url: `http://${target}/held`, timeout_ms: 60_000 }), ctx(abort.signal));
  await reached;
  abort.abort(new AbortReason('cancelled', 'cancelled by request'));
  const err = await pending.catch((e: unknown) => e);
  t.type(err, AbortReason, 'the job\'s own abort passes through');
  await waitForClose(() => closed >= 2);
  t.ok(closed >= 2, 'the server saw the connection closed');
});

t.test('the minute limiter makes the call past the limit wait instead of failing', async (t) => {
  let now = 1_000_000;
  const limiter = new MinuteLimiter(2, 0, () => now);
  const signal = new AbortController().signal;
  await limiter.acquire(1, signal);
  await limiter.acquire(1, signal);
  t.equal(limiter.waitMs(1), 60_000, 'the third call waits a minute');
  now += 30_000;
  t.equal(limiter.waitMs(1), 30_000);
  now += 30_000;
  t.equal(limiter.waitMs(1), 0, 'then it fits');
  const tokens = new MinuteLimiter(0, 1000, () => now);
  const slot = await tokens.acquire(900, signal);
  t.ok(tokens.waitMs(200) > 0, 'the token budget holds');
  slot.settle(100);
  t.equal(tokens.waitMs(200), 0, 'correcting with actual usage frees it');
});
