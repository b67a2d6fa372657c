// The store's repository functions against a real Postgres (a database of their own), for
// the behaviour the end-to-end tests do not reach: what a partial change keeps, what is
// written together or not at all, fencing of the leader lease, the archive's guard.
import t from 'tap';
import { randomBytes, randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { inArray, sql } from 'drizzle-orm';
import {
  acquireLease,
  audited,
  auditLog,
  auditLogBefore,
  createStore,
  credentialByHash,
  credentialById,
  deleteAuditLog,
  ensureQueues,
  findApiKey,
  hasActiveSigningKey,
  insertApiKey,
  insertSigningKey,
  insertWorkspace,
  installApiKey,
  jobs,
  leaseHolder,
  listApiKeys,
  listAuditLog,
  listQueues,
  lockedTransaction,
  putQueue,
  queueCounts,
  releaseLease,
  renewLease,
  revokeApiKey,
  rotateOutSigningKeys,
  runMigrations,
  signingKeysToSeal,
  unretiredSigningKeys,
  updateWorkspacePolicy,
  workspaceQueueCounts,
  type AuditRecord,
} from '@aijob/store';
import { PG_BASE, waitFor } from '../helpers/platform.js';

const dbName = `aijob_repo_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const url = `${PG_BASE}/${dbName}`;
await runMigrations(url);
const store = createStore(url, { max: 2 });
const db = store.db;
t.teardown(async () => {
  await store.close();
  const admin = postgres(`${PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
  await admin.unsafe(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).finally(() => admin.end({ timeout: 2 }));
});

const audit = (action: string, workspaceId = 'ws_a'): AuditRecord => ({
  actor: 'key_test',
  workspaceId,
  action,
  resource: `test/${action}`,
  outcome: 'allowed',
});

t.test('workspaces: a taken name, and a policy change keeps what it leaves unset', async (t) => {
  const ws = await insertWorkspace(db, {
    id: 'ws_a',
    name: 'alpha',
    rateLimitPerMinute: 50,
    allowedJobTypes: ['echo'],
    monthlyBudgetUsd: 5,
  });
  t.equal(ws?.rateLimitPerMinute, 50);
  t.equal(
    await insertWorkspace(db, { id: 'ws_other', name: 'alpha' }),
    undefined,
    'the name is taken: nothing inserted',
  );
  const kept = await updateWorkspacePolicy(db, 'ws_a', { maxPending: 7 });
  t.match(
    kept,
    { rateLimitPerMinute: 50, maxPending: 7, allowedJobTypes: ['echo'], monthlyBudgetUsd: 5 },
    'unset fields keep their value',
  );
  t.ok(kept!.updatedAt.getTime() >= ws!.updatedAt.getTime(), 'updated_at moves');
  const cleared = await updateWorkspacePolicy(db, 'ws_a', { allowedJobTypes: null, monthlyBudgetUsd: null });
  t.match(
    cleared,
    { rateLimitPerMinute: 50, maxPending: 7, allowedJobTypes: null, monthlyBudgetUsd: null },
    'null clears',
  );
  t.equal(await updateWorkspacePolicy(db, 'ws_missing', { maxPending: 1 }), undefined, 'a missing workspace');
});

t.test('audited: the change and its audit row are stored together or not at all', async (t) => {
  const before = (await listAuditLog(db, { workspaceId: 'ws_a', limit: 100 })).length;
  await insertWorkspace(db, { id: 'ws_b', name: 'beta' });
  await audited(db, audit('changed'), (tx) => updateWorkspacePolicy(tx, 'ws_b', { maxPending: 3 }));
  await audited(db, audit('missing'), (tx) => updateWorkspacePolicy(tx, 'ws_missing', { maxPending: 3 }));
  await t.rejects(
    audited(db, audit('failed'), async (tx) => {
      await updateWorkspacePolicy(tx, 'ws_b', { maxPending: 99 });
      throw new Error('the change fails after writing');
    }),
  );
  const rows = await listAuditLog(db, { workspaceId: 'ws_a', limit: 100 });
  t.same(
    rows.slice(0, rows.length - before).map((r) => r.action),
    ['changed'],
    'one row: none for a missing row, none for a failed change',
  );
  t.equal((await updateWorkspacePolicy(db, 'ws_b', {}))?.maxPending, 3, 'the failed change was rolled back');
});

