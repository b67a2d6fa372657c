// The job state machine against a real Postgres (a database of its own): every named
// transition applies from exactly the source states its table lists and is refused from
// every other state, attempt-fenced ones are refused for a stale attempt, dispatch for a
// stale lease epoch; and the edge list in job-transitions.ts's header is the table.
import t from 'tap';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { eq, inArray } from 'drizzle-orm';
import {
  applyAttemptReports, cancelJob, cancelWaitingJobs, createStore, dispatchJobs, failUnplaceableGang, jobEdges, jobs,
  jobStates, jobTransitions, leases, purgeDeadLetters, requeueAllDispatched, requeueLostDispatches, retryDeadLetters,
  retryJob, runMigrations, submitJobs, type AttemptReport, type JobStateName, type JobTransition,
} from '@aijob/store';
import { PG_BASE } from '../helpers/platform.js';
import { repoRoot } from '../helpers/processes.js';

const dbName = `aijob_jt_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const url = `${PG_BASE}/${dbName}`;
await runMigrations(url);
const store = createStore(url, { max: 2 });
t.teardown(async () => {
  await store.close();
  const admin = postgres(`${PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
  await admin.unsafe(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).finally(() => admin.end({ timeout: 2 }));
});

const LEASE = { name: 'scheduler', holder: 'me', epoch: 7 };
await store.db.insert(leases).values({ ...LEASE, expiresAt: new Date(Date.now() + 3_600_000) });

interface Fixture { id: string; workspaceId: string; queue: string; gangId: string | null }

/** A job in `state` at attempt 1, run by worker w1, alone in its workspace and queue (or in gang `gangId`). */
async function jobIn(state: JobStateName, o: { maxAttempts?: number; gangId?: string; queue?: string } = {}): Promise<Fixture> {
  const minuteAgo = new Date(Date.now() - 60_000);
  const f = { id: randomUUID(), workspaceId: `ws-${randomBytes(4).toString('hex')}`, queue: o.queue ?? `q-${randomBytes(4).toString('hex')}`, gangId: o.gangId ?? null };
  await store.db.insert(jobs).values({
    ...f, type: 'echo', state, attempt: 1, maxAttempts: o.maxAttempts ?? 1, timeoutMs: 60_000, input: {}, workerId: 'w1',
    // Written a minute ago: a statement that touches the row sets updated_at to now.
    createdAt: minuteAgo, updatedAt: minuteAgo,
    gangSize: o.gangId ? 2 : 0, finishedAt: ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(state) ? new Date() : null,
  });
  return f;
}

/** The job's state (null: deleted), and whether a statement wrote it since its fixture was inserted. */
async function stateOf(id: string): Promise<{ state: JobStateName | null; written: boolean }> {
  const [row] = await store.db.select({ state: jobs.state, createdAt: jobs.createdAt, updatedAt: jobs.updatedAt })
    .from(jobs).where(eq(jobs.id, id));
  return { state: row?.state ?? null, written: !row || row.updatedAt.getTime() > row.createdAt.getTime() };
}

const report = (f: Fixture, r: Partial<AttemptReport>): AttemptReport => ({
  jobId: f.id, attempt: 1, state: 'RUNNING', workerId: 'w1', at: new Date(), startedAt: null, output: null, errorCode: null,
  errorMessage: null, retryable: false, retryAfterMs: null, progress: null, progressNote: null, ...r,
});
const apply = (reports: AttemptReport[]) => applyAttemptReports(store.sql, reports, {
  retryBaseMs: 1_000, retryMaxMs: 60_000, history: () => [], usage: () => [],
});
const noAudit = async () => {};

/**
 * How to run each transition on a job in a given state (for gang transitions, the state
 * is the sibling's). `attempt` runs it for attempt 2 of a job at attempt 1 (stale).
 */
