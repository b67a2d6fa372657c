import { ResourceExhaustedError } from '@aijob/platform';
import type { Store } from '@aijob/store';

const REFRESH_MS = 1_000;

/**
 * Backpressure: the platform's total of waiting jobs (QUEUED and RETRY_WAIT) against
 * MAX_PENDING, and each workspace's non-terminal jobs against its policy. Counts come
 * from Postgres at most once a second and are raised locally by what this replica
 * accepts meanwhile, so a burst cannot overshoot by more than a second of intake.
 */
export class PendingLimits {
  private total = { at: 0, count: 0, added: 0 };
  private refreshing: Promise<void> | undefined;
  private readonly perWorkspace = new Map<string, { at: number; count: number; added: number }>();

  constructor(private readonly store: Store, private readonly maxPending: number) {}

  /** Throws RESOURCE_EXHAUSTED when `n` more jobs would pass a limit; otherwise counts them in. */
  async admit(workspaceId: string, workspaceMax: number, n: number): Promise<void> {
    await this.freshTotal();
    if (this.maxPending > 0 && this.total.count + this.total.added + n > this.maxPending) {
      throw new ResourceExhaustedError(
        `the platform holds ${this.total.count + this.total.added} pending jobs (limit ${this.maxPending}); try again shortly`,
        2_000, 'BACKPRESSURE');
    }
    if (workspaceMax > 0) {
      const w = await this.workspace(workspaceId);
      if (w.count + w.added + n > workspaceMax) {
        throw new ResourceExhaustedError(
          `workspace ${workspaceId} has ${w.count + w.added} unfinished jobs (limit ${workspaceMax})`, 5_000, 'WORKSPACE_MAX_PENDING');
      }
      w.added += n;
    }
    this.total.added += n;
  }

  private async freshTotal(): Promise<void> {
    if (this.maxPending <= 0 || Date.now() - this.total.at < REFRESH_MS) return;
    this.refreshing ??= (async () => {
      const [row] = await this.store.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM jobs WHERE state IN ('QUEUED', 'RETRY_WAIT')`;
      this.total = { at: Date.now(), count: row!.n, added: 0 };
    })().finally(() => { this.refreshing = undefined; });
    await this.refreshing;
  }

  private async workspace(id: string): Promise<{ at: number; count: number; added: number }> {
    let w = this.perWorkspace.get(id);
    if (!w || Date.now() - w.at >= REFRESH_MS) {
      const [row] = await this.store.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM jobs WHERE workspace_id = ${id}
          AND state IN ('QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT')`;
      w = { at: Date.now(), count: row!.n, added: 0 };
      this.perWorkspace.set(id, w);
    }
    return w;
  }
}
