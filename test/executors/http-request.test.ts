import t from 'tap';
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AbortReason, NonRetryableError, RetryableError } from '@aijob/worker';
import { httpRequestHandler, type HttpOptions } from '../../services/worker/dist/executors/http-request.js';
import { hostAllowed, isPrivate } from '../../services/worker/dist/executors/host-guard.js';
import { retryAfterMs } from '../../services/worker/dist/executors/failures.js';
import { fakeContext, jobOf, thrown } from './fixtures/job-context.js';

interface Received { method: string; url: string; headers: IncomingMessage['headers']; body: string; res: ServerResponse; closed: Promise<void> }

/** A webhook target on loopback that records what arrives; closed at the end of the test. */
async function target(t: { teardown: (fn: () => Promise<void>) => void }, handler: RequestListener): Promise<{ host: string; received: Received[]; arrival: (i: number) => Promise<Received> }> {
  const received: Received[] = [];
  const waiting: { i: number; resolve: (r: Received) => void }[] = [];
  const arrival = (i: number) => new Promise<Received>((resolve) => (received[i] ? resolve(received[i]) : waiting.push({ i, resolve })));
  const s = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const closed = new Promise<void>((r) => res.on('close', () => { if (!res.writableEnded) r(); }));
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString(), res, closed });
      for (const w of waiting.filter((x) => received[x.i])) w.resolve(received[w.i]!);
      handler(req, res);
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); }));
  return { host: `127.0.0.1:${(s.address() as AddressInfo).port}`, received, arrival };
}

const options = (host: string, o: Partial<HttpOptions> = {}): HttpOptions =>
  ({ allowedHosts: [host], allowPrivate: true, maxResponseBytes: 1000, timeoutMs: 2000, ...o });
const run = (o: HttpOptions, input: Record<string, unknown>, f = fakeContext()) => httpRequestHandler(o)(jobOf('http.request', input), f.ctx);

t.test('blocked address ranges and host patterns', async (t) => {
  for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::', '::1',
    'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:169.254.169.254', '224.0.0.1', 'ff02::1', 'not-an-ip',
    '64:ff9b::7f00:1', '64:ff9b::169.254.169.254', '64:ff9b::a00:1', '2002:7f00:1::', '2002:a9fe:a9fe::1']) {
    t.ok(isPrivate(a), `${a} is blocked`);
  }
  for (const a of ['93.184.216.34', '1.1.1.1', '2606:4700:4700::1111', '::ffff:1.1.1.1', '64:ff9b::1.1.1.1', '2002:101:101::1']) t.notOk(isPrivate(a), `${a} is public`);
  t.ok(hostAllowed('hooks.example.com', '443', ['*.example.com']));
  t.ok(hostAllowed('HOOKS.Example.com.', '443', ['*.example.com']), 'case and a trailing dot do not matter');
  t.notOk(hostAllowed('example.com', '443', ['*.example.com']), 'a wildcard is for subdomains');
  t.notOk(hostAllowed('example.com.evil.io', '443', ['*.example.com']));
  t.notOk(hostAllowed('evilexample.com', '443', ['*.example.com']));
  t.ok(hostAllowed('api.local', '8080', ['api.local:8080']));
  t.notOk(hostAllowed('api.local', '9090', ['api.local:8080']));
  t.ok(hostAllowed('[::1]', '8080', ['[::1]:8080']), 'IPv6 with a port');
  t.ok(hostAllowed('[::1]', '80', ['::1']), 'IPv6 on any port');
  t.notOk(hostAllowed('anything.test', '80', []), 'an empty list allows nothing');
  t.equal(retryAfterMs('2'), 2000);
  t.equal(retryAfterMs(new Date(10_000).toUTCString(), 5_000), 5_000, 'an HTTP date');
  t.equal(retryAfterMs('soon'), undefined);
});

