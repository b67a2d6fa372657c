import {
  cancelWaitingJobs, ensureQueues, findQueue, listQueues, putQueue, queueCounts, type QueueCounts, type QueueDefaults, type QueueRow, type Store,
} from '@aijob/store';
import type { QueueSettings, SchedulerState } from './scheduler-state.js';

/** The queues table (owned by the scheduler) with the configured defaults, and live counts from the job record. */
export class QueueRepository {
  constructor(private readonly store: Store, private readonly defaultSettings: QueueSettings) {}

  defaults(): QueueSettings {
    return { ...this.defaultSettings };
  }

  private get rowDefaults(): QueueDefaults {
    const d = this.defaultSettings;
    return { maxConcurrency: d.maxConcurrency, rateLimitPerSecond: d.ratePerSecond, weight: d.weight };
  }

  /** Creates queues first seen in submissions, with the configured defaults. */
  async ensure(names: string[]): Promise<void> {
    await ensureQueues(this.store.db, names, this.rowDefaults);
  }

  get(name: string): Promise<QueueRow | undefined> {
    return findQueue(this.store.db, name);
  }

  /** Creates or changes a queue; unset settings keep their value (or the defaults). */
  put(name: string, c: { maxConcurrency?: number; ratePerSecond?: number; weight?: number; paused?: boolean }): Promise<QueueRow> {
    return putQueue(this.store.db, name, {
      maxConcurrency: c.maxConcurrency, rateLimitPerSecond: c.ratePerSecond, weight: c.weight, paused: c.paused,
    }, this.rowDefaults);
  }

  /**
   * Cancels a workspace's waiting jobs of a queue, recording history; returns them so
   * the caller can announce the cancellations.
   */
  clear(name: string, workspaceId: string, states: string[], reason: string) {
    return cancelWaitingJobs(this.store.sql, { queue: name, workspaceId, states, reason });
  }

  all(): Promise<QueueRow[]> {
    return listQueues(this.store.db);
  }

  /** Applies the stored settings to the leader's view. */
  async load(state: SchedulerState): Promise<void> {
    for (const r of await this.all()) {
      state.queue(r.name).settings = {
        maxConcurrency: r.maxConcurrency, ratePerSecond: r.rateLimitPerSecond, weight: r.weight, paused: r.paused,
      };
    }
  }

  /** Non-terminal job counts per queue, platform-wide. */
  counts(): Promise<Map<string, QueueCounts>> {
    return queueCounts(this.store.db);
  }
}
