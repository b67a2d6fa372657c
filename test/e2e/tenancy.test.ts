import t from 'tap';
import {
  AijobClient, FailedPreconditionError, JobState, NotFoundError, PermissionDeniedError, UnauthenticatedError,
} from '@aijob/sdk';
import { startPlatform, waitFor } from '../helpers/platform.js';

t.test('workspaces are isolated: another workspace\'s job is NOT_FOUND, and probing it is audited', async (t) => {
  const p = await startPlatform(t);
  const admin = p.client();
  const ws = await admin.admin.createWorkspace('team-a', { rateLimitPerMinute: 10_000 });
  t.match(ws.id, /^ws_/);
  t.equal(ws.policy?.rateLimitPerMinute, 10_000);
  const { apiKey, key } = await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read', 'jobs:write'], name: 'ci' });
  t.match(apiKey, new RegExp(`^aijob_${key.id.slice(4)}_`), 'the key shows its id');
  const teamA = p.client({ apiKey });

  const own = await teamA.submitAndWait({ type: 'echo', input: { mine: true } }, { timeoutMs: 20_000 });
  t.equal(own.state, JobState.JOB_STATE_SUCCEEDED, 'the new key submits and reads its own job');
  t.equal(own.workspaceId, ws.id);

  const other = await admin.submit({ type: 'sleep', input: { ms: 60_000 } });
  await t.rejects(teamA.get(other.id), NotFoundError, 'Get');
  await t.rejects(teamA.cancel(other.id), NotFoundError, 'Cancel');
  await t.rejects(teamA.retry(other.id), NotFoundError, 'Retry');
  await t.rejects((async () => { for await (const _ of teamA.watch(other.id)) void _; })(), NotFoundError, 'Watch');
  const listed = [];
  for await (const j of teamA.list()) listed.push(j.id);
  t.same(listed, [own.id], 'List shows only its own jobs');
  t.equal((await admin.get(other.id)).state !== JobState.JOB_STATE_CANCELLED, true, 'the probed job is untouched');

  const probes = await waitFor(async () => {
    const rows = await p.sql()`SELECT action, outcome, actor FROM audit_log
      WHERE workspace_id = ${ws.id} AND outcome = 'denied' AND resource = ${`job/${other.id}`} ORDER BY id`;
    return rows.length >= 4 ? rows : undefined;
  }, 10_000, 'audit rows of the probes');
  t.same(probes.map((r) => r['action']).sort(), ['job.cancel', 'job.get', 'job.retry', 'job.watch']);
  t.ok(probes.every((r) => r['actor'] === key.id), 'the actor is the probing key');

  // Keys of another workspace are invisible too.
  const keysAdmin = p.client({ apiKey: (await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['keys:admin'] })).apiKey });
  const visible = await keysAdmin.admin.listApiKeys();
  t.ok(visible.every((k) => k.workspaceId === ws.id), 'ListApiKeys shows only its workspace');
  await t.rejects(keysAdmin.admin.listApiKeys({ workspaceId: (await admin.admin.getWorkspace()).id }), NotFoundError,
    'naming another workspace needs admin');
  await t.rejects(keysAdmin.admin.revokeApiKey('key_bootstrap'), NotFoundError, 'another workspace\'s key is NOT_FOUND');
});

t.test('scopes are enforced per RPC and refusals leave audit rows', async (t) => {
  const p = await startPlatform(t, { workers: 0 });
  const admin = p.client();
  const reader = p.client({ apiKey: (await admin.admin.createApiKey({ scopes: ['jobs:read'] })).apiKey });
  const err = await reader.submit({ type: 'echo' }).catch((e: unknown) => e);
  t.type(err, PermissionDeniedError, 'jobs:read cannot submit');
  t.match((err as Error).message, /jobs:write/);
  await t.resolves(reader.listPage({}), 'jobs:read can list');
  await t.rejects(reader.admin.createApiKey({ scopes: ['jobs:read'] }), PermissionDeniedError, 'no keys:admin');

  const keyAdmin = p.client({ apiKey: (await admin.admin.createApiKey({ scopes: ['keys:admin', 'jobs:read'] })).apiKey });
  await t.rejects(keyAdmin.admin.createApiKey({ scopes: ['admin'] }), PermissionDeniedError, 'cannot grant a scope it lacks');
  await t.resolves(keyAdmin.admin.createApiKey({ scopes: ['jobs:read'] }), 'can grant a scope it holds');
  await t.rejects(keyAdmin.admin.updatePolicy((await admin.admin.getWorkspace()).id, { rateLimitPerMinute: 1 }),
    PermissionDeniedError, 'policy changes need admin');

  const denied = await waitFor(async () => {
    const rows = await p.sql()`SELECT action, outcome FROM audit_log WHERE outcome = 'denied' ORDER BY id`;
    return rows.length >= 4 ? rows : undefined;
  }, 10_000, 'denied audit rows');
  const actions = denied.map((r) => r['action']);
  for (const a of ['rpc.SubmitJob', 'rpc.CreateApiKey', 'rpc.UpdateWorkspacePolicy']) t.ok(actions.includes(a), `${a} refusal audited`);
});

