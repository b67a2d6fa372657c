import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { InvalidArgumentError, ResourceExhaustedError, type AuditEvent } from '@aijob/sdk';
import { repoRoot } from '../helpers/processes.js';
import { startPlatform, waitFor } from '../helpers/platform.js';

/** Waits until the current 6-second rate slot has at least `ms` left, so a burst stays in one slot. */
async function awayFromSlotEdge(ms: number): Promise<void> {
  await waitFor(() => 6_000 - (Date.now() % 6_000) > ms, 7_000, 'room in the current rate slot', 20);
}

/** Two job replicas, no workers (no announced job types), a narrow default list of job types. */
const p = await startPlatform(t, { workers: 0, jobReplicas: 2, serviceEnv: { job: { ALLOWED_JOB_TYPES_DEFAULT: 'echo,sleep,fail' } } });
const admin = p.client();
const home = await admin.admin.getWorkspace();

t.test('two job-service replicas together admit no more than the workspace rate limit', async (t) => {
  const ws = await admin.admin.createWorkspace('limited', { rateLimitPerMinute: 60 });
  const { apiKey } = await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read', 'jobs:write'] });
  const replicas = [p.client({ apiKey, address: p.jobAddrs[0] }), p.client({ apiKey, address: p.jobAddrs[1] })];
  await awayFromSlotEdge(3_000);
  const outcomes = await Promise.all(Array.from({ length: 120 }, (_, i) =>
    replicas[i % 2]!.listPage({ pageSize: 1 }).then(() => 'ok', (e: unknown) => e)));
  const ok = outcomes.filter((o) => o === 'ok').length;
  t.ok(ok <= 60, `admitted ${ok}, no more than the limit of 60`);
  t.ok(ok >= 54, `admitted ${ok}, within 10% of the limit`);
  const refused = outcomes.filter((o) => o !== 'ok') as ResourceExhaustedError[];
  t.ok(refused.length > 0 && refused.every((e) => e instanceof ResourceExhaustedError), 'the rest are RESOURCE_EXHAUSTED');
  // The burst's slot leaves the sliding window 66 s after it began.
  t.ok(refused[0]!.retryDelayMs! > 54_000 && refused[0]!.retryDelayMs! <= 66_000, `with RetryInfo (${refused[0]!.retryDelayMs} ms)`);
  t.equal(refused[0]!.reason, 'RATE_LIMITED');
  // Another workspace is not affected.
  await t.resolves(admin.listPage({}), 'other workspaces keep going');
  // A refused submit is a denied mutating call: audited.
  await t.rejects(replicas[0]!.submit({ type: 'echo' }), ResourceExhaustedError);
  await waitFor(async () => (await p.sql()`SELECT 1 FROM audit_log WHERE workspace_id = ${ws.id}
    AND action = 'rpc.SubmitJob' AND outcome = 'denied'`).length === 1, 10_000, 'the refused submit audited');
});

