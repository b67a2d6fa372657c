import { ResourceExhaustedError } from '@aijob/core';
import { countUnfinishedJobs, countWaitingJobs, type Store } from '@aijob/store';

const REFRESH_MS = 1_000;

interface Count {
  /** When `count` was read from Postgres (0: never). */
  at: number;
  count: number;
  /** Accepted by this replica since `count` was read. */
  added: number;
  refreshing?: Promise<void>;
}

/**
 * Backpressure: the platform's total of waiting jobs (QUEUED and RETRY_WAIT) against
 * MAX_PENDING, and each workspace's non-terminal jobs against its policy. Counts come
 * from Postgres at most once a second and are raised locally by what this replica
 * accepts meanwhile, so a burst cannot overshoot by more than a second of intake. Only
 * the first count of each waits; later ones refresh in the background, so a slow count
 * (a million pending jobs) never holds up a submit.
 */
export class PendingLimits {
  private readonly total: Count = { at: 0, count: 0, added: 0 };
  private readonly perWorkspace = new Map<string, Count>();

  constructor(private readonly store: Store, private readonly maxPending: number) {}

  /** Throws RESOURCE_EXHAUSTED when `n` more jobs would pass a limit; otherwise counts them in. */
  async admit(workspaceId: string, workspaceMax: number, n: number): Promise<void> {
    if (this.maxPending > 0) {
      await this.fresh(this.total, () => countWaitingJobs(this.store.sql));
      if (this.total.count + this.total.added + n > this.maxPending) {
        throw new ResourceExhaustedError(
          `the platform holds ${this.total.count + this.total.added} pending jobs (limit ${this.maxPending}); try again shortly`,
          2_000, 'BACKPRESSURE');
      }
    }
    if (workspaceMax > 0) {
      let w = this.perWorkspace.get(workspaceId);
      if (!w) this.perWorkspace.set(workspaceId, (w = { at: 0, count: 0, added: 0 }));
      await this.fresh(w, () => countUnfinishedJobs(this.store.sql, workspaceId));
      if (w.count + w.added + n > workspaceMax) {
        throw new ResourceExhaustedError(
          `workspace ${workspaceId} has ${w.count + w.added} unfinished jobs (limit ${workspaceMax})`, 5_000, 'WORKSPACE_MAX_PENDING');
      }
      w.added += n;
    }
    this.total.added += n;
  }

  /** Re-reads a count older than a second: waiting only when there is none yet. */
  private async fresh(c: Count, read: () => Promise<number>): Promise<void> {
    if (Date.now() - c.at < REFRESH_MS) return;
    c.refreshing ??= (async () => {
      const startedAt = Date.now();
      const addedBefore = c.added;
      const count = await read();
      // What was accepted while the count ran may or may not be in it: keep it counted.
      Object.assign(c, { at: startedAt, count, added: c.added - addedBefore });
    })().finally(() => { c.refreshing = undefined; });
    if (c.at === 0) await c.refreshing;
    else c.refreshing.catch(() => undefined);
  }
}
