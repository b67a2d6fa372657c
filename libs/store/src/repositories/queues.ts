import { asc, eq, sql, type SQL } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';
import type { DbOrTx } from '../client.js';
import { activeStates, jobs, queues, type QueueRow } from '../schema/index.js';

/** What a queue is created with when a change or a first submit leaves a setting unset. */
export type QueueDefaults = Pick<QueueRow, 'maxConcurrency' | 'rateLimitPerSecond' | 'weight'>;
/** A change of a queue's settings: unset ones keep their value. */
export type QueueChange = Partial<Pick<QueueRow, 'maxConcurrency' | 'rateLimitPerSecond' | 'weight' | 'paused'>>;

/** Non-terminal job counts of one queue; the oldest pending is when its longest-waiting QUEUED job became ready. */
export interface QueueCounts {
  pending: number;
  dispatched: number;
  running: number;
  retryWait: number;
  oldestPending: Date | null;
}

/** Creates the queues not there yet, with the defaults. */
export async function ensureQueues(db: DbOrTx, names: string[], d: QueueDefaults): Promise<void> {
  if (names.length === 0) return;
  await db
    .insert(queues)
    .values(names.map((name) => ({ name, ...d })))
    .onConflictDoNothing({ target: queues.name });
}

export async function findQueue(db: DbOrTx, name: string): Promise<QueueRow | undefined> {
  const [row] = await db.select().from(queues).where(eq(queues.name, name));
  return row;
}

export function listQueues(db: DbOrTx): Promise<QueueRow[]> {
  return db.select().from(queues).orderBy(asc(queues.name));
}

/** Creates or changes a queue; unset settings keep their value (or take the defaults when new). */
export async function putQueue(db: DbOrTx, name: string, c: QueueChange, d: QueueDefaults): Promise<QueueRow> {
  const [row] = await db
    .insert(queues)
    .values({
      name,
      maxConcurrency: c.maxConcurrency ?? d.maxConcurrency,
      rateLimitPerSecond: c.rateLimitPerSecond ?? d.rateLimitPerSecond,
      weight: c.weight ?? d.weight,
      paused: c.paused ?? false,
    })
    .onConflictDoUpdate({
      target: queues.name,
      set: {
        maxConcurrency: c.maxConcurrency,
        rateLimitPerSecond: c.rateLimitPerSecond,
        weight: c.weight,
        paused: c.paused,
        updatedAt: sql`now()`,
      },
    })
    .returning();
  return row!;
}

/** `column IN (<constant list>)`, written out so the planner matches the partial index on active jobs. */
const inList = (column: PgColumn, values: readonly string[]): SQL =>
  sql`${column} IN (${sql.raw(values.map((v) => `'${v}'`).join(', '))})`;

/**
 * Non-terminal job counts per queue, platform-wide. The oldest pending is the QUEUED job
 * ready to run longest (since its run_at, or since submit): jobs still delayed by run_at
 * are not waiting on the scheduler and do not count.
 */
export async function queueCounts(db: DbOrTx): Promise<Map<string, QueueCounts>> {
  const oldest = sql<Date | null>`min(GREATEST(${jobs.createdAt}, ${jobs.runAt}))
    FILTER (WHERE ${jobs.state} = 'QUEUED' AND (${jobs.runAt} IS NULL OR ${jobs.runAt} <= now()))`.mapWith(
    jobs.createdAt,
  );
  return countsOf(
    await db
      .select({ queue: jobs.queue, state: jobs.state, n: sql<number>`count(*)::int`, oldest })
      .from(jobs)
      .where(inList(jobs.state, activeStates))
      .groupBy(jobs.queue, jobs.state),
  );
}

/** Non-terminal job counts per queue of one workspace (what a tenant may see of the shared queues). */
export async function workspaceQueueCounts(db: DbOrTx, workspaceId: string): Promise<Map<string, QueueCounts>> {
  const oldest = sql<Date | null>`min(${jobs.createdAt}) FILTER (WHERE ${jobs.state} = 'QUEUED')`.mapWith(
    jobs.createdAt,
  );
  return countsOf(
    await db
      .select({ queue: jobs.queue, state: jobs.state, n: sql<number>`count(*)::int`, oldest })
      .from(jobs)
      .where(sql`${jobs.workspaceId} = ${workspaceId} AND ${inList(jobs.state, activeStates)}`)
      .groupBy(jobs.queue, jobs.state),
  );
}

function countsOf(rows: { queue: string; state: string; n: number; oldest: Date | null }[]): Map<string, QueueCounts> {
  const out = new Map<string, QueueCounts>();
  for (const r of rows) {
    let c = out.get(r.queue);
    if (!c) out.set(r.queue, (c = { pending: 0, dispatched: 0, running: 0, retryWait: 0, oldestPending: null }));
    if (r.state === 'QUEUED') {
      c.pending = r.n;
      c.oldestPending = r.oldest;
    }
    if (r.state === 'DISPATCHED') c.dispatched = r.n;
    if (r.state === 'RUNNING') c.running = r.n;
    if (r.state === 'RETRY_WAIT') c.retryWait = r.n;
  }
  return out;
}
