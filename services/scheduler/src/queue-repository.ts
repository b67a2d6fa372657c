import type { Store } from '@aijob/store';
import type { QueueSettings, SchedulerState } from './scheduler-state.js';

export interface QueueRow {
  name: string;
  max_concurrency: number;
  rate_limit_per_second: number;
  weight: number;
  paused: boolean;
  created_at: Date;
}

export interface QueueCounts {
  pending: number;
  dispatched: number;
  running: number;
  retry_wait: number;
  oldest_pending: Date | null;
}

/** The queues table (owned by the scheduler) and live counts from the job record. */
export class QueueRepository {
  constructor(private readonly store: Store, private readonly defaultSettings: QueueSettings) {}

  defaults(): QueueSettings {
    return { ...this.defaultSettings };
  }

  /** Creates queues first seen in submissions, with the configured defaults. */
  async ensure(names: string[]): Promise<void> {
    const d = this.defaultSettings;
    await this.store.sql`
      INSERT INTO queues (name, max_concurrency, rate_limit_per_second, weight)
      SELECT n, ${d.maxConcurrency}, ${d.ratePerSecond}, ${d.weight} FROM unnest(${names}::text[]) AS n
      ON CONFLICT (name) DO NOTHING`;
  }

  async all(): Promise<QueueRow[]> {
    return this.store.sql<QueueRow[]>`
      SELECT name, max_concurrency, rate_limit_per_second, weight, paused, created_at FROM queues ORDER BY name`;
  }

  /** Applies the stored settings to the leader's view. */
  async load(state: SchedulerState): Promise<void> {
    for (const r of await this.all()) {
      state.queue(r.name).settings = {
        maxConcurrency: r.max_concurrency, ratePerSecond: r.rate_limit_per_second, weight: r.weight, paused: r.paused,
      };
    }
  }

  /** Non-terminal job counts per queue. */
  async counts(): Promise<Map<string, QueueCounts>> {
    const rows = await this.store.sql<{ queue: string; state: string; n: number; oldest: Date | null }[]>`
      SELECT queue, state, count(*)::int AS n, min(created_at) FILTER (WHERE state = 'QUEUED') AS oldest
      FROM jobs WHERE state IN ('QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT') GROUP BY queue, state`;
    const out = new Map<string, QueueCounts>();
    for (const r of rows) {
      let c = out.get(r.queue);
      if (!c) out.set(r.queue, (c = { pending: 0, dispatched: 0, running: 0, retry_wait: 0, oldest_pending: null }));
      if (r.state === 'QUEUED') { c.pending = r.n; c.oldest_pending = r.oldest; }
      if (r.state === 'DISPATCHED') c.dispatched = r.n;
      if (r.state === 'RUNNING') c.running = r.n;
      if (r.state === 'RETRY_WAIT') c.retry_wait = r.n;
    }
    return out;
  }
}