t.test('a revoked key stops working within 5 seconds, tokens issued for it too', async (t) => {
  const p = await startPlatform(t, { workers: 0 });
  const admin = p.client();
  const { apiKey, key } = await admin.admin.createApiKey({ scopes: ['jobs:read', 'jobs:write'] });
  const user = p.client({ apiKey });
  const token = (await admin.admin.issueToken(apiKey)).token;
  const viaToken = p.client({ token });
  await user.listPage({});
  await viaToken.listPage({}); // both now sit in the job service's auth cache
  const revokedAt = Date.now();
  await admin.admin.revokeApiKey(key.id);
  await waitFor(() => user.listPage({}).then(() => false, (e: unknown) => e instanceof UnauthenticatedError), 5_000, 'key refused');
  await waitFor(() => viaToken.listPage({}).then(() => false, (e: unknown) => e instanceof UnauthenticatedError), 5_000, 'token refused');
  t.ok(Date.now() - revokedAt < 5_000, `refused after ${Date.now() - revokedAt} ms`);
  await t.rejects(admin.admin.issueToken(apiKey), UnauthenticatedError, 'no new tokens for a revoked key');
  const audit = await p.sql()`SELECT outcome FROM audit_log WHERE action = 'key.revoke' AND resource = ${`key/${key.id}`}`;
  t.same(audit.map((r) => r['outcome']), ['allowed'], 'revocation audited');
});

t.test('strings that look like SQL are stored verbatim and harm nothing', async (t) => {
  const p = await startPlatform(t);
  const admin = p.client();
  const evil = "x'); DROP TABLE jobs; --";
  const job = await admin.submitAndWait({
    type: 'echo', input: { q: evil, "k'; DELETE FROM audit_log; --": evil }, idempotencyKey: evil,
    labels: { team: "a' OR '1'='1" },
  }, { timeoutMs: 20_000 });
  t.same(job.output, { q: evil, "k'; DELETE FROM audit_log; --": evil }, 'input and output verbatim');
  t.equal(job.idempotencyKey, evil);
  t.same(job.labels, { team: "a' OR '1'='1" });
  const again = await admin.submit({ type: 'echo', idempotencyKey: evil });
  t.equal(again.id, job.id, 'the SQL-looking idempotency key still deduplicates');
  const { key } = await admin.admin.createApiKey({ scopes: ['jobs:read'], name: evil });
  t.equal(key.name, evil);
  await t.rejects(admin.cancel(job.id, evil), FailedPreconditionError, 'a finished job cannot be cancelled');
  const [{ n }] = await p.sql()`SELECT count(*)::int AS n FROM jobs`;
  t.equal(n, 1, 'the jobs table is intact');
});

t.test('100 concurrent submits with one idempotency key create exactly one job', async (t) => {
  const p = await startPlatform(t, { workers: 0, jobReplicas: 2 });
  const clients = [p.client({ address: p.jobAddrs[0] }), p.client({ address: p.jobAddrs[1] })];
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) =>
    clients[i % 2]!.submit({ type: 'echo', input: { i }, idempotencyKey: 'once' })));
  const ids = new Set(results.map((r) => r.id));
  t.equal(ids.size, 1, 'one job id for all');
  t.equal(results.filter((r) => !r.deduplicated).length, 1, 'one submit created it, the rest were deduplicated');
  const [{ n }] = await p.sql()`SELECT count(*)::int AS n FROM jobs`;
  t.equal(n, 1, 'one row');
});

t.test('calls without a usable credential, or with hostile metadata, are refused cleanly', async (t) => {
  const p = await startPlatform(t, { workers: 0 });
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
    const r = await p.sql()`SELECT actor FROM audit_log WHERE outcome = 'denied'`;
    return r.length >= 2 ? r : undefined;
  }, 10_000, 'audit rows');
  t.ok(rows.every((r) => String(r['actor']).startsWith('anonymous')), 'refusals audited as anonymous');
});
