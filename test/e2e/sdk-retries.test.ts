import t, { type Test } from 'tap';
import { status } from '@grpc/grpc-js';
import { AijobClient, CancelledError, DeadlineExceededError, stateName, UnavailableError, type AijobClientOptions, type Job } from '@aijob/sdk';
import { freePort } from '../helpers/nats-server.js';
import { startPlatform, waitFor, type Platform } from '../helpers/platform.js';
import { callRecorder, timed } from '../helpers/sdk-probes.js';

function client(t: Test, p: Platform, o: Partial<AijobClientOptions> = {}): AijobClient {
  const c = new AijobClient({ address: p.jobAddr, queueAddress: p.schedulerAddr, authAddress: p.authAddr, apiKey: p.apiKey,
    exchangeTokens: false, ...o });
  t.teardown(() => c.close());
  return c;
}

const someId = '00000000-0000-7000-8000-000000000000';
const far = new Date(Date.now() + 24 * 3_600_000);

t.test('UNAVAILABLE: only idempotent calls are retried, with backoff, within the deadline', async (t) => {
  const rec = callRecorder();
  const down = new AijobClient({ address: `127.0.0.1:${await freePort()}`, apiKey: 'aijob_unused', maxAttempts: 3, interceptors: [rec.interceptor] });
  t.teardown(() => down.close());
  const calls: [string, string, () => Promise<unknown>, number][] = [
    ['get', 'GetJob', () => down.get(someId), 3],
    ['list', 'ListJobs', () => down.listPage({}), 3],
    ['submit with an idempotency key', 'SubmitJob', () => down.submit({ type: 'echo', idempotencyKey: 'k1' }), 3],
    ['cancel', 'CancelJob', () => down.cancel(someId), 3],
    ['submit without a key', 'SubmitJob', () => down.submit({ type: 'echo' }), 1],
    ['submitMany with a job lacking a key', 'SubmitJobs', () => down.submitMany([{ type: 'echo', idempotencyKey: 'a' }, { type: 'echo' }]), 1],
    ['retry', 'RetryJob', () => down.retry(someId), 1],
  ];
  for (const [name, method, call, attempts] of calls) {
    const before = rec.count(method);
    const err = await call().catch((e: unknown) => e);
    t.type(err, UnavailableError, `${name}: UnavailableError`);
    t.equal(rec.count(method) - before, attempts, `${name}: ${attempts} attempt(s)`);
  }
  const short = await timed(down.get(someId, { deadlineMs: 150 }));
  // The last UNAVAILABLE, or DEADLINE_EXCEEDED when the deadline passes during an attempt
  // (a loaded machine can take that long to have the connection refused): never a retry wait.
  t.ok(short.error instanceof UnavailableError || short.error instanceof DeadlineExceededError,
    `a short deadline ends the call with UNAVAILABLE or DEADLINE_EXCEEDED (${String(short.error)})`);
  t.ok(short.ms < 1_000, `no retry wait past the deadline (${short.ms} ms)`);

  const patient = new AijobClient({ address: `127.0.0.1:${await freePort()}`, apiKey: 'aijob_unused', maxAttempts: 100, interceptors: [rec.interceptor] });
  t.teardown(() => patient.close());
  const ac = new AbortController();
  const before = rec.count('GetJob');
  const waiting = timed(patient.get(someId, { signal: ac.signal }));
  await waitFor(() => rec.count('GetJob', status.UNAVAILABLE) - before >= 2, 10_000, 'two failed attempts');
  const abortedAt = Date.now();
  ac.abort();
  const r = await waiting;
  t.type(r.error, CancelledError, 'an abort during the retry wait ends the call');
  t.ok(Date.now() - abortedAt < 200, 'at once, not after the backoff');
});

// One platform for the restarts below (started by the first test that needs it).
let shared: Promise<Platform> | undefined;
const platform = () => (shared ??= startPlatform(t, { workers: 1 }));