t.test('allowed job types: ALLOWED_JOB_TYPES_DEFAULT, narrowed by a workspace policy, enforced at submit', async (t) => {
  const ws = await admin.admin.createWorkspace('typed', { rateLimitPerMinute: 100_000 });
  const c = p.client({ apiKey: (await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read', 'jobs:write'] })).apiKey });
  await t.resolves(c.submit({ type: 'fail' }), 'a type of the default list');
  const err = await c.submit({ type: 'llm.chat' }).catch((e: unknown) => e);
  t.type(err, InvalidArgumentError, 'a type outside it (llm.chat is not in this platform\'s list)');
  t.match((err as Error).message, /job type "llm.chat" is not allowed/);

  await admin.admin.updatePolicy(ws.id, { allowedJobTypes: ['sleep', 'llm.chat'] });
  t.same((await c.admin.getWorkspace()).policy?.allowedJobTypes, ['sleep', 'llm.chat'], 'the policy as set');
  await waitFor(() => c.submit({ type: 'echo' }).then(() => false, (e: unknown) => e instanceof InvalidArgumentError), 5_000,
    'the policy to reach the job service');
  await t.resolves(c.submit({ type: 'sleep', input: { ms: 1 } }), 'a type both lists allow');
  await t.rejects(c.submit({ type: 'llm.chat' }), InvalidArgumentError, 'a policy narrows the default list, never widens it');
  await t.rejects(c.submitMany([{ type: 'sleep' }, { type: 'fail' }]), InvalidArgumentError, 'in batches too');

  await admin.admin.updatePolicy(ws.id, { allowedJobTypes: [] });
  await waitFor(() => c.submit({ type: 'echo' }).then(() => true, () => false), 5_000, 'the default list to apply again');
});

t.test('max pending per workspace and the platform backpressure answer RESOURCE_EXHAUSTED', async (t) => {
  const p = await startPlatform(t, { workers: 0, serviceEnv: { job: { MAX_PENDING: '8' } } });
  const admin = p.client();
  const ws = await admin.admin.createWorkspace('small', { maxPending: 3 });
  const small = p.client({ apiKey: (await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:write', 'jobs:read'] })).apiKey });
  for (let i = 0; i < 3; i++) await small.submit({ type: 'sleep', input: { ms: 1 } });
  const err = await small.submit({ type: 'echo' }).catch((e: unknown) => e) as ResourceExhaustedError;
  t.type(err, ResourceExhaustedError, 'the workspace limit');
  t.equal(err.reason, 'WORKSPACE_MAX_PENDING');
  t.ok(err.retryDelayMs! > 0, 'with a retry delay');

  await admin.submitMany(Array.from({ length: 5 }, () => ({ type: 'echo' })));
  const pressure = await waitFor(() => admin.submit({ type: 'echo' }).then(() => undefined, (e: unknown) => e), 5_000,
    'backpressure') as ResourceExhaustedError;
  t.type(pressure, ResourceExhaustedError, 'past MAX_PENDING');
  t.equal(pressure.reason, 'BACKPRESSURE');
  t.ok(pressure.retryDelayMs! > 0);
});

t.test('the audit log lists with filters and paging, and old rows export to JSON Lines then go', async (t) => {
  const jobs = await admin.submitMany(Array.from({ length: 5 }, (_, i) => ({ type: 'sleep', input: { ms: i } })));
  await admin.cancel(jobs[0]!.id, 'testing');
  const { key } = await admin.admin.createApiKey({ scopes: ['audit:read'] });
  await admin.admin.revokeApiKey(key.id);

  const all: AuditEvent[] = [];
  for await (const e of admin.admin.auditEvents({ pageSize: 2 })) all.push(e);
  t.ok(all.length >= 8, `pages through all ${all.length} events`);
  t.ok(all.every((e, i) => i === 0 || e.id < all[i - 1]!.id), 'newest first');
  const cancels = [];
  for await (const e of admin.admin.auditEvents({ action: 'job.cancel' })) cancels.push(e);
  t.equal(cancels.length, 1);
  t.equal(cancels[0]!.resource, `job/${jobs[0]!.id}`);
  t.equal(cancels[0]!.actor, 'key_bootstrap');
  t.equal(cancels[0]!.outcome, 'allowed');
  const keyEvents = [];
  for await (const e of admin.admin.auditEvents({ resource: `key/${key.id}` })) keyEvents.push(e.action);
  t.same(keyEvents.sort(), ['key.create', 'key.revoke']);

  // Age some rows, then archive everything older than 90 days.
  await p.sql()`UPDATE audit_log SET at = now() - interval '100 days' WHERE action = 'job.submit' AND workspace_id = ${home.id}`;
  const dir = mkdtempSync(join(tmpdir(), 'aijob-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.jsonl');
  const { stdout } = await promisify(execFile)(process.execPath, ['services/job/dist/audit-archive.js',
    '--older-than-days', '90', '--out', file], { cwd: repoRoot, env: { ...process.env, DATABASE_URL: p.dbUrl, LOG_LEVEL: 'silent' } });
  t.match(JSON.parse(stdout), { exported: 5, deleted: 5 });
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; resource: string });
  t.equal(lines.length, 5, 'five JSON lines');
  t.ok(lines.every((l) => l.action === 'job.submit'), 'only the old rows');
  const [{ n }] = await p.sql()`SELECT count(*)::int AS n FROM audit_log WHERE action = 'job.submit' AND workspace_id = ${home.id}`;
  t.equal(n, 0, 'exported rows deleted');
  const [{ m }] = await p.sql()`SELECT count(*)::int AS m FROM audit_log`;
  t.ok(m >= 3, 'newer rows kept');
});
