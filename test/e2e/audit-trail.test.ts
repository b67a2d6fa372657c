// Every mutating call, allowed or refused, leaves an audit row carrying its trace id; and
// queues are shared by every workspace: their settings, pause and resume are operator
// actions (queues:admin, granted only by an admin), ClearQueue touches the caller's own
// jobs, tenants see their own counts.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import {
  AuthServiceClient, ClearQueueRequest, CreateApiKeyRequest, JobState, PauseQueueRequest, PutQueueRequest, ResumeQueueRequest,
  RetryJobRequest, RevokeApiKeyRequest, RotateSigningKeyRequest, UpdateWorkspacePolicyRequest,
} from '@aijob/contracts';
import { PermissionDeniedError } from '@aijob/sdk';
import { startPlatform, waitFor } from '../helpers/platform.js';
import { auditOf, codeOf, traced, unary } from '../helpers/traced.js';

const p = await startPlatform(t, { workers: 0 });
const admin = p.client();
const ws = await admin.admin.createWorkspace('team-q', { rateLimitPerMinute: 100_000 });
const keyOf = async (scopes: string[], creator = admin) => {
  const { apiKey, key } = await creator.admin.createApiKey({ workspaceId: ws.id, scopes });
  return { client: p.client({ apiKey }), id: key.id };
};
const tenant = await keyOf(['jobs:read', 'jobs:write', 'keys:admin']);
const operator = await keyOf(['queues:admin', 'keys:admin', 'jobs:read']);

t.test('only an admin grants queues:admin: a workspace\'s keys:admin cannot, even holding it', async (t) => {
  for (const [who, c] of [['keys:admin', tenant.client], ['keys:admin with queues:admin', operator.client]] as const) {
    const err = await c.admin.createApiKey({ scopes: ['queues:admin'] }).catch((e: unknown) => e);
    t.type(err, PermissionDeniedError, `${who} cannot mint queues:admin`);
    t.match((err as Error).message, /only an admin may grant queues:admin/);
  }
  await t.resolves(operator.client.admin.createApiKey({ scopes: ['jobs:read'] }), 'it still grants the scopes it holds');
  const rows = await waitFor(async () => {
    const r = await p.sql()`SELECT actor FROM audit_log WHERE action = 'rpc.CreateApiKey' AND workspace_id = ${ws.id} AND outcome = 'denied'`;
    return r.length >= 2 ? r : undefined;
  }, 10_000, 'the refusals\' audit rows');
  t.same(rows.map((r) => r['actor']).sort(), [tenant.id, operator.id].sort(), 'both refusals audited');
});

t.test('tenants see their own workspace\'s counts; admins see every workspace\'s and the leader', async (t) => {
  await admin.submitMany(Array.from({ length: 3 }, () => ({ type: 'echo', queue: 'shared' })));
  await tenant.client.submitMany(Array.from({ length: 2 }, () => ({ type: 'echo', queue: 'shared' })));
  await waitFor(() => admin.queues.get('shared').then((q) => q.stats?.pending === 5, () => false), 15_000, 'the scheduler to know queue shared');
  const mine = (await tenant.client.queues.list()).find((q) => q.name === 'shared');
  t.equal(mine?.stats?.pending, 2, 'ListQueues: the tenant sees its 2 pending jobs, not the admin\'s 3');
  t.equal((await tenant.client.queues.get('shared')).stats?.pending, 2, 'GetQueue likewise');
  const stats = await tenant.client.queues.clusterStats();
  t.equal(stats.totalPending, 2, 'GetClusterStats: its own total');
  t.same(stats.queueDepth, { shared: 2 }, 'and its own depth per queue');
  t.equal(stats.leader, '', 'not which pod leads');
  t.equal((await admin.queues.get('shared')).stats?.pending, 5, 'the admin sees all 5');
  const all = await admin.queues.clusterStats();
  t.equal(all.totalPending, 5);
  t.not(all.leader, '', 'and the leader');
});

