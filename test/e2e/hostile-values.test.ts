// SQL-looking strings in every string field, hostile metadata, and idempotency keys
// raced, reused across workspaces and outlived. One platform; a workspace per test.
import t from 'tap';
import { AijobClient, FailedPreconditionError, InvalidArgumentError, JobState, UnauthenticatedError } from '@aijob/sdk';
import { startPlatform, waitFor } from '../helpers/platform.js';

const p = await startPlatform(t, { workers: 1, jobReplicas: 2 });
const admin = p.client();
const evil = "x'); DROP TABLE jobs; --";
const tablesIntact = async () => {
  const [r] = await p.sql()`SELECT (SELECT count(*) FROM jobs)::int AS jobs, (SELECT count(*) FROM workspaces)::int AS workspaces,
    (SELECT count(*) FROM api_keys)::int AS keys, (SELECT count(*) FROM audit_log)::int AS audit`;
  return r as { jobs: number; workspaces: number; keys: number; audit: number };
};

/** A workspace of its own and a client with `scopes` in it. */
async function tenant(name: string, scopes = ['jobs:read', 'jobs:write', 'audit:read', 'queues:admin']) {
  const ws = await admin.admin.createWorkspace(name, { rateLimitPerMinute: 100_000 });
  const { apiKey } = await admin.admin.createApiKey({ workspaceId: ws.id, scopes });
  return { ws, apiKey, client: p.client({ apiKey }) };
}

t.test('strings that look like SQL are stored verbatim or refused as invalid, and harm nothing', async (t) => {
  const { ws, client } = await tenant('sql');
  const job = await client.submitAndWait({
    type: 'echo', input: { q: evil, "k'; DELETE FROM audit_log; --": evil }, idempotencyKey: evil,
    labels: { team: "a' OR '1'='1" },
  }, { timeoutMs: 20_000 });
  t.same(job.output, { q: evil, "k'; DELETE FROM audit_log; --": evil }, 'input and output verbatim');
  t.equal(job.idempotencyKey, evil);
  t.same(job.labels, { team: "a' OR '1'='1" });
  t.equal((await client.submit({ type: 'echo', idempotencyKey: evil })).id, job.id, 'the SQL-looking idempotency key still deduplicates');
  const { key } = await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read'], name: evil });
  t.equal(key.name, evil, 'a key name verbatim');
  await t.rejects(client.cancel(job.id, evil), FailedPreconditionError, 'a finished job cannot be cancelled, whatever the reason says');
  const before = await tablesIntact();

  await t.rejects(admin.admin.createWorkspace(evil), InvalidArgumentError, 'a workspace name: invalid');
  await t.rejects(admin.admin.updatePolicy(ws.id, { allowedJobTypes: [evil] }), InvalidArgumentError, 'an allowed job type: invalid');
  await t.rejects(client.submit({ type: evil }), InvalidArgumentError, 'a job type: not allowed');
  await t.rejects(client.submit({ type: 'echo', queue: evil }), InvalidArgumentError, 'a queue name: invalid');
  await t.rejects(client.get(evil), InvalidArgumentError, 'a job id: invalid');
  await t.rejects(client.retry(evil), InvalidArgumentError, 'a job id to retry: invalid');
  await t.rejects(client.listPage({ pageToken: evil }), InvalidArgumentError, 'a page token: invalid');
  await t.rejects(client.listPage({ pageToken: Buffer.from(evil).toString('base64url') }), InvalidArgumentError, 'an encoded one too');
  t.same((await client.listPage({ queue: evil })).jobs, [], 'ListJobs by an SQL-looking queue: none');
  t.same((await client.listPage({ type: evil })).jobs, [], 'by an SQL-looking type: none');
  const filtered = [];
  for await (const e of client.admin.auditEvents({ action: evil, actor: evil, resource: evil })) filtered.push(e);
  t.same(filtered, [], 'audit filters: nothing matches');
  const byActor = [];
  for await (const e of admin.admin.auditEvents({ workspaceId: evil, resource: "job/' OR 1=1 --" })) byActor.push(e);
  t.same(byActor, [], 'an admin naming an SQL-looking workspace: nothing');
  await t.rejects(client.admin.auditEvents({ pageSize: 1, outcome: evil as never }).next(), InvalidArgumentError, 'an outcome: invalid');
  await t.rejects(client.queues.clear(evil), InvalidArgumentError, 'ClearQueue of an SQL-looking queue: invalid');

  const waiting = await client.submit({ type: 'sleep', queue: 'sqlq', runAt: new Date(Date.now() + 3_600_000) });
  t.equal(await client.queues.clear('sqlq', { reason: evil }), 1, 'ClearQueue with an SQL-looking reason');
  const cleared = await client.get(waiting.id);
  t.equal(cleared.state, JobState.JOB_STATE_CANCELLED);
  t.equal(cleared.error?.message, evil, 'the reason stored verbatim');
  const after = await tablesIntact();
  t.equal(after.workspaces, before.workspaces, 'no workspace made or lost');
  t.equal(after.keys, before.keys, 'no key made or lost');
  t.equal(after.jobs, before.jobs + 1, 'the jobs table holds every job, and only the one added');
  t.ok(after.audit > before.audit, 'the audit log grew, and was not emptied');
});