t.test(
  'api keys: listing without secrets, revocation keeps its first time, credentials carry the policy',
  async (t) => {
    const created = await insertApiKey(db, {
      id: 'key_1',
      workspaceId: 'ws_a',
      name: 'one',
      secretHash: 'h1',
      scopes: ['jobs:read'],
    });
    t.notOk('secretHash' in created, 'no secret hash in what is returned');
    await insertApiKey(db, { id: 'key_2', workspaceId: 'ws_a', secretHash: 'h2', scopes: ['admin'] });
    const first = await revokeApiKey(db, 'key_2');
    t.ok(first?.revokedAt);
    const again = await revokeApiKey(db, 'key_2');
    t.equal(again?.revokedAt?.getTime(), first!.revokedAt!.getTime(), 'revoking twice keeps the first revocation time');
    t.equal(await revokeApiKey(db, 'key_missing'), undefined);
    t.same(
      (await listApiKeys(db, 'ws_a', false)).map((k) => k.id),
      ['key_1'],
      'revoked keys left out',
    );
    t.same(
      (await listApiKeys(db, 'ws_a', true)).map((k) => k.id),
      ['key_1', 'key_2'],
      'and listed on request, oldest first',
    );
    t.equal((await findApiKey(db, 'key_1'))?.name, 'one');
    t.match(await credentialByHash(db, 'h1'), {
      id: 'key_1',
      workspaceId: 'ws_a',
      scopes: ['jobs:read'],
      rateLimitPerMinute: 50,
      maxPending: 7,
    });
    t.match(await credentialById(db, 'key_2'), { id: 'key_2', revokedAt: first!.revokedAt });
    t.equal(await credentialByHash(db, 'nope'), undefined);
  },
);

t.test('installApiKey: inserted once, changed only by a new secret, which also un-revokes', async (t) => {
  const row = { id: 'key_fixed', workspaceId: 'ws_a', name: 'fixed', scopes: ['admin'] };
  t.equal(await installApiKey(db, { ...row, secretHash: 's1' }), true, 'inserted');
  t.equal(await installApiKey(db, { ...row, secretHash: 's1' }), false, 'the same secret changes nothing');
  await revokeApiKey(db, 'key_fixed');
  t.equal(await installApiKey(db, { ...row, secretHash: 's1' }), false, 'nor un-revokes');
  t.equal(await installApiKey(db, { ...row, secretHash: 's2' }), true, 'a new secret replaces it');
  t.match(await credentialByHash(db, 's2'), { id: 'key_fixed', revokedAt: null }, 'and un-revokes the key');
});

t.test(
  'signing keys: rotation retires at the earlier time, retired keys are left out, legacy rows are found',
  async (t) => {
    t.equal(await hasActiveSigningKey(db), false);
    const jwk = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' };
    await insertSigningKey(db, {
      kid: 'sk_1',
      algorithm: 'ES256',
      publicJwk: jwk,
      privateKeySealed: 'aijob-kek-v1.kek1.iv.ct.tag',
    });
    t.equal(await hasActiveSigningKey(db), true);
    const r1 = await rotateOutSigningKeys(db, 3_600_000);
    t.same(r1.kids, ['sk_1']);
    t.ok(
      Math.abs(r1.retireAt.getTime() - Date.now() - 3_600_000) < 60_000,
      'retires an hour from now, by the database clock',
    );
    t.equal(await hasActiveSigningKey(db), false, 'a rotated key no longer signs');
    await insertSigningKey(db, { kid: 'sk_2', algorithm: 'ES256', publicJwk: jwk, privateJwk: { ...jwk, d: 'd' } });
    const r2 = await rotateOutSigningKeys(db, 7_200_000);
    t.same(r2.kids, ['sk_2'], 'only the unrotated key rotates');
    const keys = await unretiredSigningKeys(db);
    t.same(
      keys.map((k) => k.kid),
      ['sk_2', 'sk_1'],
      'newest first',
    );
    t.same(keys[0]!.publicJwk, jwk, 'the public JWK reads back as stored');
    t.equal(keys[1]!.retiresAt!.getTime(), r1.retireAt.getTime(), 'a later rotation does not push a retirement out');
    t.same(
      (await signingKeysToSeal(db, 'kek1')).map((k) => k.kid),
      ['sk_2'],
      'the plain-text row is to seal, not the sealed one',
    );
    t.same(
      (await signingKeysToSeal(db, 'kek2')).map((k) => k.kid).sort(),
      ['sk_1', 'sk_2'],
      'and one sealed by another key-encryption key',
    );
    await rotateOutSigningKeys(db, 0);
    await insertSigningKey(db, { kid: 'sk_3', algorithm: 'ES256', publicJwk: jwk, privateKeySealed: 'x.kek1.a.b.c' });
    const r3 = await rotateOutSigningKeys(db, 0);
    t.same(r3.kids, ['sk_3']);
    t.same(
      (await unretiredSigningKeys(db)).map((k) => k.kid),
      ['sk_2', 'sk_1'],
      'a key retired now no longer verifies',
    );
  },
);