t.test('queue changes, allowed or refused, leave audit rows with their trace ids', async (t) => {
  const call = async (c: typeof admin, method: string, req: unknown) => {
    const { traceId, md } = await traced(c);
    return { traceId, code: await codeOf(unary(c.queuesClient, method, req, md)) };
  };
  // Without queues:admin: refused by the access check.
  for (const [method, req] of [
    ['pauseQueue', PauseQueueRequest.fromPartial({ name: 'shared' })],
    ['resumeQueue', ResumeQueueRequest.fromPartial({ name: 'shared' })],
    ['clearQueue', ClearQueueRequest.fromPartial({ name: 'shared' })],
    ['putQueue', PutQueueRequest.fromPartial({ name: 'shared', maxConcurrency: 1 })],
  ] as const) {
    const r = await call(tenant.client, method, req);
    t.equal(r.code, grpc.status.PERMISSION_DENIED, `${method} without queues:admin: PERMISSION_DENIED`);
    const [row] = await auditOf(p.sql(), r.traceId);
    t.match(row, { actor: tenant.id, workspace_id: ws.id, outcome: 'denied', reason: /needs scope queues:admin/ }, `${method} refusal audited`);
  }
  // A queue that does not exist.
  for (const method of ['pauseQueue', 'resumeQueue'] as const) {
    const r = await call(operator.client, method, PauseQueueRequest.fromPartial({ name: 'no-such-queue' }));
    t.equal(r.code, grpc.status.NOT_FOUND, `${method} of a missing queue: NOT_FOUND`);
    const [row] = await auditOf(p.sql(), r.traceId);
    t.match(row, { actor: operator.id, resource: 'queue/no-such-queue', outcome: 'denied' }, `${method} of a missing queue audited`);
  }
  // Allowed: pause, resume, and clearing the operator's own workspace's jobs only.
  for (const [method, action] of [['pauseQueue', 'queue.pause'], ['resumeQueue', 'queue.resume']] as const) {
    const r = await call(operator.client, method, PauseQueueRequest.fromPartial({ name: 'shared' }));
    t.equal(r.code, grpc.status.OK, `${method} with queues:admin`);
    t.match((await auditOf(p.sql(), r.traceId))[0], { action, outcome: 'allowed', resource: 'queue/shared' });
  }
  const cleared = await call(operator.client, 'clearQueue', ClearQueueRequest.fromPartial({ name: 'shared', reason: 'tidy' }));
  t.equal(cleared.code, grpc.status.OK, 'ClearQueue with queues:admin');
  t.match((await auditOf(p.sql(), cleared.traceId))[0], {
    actor: operator.id, workspace_id: ws.id, action: 'queue.clear', outcome: 'allowed', reason: '2 jobs cancelled',
  }, 'ClearQueue audited: its own workspace\'s 2 jobs');
  const left = await p.sql()`SELECT workspace_id, state FROM jobs WHERE queue = 'shared' ORDER BY workspace_id`;
  t.same(left.filter((j) => j['state'] === 'QUEUED').map((j) => j['workspace_id']),
    Array(3).fill((await admin.admin.getWorkspace()).id), 'the admin\'s 3 jobs are untouched');
  const failed = await call(operator.client, 'clearQueue', ClearQueueRequest.fromPartial({ name: 'shared', states: [JobState.JOB_STATE_RUNNING] }));
  t.equal(failed.code, grpc.status.FAILED_PRECONDITION, 'ClearQueue of running jobs is refused');
  t.match((await auditOf(p.sql(), failed.traceId))[0], { action: 'rpc.ClearQueue', outcome: 'failed' }, 'and audited');
});

