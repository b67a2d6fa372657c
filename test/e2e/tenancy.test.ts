// Workspaces are isolated, scopes enforced, and keys stop working on revocation or
// expiry within 5 seconds on every replica. One platform (two job replicas); each
// test has workspaces and keys of its own.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { AuthServiceClient, ListJobsRequest, ListWorkspacesRequest, type ListWorkspacesResponse } from '@aijob/contracts';
import {
  InvalidArgumentError, JobState, NotFoundError, PermissionDeniedError, UnauthenticatedError, type AijobClient,
} from '@aijob/sdk';
import { startPlatform, waitFor } from '../helpers/platform.js';
import { auditOf, codeOf, traced, unary } from '../helpers/traced.js';

const p = await startPlatform(t, { workers: 1, jobReplicas: 2 });
const admin = p.client();
const home = await admin.admin.getWorkspace();
const refused = (c: AijobClient, call: (c: AijobClient) => Promise<unknown> = (x) => x.listPage({})) =>
  call(c).then(() => false, (e: unknown) => e instanceof UnauthenticatedError);

t.test('workspaces are isolated: another workspace\'s job, key or audit row is NOT_FOUND, and probing is audited', async (t) => {
  const ws = await admin.admin.createWorkspace('team-a', { rateLimitPerMinute: 10_000 });
  t.match(ws.id, /^ws_/);
  t.equal(ws.policy?.rateLimitPerMinute, 10_000);
  const { apiKey, key } = await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read', 'jobs:write', 'audit:read'], name: 'ci' });
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

  // The probes are recorded for the owning workspace; the prober's own log only shows its
  // refused changes, worded as for a job that does not exist.
  const probes = await waitFor(async () => {
    const rows = await p.sql()`SELECT action, outcome, actor, reason FROM audit_log
      WHERE workspace_id = ${home.id} AND outcome = 'denied' AND resource = ${`job/${other.id}`} ORDER BY id`;
    return rows.length >= 4 ? rows : undefined;
  }, 10_000, 'audit rows of the probes');
  t.same(probes.map((r) => r['action']).sort(), ['job.cancel', 'job.get', 'job.retry', 'job.watch']);
  t.ok(probes.every((r) => r['actor'] === key.id && r['reason'] === `probe from workspace ${ws.id}`), 'the actor is the probing key');
  const ownRows = await waitFor(async () => {
    const rows = await p.sql()`SELECT action, reason FROM audit_log
      WHERE workspace_id = ${ws.id} AND outcome = 'denied' AND resource = ${`job/${other.id}`} ORDER BY id`;
    return rows.length >= 2 ? rows : undefined;
  }, 10_000, 'the prober\'s refused changes');
  t.same(ownRows.map((r) => r['action']).sort(), ['rpc.CancelJob', 'rpc.RetryJob']);
  t.ok(ownRows.every((r) => r['reason'] === `job ${other.id} not found`), 'worded as for a missing job');

  // Audit rows: its own only; naming another workspace is NOT_FOUND.
  await t.rejects(teamA.admin.auditEvents({ workspaceId: home.id }).next(), NotFoundError, 'ListAuditEvents of another workspace');
  const mine = [];
  for await (const e of teamA.admin.auditEvents({ limit: 100 })) mine.push(e);
  t.ok(mine.length >= 3 && mine.every((e) => e.workspaceId === ws.id), 'ListAuditEvents shows its own rows only');
  t.notOk(mine.some((e) => /probe/.test(e.reason)), 'and not the probes of the other workspace\'s job');

  // x-aijob-workspace: refused to a tenant (and audited), honoured for an admin.
  const asOther = await traced(teamA, { 'x-aijob-workspace': home.id });
  t.equal(await codeOf(unary(teamA.jobs, 'listJobs', ListJobsRequest.fromPartial({}), asOther.md)), grpc.status.PERMISSION_DENIED,
    'a tenant naming another workspace in x-aijob-workspace: PERMISSION_DENIED');
  t.match((await auditOf(p.sql(), asOther.traceId))[0], { actor: key.id, outcome: 'denied', reason: /only admin may act in another workspace/ });
  const asAdmin = await traced(admin, { 'x-aijob-workspace': ws.id });
  const seen = await unary<{ jobs: { id: string }[] }>(admin.jobs, 'listJobs', ListJobsRequest.fromPartial({}), asAdmin.md);
  t.same(seen.jobs.map((j) => j.id), [own.id], 'an admin naming it sees that workspace\'s jobs');

  // Keys of another workspace are invisible too.
  const keysAdmin = p.client({ apiKey: (await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['keys:admin'] })).apiKey });
  const visible = await keysAdmin.admin.listApiKeys();
  t.ok(visible.every((k) => k.workspaceId === ws.id), 'ListApiKeys shows only its workspace');
  await t.rejects(keysAdmin.admin.listApiKeys({ workspaceId: home.id }), NotFoundError, 'naming another workspace needs admin');
  await t.rejects(keysAdmin.admin.revokeApiKey('key_bootstrap'), NotFoundError, 'another workspace\'s key is NOT_FOUND');
  await t.rejects(teamA.admin.getWorkspace(home.id), NotFoundError, 'so is another workspace');
  t.equal((await admin.admin.getWorkspace(ws.id)).name, 'team-a', 'which an admin can read');
});