t.test('lockedTransaction: a second holder of the same lock waits for the first', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  const order: string[] = [];
  const first = lockedTransaction(db, 'bootstrap', async () => {
    order.push('first');
    await held;
    order.push('first done');
  });
  await waitFor(() => order.includes('first'), 10_000, 'the first holder');
  const second = lockedTransaction(db, 'bootstrap', async () => {
    order.push('second');
  });
  const probe = postgres(url, { max: 1, onnotice: () => {} });
  t.teardown(() => probe.end({ timeout: 2 }));
  await waitFor(
    async () =>
      (
        await probe`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`
      ).length > 0,
    10_000,
    'the second transaction waiting on the lock',
  );
  t.same(order, ['first'], 'the second has not run');
  release();
  await Promise.all([first, second]);
  t.same(order, ['first', 'first done', 'second']);
});

t.test('queues: defaults for new ones, a change keeps what it leaves unset', async (t) => {
  const d = { maxConcurrency: 10, rateLimitPerSecond: 0, weight: 1 };
  await ensureQueues(db, ['q1', 'q2'], d);
  await putQueue(db, 'q1', { weight: 5 }, d);
  await ensureQueues(db, ['q1'], { maxConcurrency: 99, rateLimitPerSecond: 9, weight: 9 });
  await ensureQueues(db, [], d);
  const q1 = await putQueue(db, 'q1', { paused: true }, d);
  t.match(
    q1,
    { name: 'q1', maxConcurrency: 10, weight: 5, paused: true },
    'ensure leaves an existing queue alone; put keeps unset settings',
  );
  t.match(
    await putQueue(db, 'q3', { maxConcurrency: 2 }, d),
    { maxConcurrency: 2, weight: 1, paused: false },
    'a new queue takes the defaults',
  );
  t.same(
    (await listQueues(db)).map((q) => q.name),
    ['q1', 'q2', 'q3'],
  );
});

t.test('queue counts: per queue and state, the oldest pending ready to run', async (t) => {
  const job = (
    queue: string,
    state: 'QUEUED' | 'RUNNING' | 'RETRY_WAIT' | 'SUCCEEDED',
    workspaceId: string,
    o: { createdAt?: Date; runAt?: Date } = {},
  ) => ({
    id: randomUUID(),
    workspaceId,
    queue,
    type: 'echo',
    state,
    maxAttempts: 3,
    timeoutMs: 1_000,
    input: {},
    ...o,
  });
  const old = new Date(Date.now() - 60_000);
  await db
    .insert(jobs)
    .values([
      job('q1', 'QUEUED', 'ws_a', { createdAt: old }),
      job('q1', 'QUEUED', 'ws_b'),
      job('q1', 'QUEUED', 'ws_a', { createdAt: new Date(Date.now() - 600_000), runAt: new Date(Date.now() + 600_000) }),
      job('q1', 'RUNNING', 'ws_a'),
      job('q1', 'RETRY_WAIT', 'ws_b'),
      job('q2', 'SUCCEEDED', 'ws_a'),
    ]);
  const all = await queueCounts(db);
  t.match(all.get('q1'), { pending: 3, running: 1, retryWait: 1, dispatched: 0 });
  t.equal(all.get('q1')!.oldestPending!.getTime(), old.getTime(), 'a job delayed by run_at is not the oldest pending');
  t.equal(all.get('q2'), undefined, 'finished jobs do not count');
  const mine = await workspaceQueueCounts(db, 'ws_a');
  t.match(mine.get('q1'), { pending: 2, running: 1, retryWait: 0 }, "one workspace's jobs only");
});