t.test('auth and job changes leave audit rows with their trace ids, refused ones too', async (t) => {
  const auth = new AuthServiceClient(p.authAddr, grpc.credentials.createInsecure());
  t.teardown(() => auth.close());
  const { OK, NOT_FOUND, PERMISSION_DENIED } = grpc.status;
  /** Calls `method` as `c`, checks the status, returns the call's audit row. */
  const audited = async (c: typeof admin, client: grpc.Client, method: string, req: unknown, code: number) => {
    const { traceId, md } = await traced(c);
    t.equal(await codeOf(unary(client, method, req, md)), code, `${method}: ${grpc.status[code]}`);
    const [row] = await auditOf(p.sql(), traceId);
    t.equal(row!.trace_id, traceId, 'the row carries the call\'s trace id');
    return row!;
  };

  const job = await tenant.client.submit({ type: 'echo', queue: 'retry-q' });
  await tenant.client.cancel(job.id);
  t.match(await audited(tenant.client, tenant.client.jobs, 'retryJob', RetryJobRequest.fromPartial({ jobId: job.id }), OK),
    { actor: tenant.id, workspace_id: ws.id, action: 'job.retry', resource: `job/${job.id}`, outcome: 'allowed' }, 'RetryJob allowed');

  const policy = (workspaceId: string) => UpdateWorkspacePolicyRequest.fromPartial({ workspaceId, maxPending: 1_000 });
  t.match(await audited(admin, auth, 'updateWorkspacePolicy', policy(ws.id), OK),
    { actor: 'key_bootstrap', workspace_id: ws.id, action: 'workspace.policy_update', resource: `workspace/${ws.id}`, outcome: 'allowed' },
    'a policy change allowed');
  t.match(await audited(admin, auth, 'updateWorkspacePolicy', policy('ws_nosuchone'), NOT_FOUND),
    { action: 'rpc.UpdateWorkspacePolicy', resource: 'workspace/ws_nosuchone', outcome: 'denied' }, 'of a missing workspace: refused, audited');
  t.match(await audited(tenant.client, auth, 'updateWorkspacePolicy', policy(ws.id), PERMISSION_DENIED),
    { actor: tenant.id, action: 'rpc.UpdateWorkspacePolicy', outcome: 'denied', reason: /needs scope admin/ }, 'by a tenant: refused, audited');

  // Another workspace's key and a missing one look alike, in the answer and in the audit row.
  const revoke = (keyId: string) => RevokeApiKeyRequest.fromPartial({ keyId });
  const others = await audited(tenant.client, auth, 'revokeApiKey', revoke('key_bootstrap'), NOT_FOUND);
  const missing = await audited(tenant.client, auth, 'revokeApiKey', revoke('key_nosuchkey0'), NOT_FOUND);
  t.match(others, { actor: tenant.id, workspace_id: ws.id, action: 'rpc.RevokeApiKey', resource: 'key/key_bootstrap', outcome: 'denied' },
    'RevokeApiKey of another workspace\'s key: refused, audited');
  t.match(missing, { resource: 'key/key_nosuchkey0', outcome: 'denied' }, 'of a missing key too');
  t.equal(others.reason.replace('key_bootstrap', 'K'), missing.reason.replace('key_nosuchkey0', 'K'), 'with the same reason');
  await t.resolves(admin.listPage({}), 'the other workspace\'s key still works');
  const reader = await keyOf(['jobs:read']);
  t.match(await audited(reader.client, auth, 'revokeApiKey', revoke(tenant.id), PERMISSION_DENIED),
    { actor: reader.id, action: 'rpc.RevokeApiKey', outcome: 'denied', reason: /needs scope keys:admin/ }, 'RevokeApiKey without keys:admin');
  t.match(await audited(tenant.client, auth, 'createApiKey',
    CreateApiKeyRequest.fromPartial({ workspaceId: 'ws_someoneelse', scopes: ['jobs:read'] }), NOT_FOUND),
  { action: 'rpc.CreateApiKey', resource: 'workspace/ws_someoneelse', outcome: 'denied' }, 'a key for another workspace');

  t.match(await audited(tenant.client, auth, 'rotateSigningKey', RotateSigningKeyRequest.fromPartial({}), PERMISSION_DENIED),
    { actor: tenant.id, action: 'rpc.RotateSigningKey', outcome: 'denied', reason: /needs scope admin/ }, 'RotateSigningKey by a tenant');
});

t.test('usage:read, audit:read and queues:admin are each required, and granted they suffice', async (t) => {
  const reader = await keyOf(['jobs:read']);
  await t.rejects(reader.client.usage.report(), { name: 'PermissionDeniedError', message: /usage:read/ }, 'GetUsageReport needs usage:read');
  await t.rejects(reader.client.admin.auditEvents().next(), { name: 'PermissionDeniedError', message: /audit:read/ }, 'ListAuditEvents needs audit:read');
  await t.rejects(reader.client.queues.put('reader-q'), { name: 'PermissionDeniedError', message: /queues:admin/ }, 'PutQueue needs queues:admin');
  const granted = await keyOf(['usage:read', 'audit:read', 'queues:admin']);
  await t.resolves(granted.client.usage.report(), 'usage:read reads usage');
  const own = [];
  for await (const e of granted.client.admin.auditEvents({ limit: 50 })) own.push(e);
  t.ok(own.length > 0 && own.every((e) => e.workspaceId === ws.id), 'audit:read reads its own workspace\'s rows');
  await t.resolves(granted.client.queues.put('granted-q', { maxConcurrency: 2 }), 'queues:admin changes a queue');
});