interface Op {
  covers: JobTransition[];
  /** Creates the job whose state the transition may change and runs it; returns that job's id. */
  run: (state: JobStateName, attempt?: number) => Promise<string>;
  fenced?: boolean;
}
const ops: Record<string, Op> = {
  dispatch: { covers: ['dispatch'], run: async (s, attempt) => {
    const f = await jobIn(s);
    // A stale "attempt" here is a deposed leader's epoch.
    await dispatchJobs(store.sql, [f.id], attempt ? { ...LEASE, epoch: LEASE.epoch - 1 } : LEASE);
    return f.id;
  }, fenced: true },
  start: { covers: ['start'], fenced: true, run: async (s, attempt = 1) => {
    const f = await jobIn(s);
    await apply([report(f, { attempt, state: 'RUNNING' })]);
    return f.id;
  } },
  progress: { covers: ['start', 'report'], fenced: true, run: async (s, attempt = 1) => {
    const f = await jobIn(s);
    await apply([report(f, { attempt, state: 'RUNNING', progress: 0.5, progressNote: 'half' })]);
    return f.id;
  } },
  handBack: { covers: ['handBack'], fenced: true, run: async (s, attempt = 1) => {
    const f = await jobIn(s);
    await apply([report(f, { attempt, state: 'DISPATCHED' })]);
    return f.id;
  } },
  succeed: { covers: ['succeed'], fenced: true, run: async (s, attempt = 1) => {
    const f = await jobIn(s);
    await apply([report(f, { attempt, state: 'SUCCEEDED', output: '{"ok":true}' })]);
    return f.id;
  } },
  fail: { covers: ['fail'], fenced: true, run: async (s, attempt = 1) => {
    const f = await jobIn(s, { maxAttempts: 3 });
    await apply([report(f, { attempt, state: 'FAILED', errorCode: 'BAD', retryable: false })]);
    return f.id;
  } },
  scheduleRetry: { covers: ['scheduleRetry'], fenced: true, run: async (s, attempt = 1) => {
    const f = await jobIn(s, { maxAttempts: 3 });
    await apply([report(f, { attempt, state: 'FAILED', errorCode: 'FLAKY', retryable: true })]);
    return f.id;
  } },
  abort: { covers: ['abort'], fenced: true, run: async (s, attempt = 1) => {
    const f = await jobIn(s);
    await apply([report(f, { attempt, state: 'CANCELLED', errorCode: 'CANCELLED' })]);
    return f.id;
  } },
  gangRetry: { covers: ['gangRetry'], fenced: true, run: async (s, attempt = 1) => {
    const gangId = randomUUID();
    const failed = await jobIn('RUNNING', { gangId, maxAttempts: 3 });
    const sibling = await jobIn(s, { gangId });
    if (attempt !== 1) await store.db.update(jobs).set({ attempt }).where(eq(jobs.id, sibling.id));
    await apply([report(failed, { state: 'FAILED', errorCode: 'FLAKY', retryable: true })]);
    return sibling.id;
  } },
  gangFail: { covers: ['gangFail'], fenced: true, run: async (s, attempt = 1) => {
    const gangId = randomUUID();
    const failed = await jobIn('RUNNING', { gangId });
    const sibling = await jobIn(s, { gangId });
    if (attempt !== 1) await store.db.update(jobs).set({ attempt }).where(eq(jobs.id, sibling.id));
    await apply([report(failed, { state: 'FAILED', errorCode: 'BAD', retryable: false })]);
    return sibling.id;
  } },
  cancel: { covers: ['cancel'], run: async (s) => {
    const f = await jobIn(s);
    await cancelJob(store.sql, { workspaceId: f.workspaceId, id: f.id, reason: 'test', actor: 'tester', audit: noAudit });
    return f.id;
  } },
  clearQueue: { covers: ['clearQueue'], run: async (s) => {
    const f = await jobIn(s);
    // Asked for every state: the transition narrows it to its own.
    await cancelWaitingJobs(store.sql, { queue: f.queue, workspaceId: f.workspaceId, states: jobStates, reason: 'cleared' });
    return f.id;
  } },
  retryFromFailed: { covers: ['retryFromFailed'], run: async (s) => {
    const f = await jobIn(s);
    await retryJob(store.sql, { workspaceId: f.workspaceId, id: f.id, actor: 'tester', audit: noAudit });
    return f.id;
  } },
  reopenGangMember: { covers: ['reopenGangMember'], run: async (s) => {
    const gangId = randomUUID();
    const failed = await jobIn('FAILED', { gangId });
    const sibling = await jobIn(s, { gangId });
    await store.db.update(jobs).set({ workspaceId: failed.workspaceId }).where(eq(jobs.id, sibling.id));
    await retryJob(store.sql, { workspaceId: failed.workspaceId, id: failed.id, actor: 'tester', audit: noAudit });
    return sibling.id;
  } },
  retryDeadLetter: { covers: ['retryDeadLetter'], run: async (s) => {
    const f = await jobIn(s);
    await retryDeadLetters(store.sql, { workspaceId: f.workspaceId }, { inputOverrides: {}, limit: null, actor: 'tester' });
    return f.id;
  } },
  requeueLostDispatch: { covers: ['requeueLostDispatch'], fenced: true, run: async (s, attempt = 1) => {
    const f = await jobIn(s);
    await requeueLostDispatches(store.sql, [{ id: f.id, attempt }]);
    return f.id;
  } },
  requeueAfterStreamLoss: { covers: ['requeueAfterStreamLoss'], run: async (s) => {
    const f = await jobIn(s);
    await requeueAllDispatched(store.sql);
    return f.id;
  } },
  failUnplaceableGang: { covers: ['failUnplaceableGang'], run: async (s) => {
    const gangId = randomUUID();
    const f = await jobIn(s, { gangId });
    await failUnplaceableGang(store.sql, gangId);
    return f.id;
  } },
  purgeDeadLetter: { covers: ['purgeDeadLetter'], run: async (s) => {
    const f = await jobIn(s);
    await purgeDeadLetters(store.sql, { workspaceId: f.workspaceId });
    return f.id;
  } },
};

