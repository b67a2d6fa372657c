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

  async get(name: string): Promise<QueueRow | undefined> {
    const [row] = await this.store.sql<QueueRow[]>`
      SELECT name, max_concurrency, rate_limit_per_second, weight, paused, created_at FROM queues WHERE name = ${name}`;
    return row;
  }

  /** Creates or changes a queue; unset settings keep their value (or the defaults). */
  async put(name: string, c: { maxConcurrency?: number; ratePerSecond?: number; weight?: number; paused?: boolean }): Promise<QueueRow> {
    const d = this.defaultSettings;
    const [row] = await this.store.sql<QueueRow[]>`
      INSERT INTO queues (name, max_concurrency, rate_limit_per_second, weight, paused)
      VALUES (${name}, ${c.maxConcurrency ?? d.maxConcurrency}, ${c.ratePerSecond ?? d.ratePerSecond},
              ${c.weight ?? d.weight}, ${c.paused ?? false})
      ON CONFLICT (name) DO UPDATE SET
        max_concurrency = COALESCE(${c.maxConcurrency ?? null}::int, queues.max_concurrency),
        rate_limit_per_second = COALESCE(${c.ratePerSecond ?? null}::double precision, queues.rate_limit_per_second),
        weight = COALESCE(${c.weight ?? null}::int, queues.weight),
        paused = COALESCE(${c.paused ?? null}::boolean, queues.paused),
        updated_at = now()
      RETURNING name, max_concurrency, rate_limit_per_second, weight, paused, created_at`;
    return row!;
  }

  /**
   * Cancels a workspace's waiting jobs of a queue, recording history; returns them so
   * the caller can announce the cancellations.
   */
  async clear(name: string, workspaceId: string, states: string[], reason: string):
    Promise<{ id: string; attempt: number; state: string; traceparent: string }[]> {
    return this.store.sql<{ id: string; attempt: number; state: string; traceparent: string }[]>`
      WITH old AS (
        SELECT id, state FROM jobs WHERE queue = ${name} AND workspace_id = ${workspaceId}
          AND state = ANY(${states}::text[]) FOR UPDATE
      ), upd AS (
        UPDATE jobs j SET state = 'CANCELLED', finished_at = now(), updated_at = now(), next_attempt_at = NULL,
          error_code = 'CANCELLED', error_message = ${reason}, error_retryable = false
        FROM old WHERE j.id = old.id
        RETURNING j.id, j.attempt, old.state, j.traceparent
      ), hist AS (
        INSERT INTO job_events (job_id, attempt, state, source, detail)
        SELECT id, attempt, 'CANCELLED', 'scheduler', json_build_object('reason', ${reason}::text, 'by', 'ClearQueue')::jsonb FROM upd
      )
      SELECT * FROM upd`;
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

  /**
   * Non-terminal job counts per queue. The oldest pending is the QUEUED job that has been
   * ready to run longest (since its run_at, or since submit): jobs still delayed by run_at
   * are not waiting on the scheduler and do not count.
   */
  async counts(): Promise<Map<string, QueueCounts>> {
    const rows = await this.store.sql<{ queue: string; state: string; n: number; oldest: Date | null }[]>`
      SELECT queue, state, count(*)::int AS n,
        min(GREATEST(created_at, run_at)) FILTER (WHERE state = 'QUEUED' AND (run_at IS NULL OR run_at <= now())) AS oldest
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
