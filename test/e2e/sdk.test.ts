import t, { type Test } from 'tap';
import { getEventListeners } from 'node:events';
import { status } from '@grpc/grpc-js';
import {
  AijobClient, CancelledError, DeadlineExceededError, isTerminal, JobState, ResourceExhaustedError, stateName,
  type AijobClientOptions,
} from '@aijob/sdk';
import { startPlatform, waitFor, type Platform } from '../helpers/platform.js';
import { blackHole, callRecorder, timed } from '../helpers/sdk-probes.js';

/** A client of the platform with its own options (closed at the end of the test). */
function client(t: Test, p: Platform, o: Partial<AijobClientOptions> = {}): AijobClient {
  const c = new AijobClient({ address: p.jobAddr, queueAddress: p.schedulerAddr, authAddress: p.authAddr, apiKey: p.apiKey,
    exchangeTokens: false, ...o });
  t.teardown(() => c.close());
  return c;
}

const far = new Date(Date.now() + 24 * 3_600_000);

t.test('the SDK against a real platform', async (t) => {
  const p = await startPlatform(t, { workers: 1 });
  const admin = p.client();

  t.test('submit and wait: the final record of a job', async (t) => {
    const job = await admin.submitAndWait({ type: 'echo', input: { hello: 'world' } }, { timeoutMs: 30_000 });
    t.equal(stateName(job.state), 'SUCCEEDED');
    t.same(job.output, { hello: 'world' });
    const failed = await admin.submitAndWait({ type: 'fail', input: { code: 'BOOM' }, maxAttempts: 1 });
    t.equal(stateName(failed.state), 'FAILED', 'a failure is returned, not thrown');
    t.equal(failed.error?.code, 'BOOM');
  });

  t.test('paging through 250 jobs: every job once, newest first', async (t) => {
    const rec = callRecorder();
    const c = client(t, p, { interceptors: [rec.interceptor] });
    const submitted = await c.submitMany(Array.from({ length: 250 }, (_, i) => ({ type: 'echo', queue: 'paging', runAt: far, input: { i } })));
    t.equal(submitted.length, 250);
    const seen: string[] = [];
    for await (const j of c.list({ queue: 'paging', pageSize: 40 })) seen.push(j.id);
    t.equal(seen.length, 250, 'all 250');
    t.equal(new Set(seen).size, 250, 'none twice');
    t.same([...seen].sort(), submitted.map((j) => j.id).sort(), 'exactly the jobs submitted');
    t.ok(seen.every((id, i) => i === 0 || id < seen[i - 1]!), 'in order: ids (UUID v7, time ordered) descending');
    t.equal(rec.count('ListJobs'), 7, 'fetched as 7 pages of at most 40');
    const limited: string[] = [];
    for await (const j of c.list({ queue: 'paging', pageSize: 40, limit: 45 })) limited.push(j.id);
    t.same(limited, seen.slice(0, 45), 'limit stops the iteration');
    t.equal(await admin.queues.clear('paging'), 250, 'cleared again');
  });

  t.test('watch yields each change and ends at a terminal state', async (t) => {
    const job = await admin.submit({ type: 'sleep', input: { ms: 300 } });
    const states: string[] = [];
    for await (const j of admin.watch(job.id)) states.push(stateName(j.state));
    t.equal(states.at(-1), 'SUCCEEDED', 'ends with the terminal state');
    t.ok(states.length >= 2 && ['QUEUED', 'DISPATCHED', 'RUNNING'].includes(states[0]!), `followed the changes: ${states.join(' > ')}`);
    const again: JobState[] = [];
    for await (const j of admin.watch(job.id)) again.push(j.state);
    t.same(again, [JobState.JOB_STATE_SUCCEEDED], 'a finished job: its state, then the end');
  });

  t.test('RESOURCE_EXHAUSTED is typed, carries its retry delay, and is not retried', async (t) => {
    const ws = await admin.admin.createWorkspace('sdk-small', { maxPending: 1 });
    const { apiKey } = await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read', 'jobs:write'] });
    const rec = callRecorder();
    const small = client(t, p, { apiKey, interceptors: [rec.interceptor] });
    await small.submit({ type: 'echo', runAt: far });
    const err = await small.submit({ type: 'echo', idempotencyKey: 'second' }).catch((e: unknown) => e) as ResourceExhaustedError;
    t.type(err, ResourceExhaustedError);
    t.equal(err.code, status.RESOURCE_EXHAUSTED);
    t.equal(err.reason, 'WORKSPACE_MAX_PENDING');
    t.ok(err.retryDelayMs! > 0, `retry in ${err.retryDelayMs} ms`);
    t.equal(rec.count('SubmitJob'), 2, 'one attempt each: the SDK leaves the wait to the caller');
  });

  t.test('per-call deadlines end a call with DEADLINE_EXCEEDED', async (t) => {
    const rec = callRecorder();
    const c = client(t, p, { address: await blackHole(t), interceptors: [rec.interceptor], maxAttempts: 5 });
    const r = await timed(c.get('00000000-0000-7000-8000-000000000000', { deadlineMs: 300 }));
    t.type(r.error, DeadlineExceededError, 'typed');
    t.ok(r.ms >= 250 && r.ms < 3_000, `at the deadline (${r.ms} ms)`);
    t.equal(rec.count('GetJob'), 1, 'a deadline is not retried, even for a safe call');
    const slow = await timed(c.get('00000000-0000-7000-8000-000000000000', { signal: AbortSignal.timeout(200) }));
    t.type(slow.error, DeadlineExceededError, 'AbortSignal.timeout counts as a deadline');
    t.ok(slow.ms < 3_000, `${slow.ms} ms`);
    const fine = client(t, p, { deadlineMs: 1 });
    t.type(await fine.listPage({}).catch((e: unknown) => e), DeadlineExceededError, 'the client-wide default applies too');
    await t.resolves(admin.listPage({}, { deadlineMs: 10_000 }), 'a reachable deadline passes');
  });

  t.test('abort signals end calls and watches promptly and leave no listeners', async (t) => {
    const job = await admin.submit({ type: 'echo', runAt: far });
    const ac = new AbortController();
    const states: string[] = [];
    const watching = timed((async () => {
      for await (const j of admin.watch(job.id, { signal: ac.signal })) states.push(stateName(j.state));
    })());
    await waitFor(() => states.length > 0, 10_000, 'the first state');
    ac.abort();
    const w = await watching;
    t.type(w.error, CancelledError, 'an aborted watch throws CancelledError');
    t.same(states, ['QUEUED']);

    const hole = client(t, p, { address: await blackHole(t) });
    const ac2 = new AbortController();
    const call = timed(hole.get(job.id, { signal: ac2.signal }));
    setImmediate(() => ac2.abort());
    const r = await call;
    t.type(r.error, CancelledError, 'an aborted call throws CancelledError');
    t.ok(r.ms < 1_000, `promptly (${r.ms} ms)`);
    t.type(await hole.get(job.id, { signal: ac2.signal }).catch((e: unknown) => e), CancelledError, 'an aborted signal: no call at all');

    const shared = new AbortController();
    for (let i = 0; i < 5; i++) await admin.get(job.id, { signal: shared.signal });
    for await (const _ of admin.watch(job.id, { signal: shared.signal })) break;
    t.equal(getEventListeners(shared.signal, 'abort').length, 0, 'each call removes its abort listener');
    t.equal((await admin.cancel(job.id)).state, JobState.JOB_STATE_CANCELLED);
  });

  t.test('cancel is idempotent; a finished job is a precondition failure', async (t) => {
    const job = await admin.submit({ type: 'echo', runAt: far });
    const first = await admin.cancel(job.id, 'not needed');
    const second = await admin.cancel(job.id, 'again');
    t.equal(first.state, JobState.JOB_STATE_CANCELLED);
    t.same([second.id, second.state], [job.id, JobState.JOB_STATE_CANCELLED], 'cancelling twice returns the cancelled job');
    const done = await admin.submitAndWait({ type: 'echo' });
    t.ok(isTerminal(done));
    await t.rejects(admin.cancel(done.id), { name: 'FailedPreconditionError' }, 'a SUCCEEDED job cannot be cancelled');
  });

  t.test('an exchanged JWT the server refuses is fetched again once', async (t) => {
    const rec = callRecorder();
    const c = client(t, p, { exchangeTokens: true, interceptors: [rec.interceptor] });
    await c.listPage({ pageSize: 1 });
    t.equal(rec.count('IssueToken'), 1, 'the key was exchanged for a JWT');
    const { token } = await admin.admin.issueToken(p.apiKey);
    await admin.admin.rotateSigningKey(500);
    const old = client(t, p, { token });
    await waitFor(() => old.listPage({ pageSize: 1 }).then(() => false, () => true), 20_000, 'tokens of the retired key refused');
    await t.resolves(c.listPage({ pageSize: 1 }), 'the call succeeds with a fresh token');
    t.equal(rec.count('ListJobs', status.UNAUTHENTICATED), 1, 'refused once');
    t.equal(rec.count('IssueToken'), 2, 'and a new JWT fetched once');
  });
});