t.test('each transition applies from its source states only, and ends in its target state', async (t) => {
  for (const [name, op] of Object.entries(ops)) {
    const sources = new Set(op.covers.flatMap((c) => jobTransitions[c].from as readonly JobStateName[]));
    const moved: JobStateName[] = [];
    for (const s of jobStates) {
      const id = await op.run(s);
      const after = await stateOf(id);
      const rule = op.covers.map((c) => jobTransitions[c]).find((r) => (r.from as readonly JobStateName[]).includes(s));
      if (rule) {
        t.same(after, { state: rule.to, written: true }, `${name} from ${s} ends ${rule.to ?? 'deleted'}`);
      } else {
        t.same(after, { state: s, written: false }, `${name} refused from ${s}`);
      }
      if (after.written) moved.push(s);
    }
    t.same(new Set(moved), sources, `${name} applies from exactly ${[...sources].join(', ')}`);
  }
  t.same(new Set(Object.values(ops).flatMap((o) => o.covers)), new Set(Object.keys(jobTransitions).filter((k) => k !== 'submit')),
    'every transition but submit is exercised');
});

t.test('attempt-fenced transitions are refused for a stale attempt, dispatch for a stale lease epoch', async (t) => {
  for (const [name, op] of Object.entries(ops)) {
    if (!op.fenced) continue;
    for (const c of op.covers) {
      t.equal(jobTransitions[c].fence === 'attempt' || jobTransitions[c].fence === 'lease', true, `${c} is fenced in the table`);
    }
    for (const s of jobTransitions[op.covers[0]!].from) {
      const id = await op.run(s, 2);
      t.same(await stateOf(id), { state: s, written: false }, `${name} at a stale attempt leaves ${s} alone`);
    }
  }
});

t.test('submit inserts QUEUED at attempt 0; a taken idempotency key inserts nothing', async (t) => {
  const base = {
    workspaceId: 'ws-submit', queue: 'q', type: 'echo', priority: 0, maxAttempts: 3, timeoutMs: 1000, retryBaseMs: null,
    input: { a: 1 }, labels: {}, idempotencyKey: 'k1', runAt: null, gangId: null, gangSize: 0, createdBy: 'tester',
    traceparent: '', requestId: 'r',
  };
  const [row] = await submitJobs(store.sql, [{ ...base, id: randomUUID() }]);
  t.match(row, { state: 'QUEUED', attempt: 0, workspaceId: 'ws-submit', input: { a: 1 } }, 'the stored row comes back');
  const again = await submitJobs(store.sql, [{ ...base, id: randomUUID() }]);
  t.same(again, [], 'the duplicate is not stored');
  const stored = await store.db.select().from(jobs).where(inArray(jobs.workspaceId, ['ws-submit']));
  t.equal(stored.length, 1, 'one job holds the key');
});

t.test("the header's edge list is the transition table", async (t) => {
  const text = readFileSync(join(repoRoot, 'libs/store/src/job-transitions.ts'), 'utf8');
  const listed = [...text.matchAll(/^ \*\s{3}(\(new\)|[A-Z_]+)\s+(\(deleted\)|[A-Z_]+)\s+([a-zA-Z]+)\b/gm)]
    .filter((m) => m[1] !== 'from')
    .map((m) => ({ from: m[1] === '(new)' ? null : m[1], to: m[2] === '(deleted)' ? null : m[2], transition: m[3] }));
  t.same(listed, jobEdges(), 'same edges, same order');
});