t.test('idempotency: 100 racing submits make one job, each workspace has its own keys, and the window ends', async (t) => {
  const { ws, apiKey } = await tenant('idem-a');
  const clients = p.jobAddrs.map((address) => p.client({ address, apiKey }));
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) =>
    clients[i % 2]!.submit({ type: 'echo', input: { i }, idempotencyKey: 'once' })));
  t.equal(new Set(results.map((r) => r.id)).size, 1, 'one job id for all');
  t.equal(results.filter((r) => !r.deduplicated).length, 1, 'one submit created it, the rest were deduplicated');
  const [{ n }] = await p.sql()`SELECT count(*)::int AS n FROM jobs WHERE workspace_id = ${ws.id}`;
  t.equal(n, 1, 'one row');

  const { client: b } = await tenant('idem-b');
  const inB = await b.submit({ type: 'echo', idempotencyKey: 'once' });
  t.not(inB.id, results[0]!.id, 'the same key in another workspace makes another job');
  t.equal(inB.deduplicated, false);

  // A job-service replica whose window is one second.
  const short = await p.spawn('job', { IDEMPOTENCY_WINDOW_MS: '1000' }, 'job-short-window');
  const viaShort = p.client({ address: `127.0.0.1:${short.grpc}`, apiKey: (await tenant('idem-c')).apiKey });
  const first = await viaShort.submit({ type: 'echo', idempotencyKey: 'brief' });
  const again = await viaShort.submit({ type: 'echo', idempotencyKey: 'brief' });
  if (Date.now() - first.createdAt!.getTime() < 1_000) t.equal(again.id, first.id, 'within the window: the first job');
  const later = await waitFor(async () => {
    const r = await viaShort.submit({ type: 'echo', idempotencyKey: 'brief' });
    return r.id !== first.id ? r : undefined;
  }, 10_000, 'a new job once the window has passed', 200);
  t.ok(Date.now() - first.createdAt!.getTime() >= 1_000, 'only after the window');
  t.equal(later.deduplicated, false, 'a new job, not a duplicate');
  t.equal((await viaShort.submit({ type: 'echo', idempotencyKey: 'brief' })).id, later.id, 'which the key now names');
});

t.test('calls without a usable credential, or with hostile metadata, are refused cleanly', async (t) => {
  const long = new AijobClient({ address: p.jobAddr, apiKey: 'aijob_' + 'x'.repeat(10_000) });
  t.teardown(() => long.close());
  await t.rejects(long.listPage({}), UnauthenticatedError, '10 000-character authorization');
  const http2 = await import('node:http2');
  const session = http2.connect(`http://${p.jobAddr}`);
  t.teardown(() => session.close());
  const status = await new Promise<string>((resolve, reject) => {
    const req = session.request({
      ':method': 'POST', ':path': '/aijob.v1.JobService/ListJobs', 'content-type': 'application/grpc', te: 'trailers',
      authorization: 'Bearer \u00ff\u00fe\u00e9\u0080\u0081', 'x-request-id': '\u00ff'.repeat(10_000),
    });
    req.on('response', (h) => { if (h['grpc-status']) resolve(String(h['grpc-status'])); });
    req.on('trailers', (h) => resolve(String(h['grpc-status'])));
    req.on('error', reject);
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  t.equal(status, '16', 'non-UTF-8 authorization is UNAUTHENTICATED');
  const rows = await waitFor(async () => {
    const r = await p.sql()`SELECT actor FROM audit_log WHERE outcome = 'denied' AND resource = 'aijob.v1.JobService/ListJobs'`;
    return r.length >= 2 ? r : undefined;
  }, 10_000, 'audit rows');
  t.ok(rows.every((r) => String(r['actor']).startsWith('anonymous')), 'refusals audited as anonymous');
});