t.test('an allowed host answers: JSON parsed, safe headers, idempotency key sent', async (t) => {
  const { host, received } = await target(t, (_req, res) => {
    res.writeHead(201, { 'content-type': 'application/json; charset=utf-8', 'content-length': '11', 'set-cookie': 'session=1', 'x-request-id': 'r1' }).end('{"ok":true}');
  });
  const out = await run(options(host), { url: `http://${host}/hook`, body: { event: 'done' }, headers: { Authorization: 'Bearer hook-token' } });
  t.same(out, { status: 201, headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': '11', 'x-request-id': 'r1' }, body: { ok: true } });
  const r = received[0]!;
  t.same([r.method, r.body, r.headers['content-type'], r.headers['idempotency-key'], r.headers['authorization']],
    ['POST', '{"event":"done"}', 'application/json', 'idem-1', 'Bearer hook-token']);
  const text = await run(options(host), { url: `http://${host}/t`, method: 'PUT', body: 'plain' });
  t.equal(received[1]!.headers['content-type'], 'text/plain; charset=utf-8');
  t.same((text as { body: unknown }).body, { ok: true });
});

t.test('refused: hosts not on the list, loopback unless allowed, cloud metadata', async (t) => {
  const { host, received } = await target(t, (_req, res) => res.end('ok'));
  const port = host.split(':')[1]!;
  const refused = async (o: HttpOptions, url: string, why: RegExp, what: string) => {
    const err = await thrown(run(o, { url }));
    t.type(err, NonRetryableError);
    t.equal(err.code, 'HTTP_HOST_NOT_ALLOWED', what);
    t.match(err.message, why, what);
  };
  await refused(options('other.example.com'), `http://${host}/`, /not in HTTP_ALLOWED_HOSTS/, 'a host not on the list');
  await refused(options(host, { allowedHosts: [] }), `http://${host}/`, /not in HTTP_ALLOWED_HOSTS/, 'an empty list');
  await refused(options(host, { allowPrivate: false }), `http://${host}/`, /private or reserved/, 'loopback by address');
  await refused(options(`localhost:${port}`, { allowPrivate: false }), `http://localhost:${port}/`, /resolves to .*private or reserved/, 'loopback by name (DNS)');
  await refused(options('169.254.169.254', { allowPrivate: false }), 'http://169.254.169.254/latest/meta-data/', /private or reserved/, 'cloud metadata');
  await refused(options('[::ffff:a9fe:a9fe]', { allowPrivate: false }), 'http://[::ffff:169.254.169.254]/', /private or reserved/, 'metadata as IPv4-mapped IPv6');
  await refused(options(host), `file:///etc/passwd`, /scheme/, 'not http');
  t.equal(received.length, 0, 'nothing reached the server');
  t.ok(await run(options(`localhost:${port}`), { url: `http://localhost:${port}/`, method: 'GET' }), 'loopback by name once HTTP_ALLOW_PRIVATE');
});

t.test('redirects: each hop checked; 303 becomes GET; credentials stay with their origin', async (t) => {
  const b = await target(t, (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"at":"b"}'));
  const a = await target(t, (req, res) => {
    const to = { '/to-metadata': 'http://169.254.169.254/latest/meta-data', '/to-b': `http://${b.host}/landed`, '/loop': '/loop' }[req.url ?? ''];
    res.writeHead(req.url === '/to-b' ? 303 : 302, { location: to ?? '/' }).end();
  });
  const o = options(a.host, { allowedHosts: [a.host, b.host] });
  const meta = await thrown(run(o, { url: `http://${a.host}/to-metadata` }));
  t.same([meta.code, meta instanceof NonRetryableError], ['HTTP_HOST_NOT_ALLOWED', true], 'a redirect to a disallowed host');
  t.equal((await thrown(run(options(a.host), { url: `http://${a.host}/to-b` }))).code, 'HTTP_HOST_NOT_ALLOWED', 'b is not on a\'s list');
  const out = await run(o, { url: `http://${a.host}/to-b`, body: { x: 1 }, headers: { authorization: 'Bearer for-a', 'x-trace': 't1' } });
  t.same((out as { body: unknown }).body, { at: 'b' });
  const landed = b.received[0]!;
  t.same([landed.method, landed.body, landed.headers['authorization'], landed.headers['x-trace']], ['GET', '', undefined, 't1']);
  t.equal((await thrown(run(o, { url: `http://${a.host}/loop`, method: 'GET' }))).code, 'HTTP_TOO_MANY_REDIRECTS');
});

t.test('the response is capped', async (t) => {
  const { host } = await target(t, (_req, res) => {
    res.writeHead(200);
    // Writes forever unless the client stops reading: the cap must cut it off.
    const more = () => { if (!res.destroyed && res.write('x'.repeat(512))) setImmediate(more); else if (!res.destroyed) res.once('drain', more); };
    more();
  });
  const err = await thrown(run(options(host), { url: `http://${host}/big`, method: 'GET' }));
  t.type(err, NonRetryableError);
  t.equal(err.code, 'HTTP_RESPONSE_TOO_LARGE');
});

t.test('statuses: 429 and 5xx retryable (Retry-After kept), other 4xx not', async (t) => {
  const { host } = await target(t, (req, res) => {
    const status = Number(/^\/status\/(\d+)$/.exec(req.url ?? '')?.[1] ?? 200);
    res.writeHead(status, { 'retry-after': '3' }).end(`status ${status} ${'detail '.repeat(200)}`);
  });
  for (const [status, code, retryable] of [[429, 'HTTP_429', true], [500, 'HTTP_5XX', true], [503, 'HTTP_5XX', true], [408, 'HTTP_TIMEOUT', true],
    [400, 'HTTP_4XX', false], [401, 'HTTP_4XX', false], [403, 'HTTP_4XX', false], [404, 'HTTP_4XX', false], [422, 'HTTP_4XX', false]] as const) {
    const err = await thrown(run(options(host), { url: `http://${host}/status/${status}` }));
    t.type(err, retryable ? RetryableError : NonRetryableError, `${status}`);
    t.equal(err.code, code, `${status} is ${code}`);
    if (retryable) t.equal(err.retryAfterMs, 3000, `${status} keeps Retry-After`);
    t.ok(err.message.length < 600, 'the body, briefly');
  }
});

t.test('bad input is refused before any call', async (t) => {
  const { host, received } = await target(t, (_req, res) => res.end());
  for (const input of [{ url: 'not a url' }, { url: `http://${host}/`, method: 'TRACE' }, { url: `http://${host}/`, headers: { host: 'elsewhere' } },
    { url: `http://${host}/`, headers: { 'transfer-encoding': 'chunked' } }, { url: `http://${host}/`, headers: { 'x-bad': 'a\r\nb: c' } },
    { url: `http://${host}/`, method: 'GET', body: 'x' }, { url: `http://${host}/`, timeout_ms: 0 }, { url: `http://${host}/`, headers: 'x' }]) {
    t.equal((await thrown(run(options(host), input))).code, 'INVALID_INPUT', JSON.stringify(input));
  }
  t.equal(received.length, 0);
});

t.test('timeouts are retryable; a cancelled job aborts the call, passing its reason on', async (t) => {
  const { host, received, arrival } = await target(t, (req, res) => { if (req.url === '/half') { res.writeHead(200); res.write('partial'); } });
  const o = options(host, { timeoutMs: 300 });
  for (const path of ['/silent', '/half']) {
    const started = Date.now();
    const err = await thrown(run(o, { url: `http://${host}${path}` }));
    t.type(err, RetryableError);
    t.equal(err.code, 'HTTP_TIMEOUT', `${path}: no answer, or half of one`);
    t.ok(Date.now() - started < 2_000);
    await received.at(-1)!.closed;
  }
  const f = fakeContext();
  const pending = thrown(run(o, { url: `http://${host}/held`, timeout_ms: 60_000 }, f));
  const held = await arrival(2);
  const reason = new AbortReason('cancelled', 'cancelled by request');
  f.abort.abort(reason);
  t.equal(await pending, reason, 'the job\'s own abort passes through');
  await held.closed;
  t.pass('the server saw the connection closed');
});