t.test('a job service stopped and crashed: reads retry, watches re-open, submitAndWait finishes', async (t) => {
  const p = await platform();
  const admin = p.client();
  const port = await freePort();
  const replica = async () => p.spawn('job', { GRPC_PORT: String(port), SHUTDOWN_GRACE_MS: '1000' }, 'job-fixed');
  await replica();
  const rec = callRecorder();
  const c = client(t, p, { address: `127.0.0.1:${port}`, maxAttempts: 30, interceptors: [rec.interceptor] });

  // Jobs that wait (run_at tomorrow) until cancelled: the watches outlive the restart.
  const job = await admin.submit({ type: 'echo', runAt: far });
  const seen: Job[] = [];
  const watching = (async () => { for await (const j of c.watch(job.id)) seen.push(j); })();
  const waited = c.submitAndWait({ type: 'echo', runAt: far, idempotencyKey: 'restart-1' });
  await waitFor(() => seen.length === 1 && rec.count('WatchJob') === 2, 10_000, 'both watches open');

  const reopened = (n: number) => waitFor(() => rec.count('WatchJob') >= n &&
    rec.calls.filter((x) => x.method === 'WatchJob' && x.code === undefined).length === 2, 30_000, 'both watches open again');
  // A graceful stop: the replica ends its watches first (UNAVAILABLE), so clients move on at once.
  await p.proc('job-fixed').stop();
  t.ok(rec.count('WatchJob', status.UNAVAILABLE) >= 2 && rec.count('WatchJob', status.CANCELLED) === 0,
    'the draining replica ended both watches with UNAVAILABLE (and the retries while it was gone too)');
  await replica();
  await reopened(4);

  // A crash: the connection drops (UNAVAILABLE); a read issued while it is down waits for it.
  await p.proc('job-fixed').kill();
  const read = c.get(job.id);
  await waitFor(() => rec.count('GetJob', status.UNAVAILABLE) >= 1 && rec.count('WatchJob', status.UNAVAILABLE) >= 2,
    10_000, 'the read and both watches failing while the service is down');
  await replica();
  t.equal(stateName((await read).state), 'QUEUED', 'the read issued while the service was down succeeds once it is back');
  await reopened(6);

  await admin.cancel(job.id, 'done watching');
  const other = await admin.submit({ type: 'echo', runAt: far, idempotencyKey: 'restart-1' });
  t.ok(other.deduplicated, 'submitAndWait submitted once');
  await admin.cancel(other.id, 'done waiting');
  await watching;
  const states = seen.map((j) => stateName(j.state));
  t.same(states, ['QUEUED', 'CANCELLED'], 'the watch went on to the end, the state seen before the restarts not repeated');
  const done = await waited;
  t.same([done.id, stateName(done.state)], [other.id, 'CANCELLED'], 'submitAndWait returns the final record across the restarts');
});

t.test('the auth service restarted: calls that need it wait for the reconnect instead of failing', async (t) => {
  const p = await platform();
  const admin = p.client();
  // A key the job service has not seen yet, so that its use must reach the auth service.
  const { apiKey } = await admin.admin.createApiKey({ scopes: ['jobs:read', 'jobs:write'] });
  const port = Number(p.authAddr.split(':')[1]);
  await p.proc('auth').kill();
  const c = client(t, p, { apiKey, maxAttempts: 1 });
  // Down until the job service's readiness sees it gone: its channel has failed to connect
  // by then and backs off before trying again; it used to fail every call at once meanwhile.
  await waitFor(async () => (await fetch(`http://127.0.0.1:${p.ops['job-0']}/readyz`)).status === 503, 10_000, 'the job service to see auth down');
  await p.spawn('auth', { GRPC_PORT: String(port) }, 'auth');
  const r = await timed(c.submit({ type: 'echo', runAt: far }));
  t.equal(r.error, undefined, 'a submit right after auth is back succeeds, in one attempt');
  t.ok(r.ms < 10_000, `within the SDK's deadline (${r.ms} ms)`);
});