t.test('leases: one holder at a time, a new epoch per holder, a deposed holder cannot renew', async (t) => {
  t.equal(await acquireLease(store.sql, 'leader', 'a', 60_000), 1);
  t.equal(await acquireLease(store.sql, 'leader', 'b', 60_000), undefined, 'held by a');
  t.equal(await renewLease(store.sql, 'leader', 'a', 1, 60_000), 1);
  t.equal(await renewLease(store.sql, 'leader', 'b', 1, 60_000), undefined, 'only the holder renews');
  t.equal(await leaseHolder(store.sql, 'leader'), 'a');
  await releaseLease(store.sql, 'leader', 'a', 1);
  t.equal(await leaseHolder(store.sql, 'leader'), undefined, 'released');
  t.equal(await acquireLease(store.sql, 'leader', 'b', 60_000), 2, 'the next holder, the next epoch');
  t.equal(await renewLease(store.sql, 'leader', 'a', 1, 60_000), undefined, 'the old holder is fenced off');
});

t.test('audit log: filters and pages newest first; the archive deletes only rows still old', async (t) => {
  for (const action of ['x.one', 'x.two', 'x.one'])
    await audited(
      db,
      { ...audit(action, 'ws_log'), outcome: action === 'x.two' ? 'denied' : 'allowed' },
      async () => true,
    );
  const all = await listAuditLog(db, { workspaceId: 'ws_log', limit: 10 });
  t.same(
    all.map((r) => r.action),
    ['x.one', 'x.two', 'x.one'],
    'newest first',
  );
  t.equal(all[0]!.traceId, '', 'unset trace id stored empty');
  t.same((await listAuditLog(db, { workspaceId: 'ws_log', action: 'x.one', limit: 10 })).length, 2);
  t.same(
    (await listAuditLog(db, { workspaceId: 'ws_log', outcome: 'denied', limit: 10 })).map((r) => r.action),
    ['x.two'],
  );
  t.same(
    (await listAuditLog(db, { workspaceId: 'ws_log', beforeId: all[0]!.id, limit: 1 })).map((r) => r.id),
    [all[1]!.id],
    'paged by id',
  );
  t.same(
    await listAuditLog(db, { workspaceId: 'ws_log', endTime: new Date(Date.now() - 3_600_000), limit: 10 }),
    [],
    'by time',
  );

  const ids = all.map((r) => r.id);
  await db
    .update(auditLog)
    .set({ at: sql`now() - interval '100 days'` })
    .where(inArray(auditLog.id, ids));
  const cutoff = new Date(Date.now() - 90 * 86_400_000);
  const chunk = await auditLogBefore(db, cutoff, 0, 2);
  t.same(
    chunk.map((r) => r.id),
    ids
      .slice()
      .sort((a, b) => a - b)
      .slice(0, 2),
    'oldest ids first, a chunk at a time',
  );
  // A row touched since it was read (its time moved past the cutoff) is kept.
  await db
    .update(auditLog)
    .set({ at: sql`now()` })
    .where(inArray(auditLog.id, [chunk[0]!.id]));
  t.equal(
    await deleteAuditLog(
      db,
      chunk.map((r) => r.id),
      cutoff,
    ),
    1,
    'only the row still older than the cutoff',
  );
  t.equal(await deleteAuditLog(db, [], cutoff), 0);
  t.same((await auditLogBefore(db, cutoff, chunk[1]!.id, 10)).length, 1, 'the next chunk starts after the last id');
});