t.test('scopes are enforced per RPC and refusals leave audit rows', async (t) => {
  const r = await admin.admin.createApiKey({ scopes: ['jobs:read'] });
  const reader = p.client({ apiKey: r.apiKey });
  const err = await reader.submit({ type: 'echo' }).catch((e: unknown) => e);
  t.type(err, PermissionDeniedError, 'jobs:read cannot submit');
  t.match((err as Error).message, /jobs:write/);
  await t.resolves(reader.listPage({}), 'jobs:read can list');
  await t.rejects(reader.admin.createApiKey({ scopes: ['jobs:read'] }), PermissionDeniedError, 'no keys:admin');

  const k = await admin.admin.createApiKey({ scopes: ['keys:admin', 'jobs:read'] });
  const keyAdmin = p.client({ apiKey: k.apiKey });
  await t.rejects(keyAdmin.admin.createApiKey({ scopes: ['admin'] }), PermissionDeniedError, 'cannot grant a scope it lacks');
  await t.resolves(keyAdmin.admin.createApiKey({ scopes: ['jobs:read'] }), 'can grant a scope it holds');
  await t.rejects(keyAdmin.admin.updatePolicy(home.id, { rateLimitPerMinute: 1 }), PermissionDeniedError, 'policy changes need admin');

  const denied = await waitFor(async () => {
    const rows = await p.sql()`SELECT action FROM audit_log WHERE outcome = 'denied' AND actor IN (${r.key.id}, ${k.key.id})`;
    return rows.length >= 4 ? rows : undefined;
  }, 10_000, 'denied audit rows');
  const actions = denied.map((row) => row['action']);
  for (const a of ['rpc.SubmitJob', 'rpc.CreateApiKey', 'rpc.UpdateWorkspacePolicy']) t.ok(actions.includes(a), `${a} refusal audited`);
});

t.test('a revoked key stops working within 5 seconds on every job replica and the scheduler, tokens issued for it too', async (t) => {
  const { apiKey, key } = await admin.admin.createApiKey({ scopes: ['jobs:read', 'jobs:write'] });
  const token = (await admin.admin.issueToken(apiKey)).token;
  const users = [
    ...p.jobAddrs.flatMap((address) => [p.client({ apiKey, address }), p.client({ token, address })]),
  ];
  const queueUser = p.client({ apiKey });
  for (const u of users) await u.listPage({}); // now in each replica's auth cache
  await queueUser.queues.list();
  const revokedAt = Date.now();
  await admin.admin.revokeApiKey(key.id);
  const after = await Promise.all([
    ...users.map((u) => waitFor(() => refused(u), 5_000, 'key or token refused').then(() => Date.now() - revokedAt)),
    waitFor(() => refused(queueUser, (c) => c.queues.list()), 5_000, 'QueueService refusal').then(() => Date.now() - revokedAt),
  ]);
  for (const ms of after) t.ok(ms < 5_000, `refused after ${ms} ms`);
  await t.rejects(admin.admin.issueToken(apiKey), UnauthenticatedError, 'no new tokens for a revoked key');
  const audit = await p.sql()`SELECT outcome FROM audit_log WHERE action = 'key.revoke' AND resource = ${`key/${key.id}`}`;
  t.same(audit.map((r) => r['outcome']), ['allowed'], 'revocation audited');
  const refusals = await waitFor(async () => {
    const rows = await p.sql()`SELECT actor, resource FROM audit_log WHERE outcome = 'denied' AND reason = 'API key revoked'
      AND actor IN (${`anonymous (${key.id})`}, 'anonymous (token)')`;
    return rows.some((r) => r['resource'] === 'aijob.v1.QueueService/ListQueues') && rows.some((r) => r['actor'] === 'anonymous (token)')
      ? rows : undefined;
  }, 10_000, 'the refusals audited');
  t.ok(refusals.some((r) => r['resource'] === 'aijob.v1.JobService/ListJobs'), 'the revoked key\'s refusals are audited, on each service');
});

t.test('a key stops working within 5 seconds of its expiry, tokens issued for it too', async (t) => {
  await t.rejects(admin.admin.createApiKey({ scopes: ['jobs:read'], expiresAt: new Date(Date.now() - 1_000) }), InvalidArgumentError,
    'an expiry in the past is refused');
  const expiresAt = new Date(Date.now() + 3_000);
  const { apiKey, key } = await admin.admin.createApiKey({ scopes: ['jobs:read'], expiresAt });
  t.equal(key.expiresAt?.getTime(), expiresAt.getTime(), 'the key shows its expiry');
  const token = (await admin.admin.issueToken(apiKey)).token;
  const users = p.jobAddrs.flatMap((address) => [p.client({ apiKey, address }), p.client({ token, address })]);
  for (const u of users) await t.resolves(u.listPage({}), 'works before its expiry');
  t.ok(Date.now() < expiresAt.getTime(), 'checked before it expired');
  const after = await Promise.all(users.map((u) =>
    waitFor(() => refused(u), 10_000, 'the expired key refused').then(() => Date.now() - expiresAt.getTime())));
  for (const ms of after) t.ok(ms < 5_000, `refused ${ms} ms after it expired`);
  await t.rejects(admin.admin.issueToken(apiKey), { message: /expired/ }, 'no tokens for an expired key');
});

t.test('ListWorkspaces pages through every workspace, for admins only', async (t) => {
  for (let i = 0; i < 3; i++) await admin.admin.createWorkspace(`page-${i}`);
  const auth = new AuthServiceClient(p.authAddr, grpc.credentials.createInsecure());
  t.teardown(() => auth.close());
  const md = await admin.metadata();
  const ids: string[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await unary<ListWorkspacesResponse>(auth, 'listWorkspaces', ListWorkspacesRequest.fromPartial({ pageSize: 2, pageToken }), md);
    t.ok(page.workspaces.length <= 2, `page ${++pages} holds at most 2`);
    ids.push(...page.workspaces.map((w) => w.id));
    pageToken = page.nextPageToken;
  } while (pageToken);
  const [{ n }] = await p.sql()`SELECT count(*)::int AS n FROM workspaces`;
  t.equal(ids.length, n, `every one of the ${n} workspaces, over ${pages} pages`);
  t.equal(new Set(ids).size, ids.length, 'none twice');
  t.same([...ids].sort(), ids, 'in id order');
  const names: string[] = [];
  for await (const w of admin.admin.listWorkspaces()) names.push(w.name);
  t.ok(['page-0', 'page-1', 'page-2'].every((x) => names.includes(x)), 'the SDK iterates them all');
  await t.rejects(unary(auth, 'listWorkspaces', ListWorkspacesRequest.fromPartial({ pageSize: 5_000 }), md), { code: grpc.status.INVALID_ARGUMENT });
  const tenant = p.client({ apiKey: (await admin.admin.createApiKey({ scopes: ['jobs:read', 'keys:admin'] })).apiKey });
  await t.rejects(tenant.admin.listWorkspaces().next(), PermissionDeniedError, 'a tenant cannot list workspaces');
  t.equal((await tenant.admin.getWorkspace()).id, home.id, 'but reads its own');
});
