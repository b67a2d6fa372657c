import { ResourceExhaustedError } from '@aijob/platform';
import type { Store } from '@aijob/store';

const WINDOW_MS = 60_000;

interface Allowance {
  window: number;
  left: number;
  exhausted: boolean;
  pending?: Promise<void>;
}

/**
 * Per-workspace request limits shared by every job-service replica. Each replica
 * reserves chunks of a workspace's per-minute allowance from Postgres atomically, so
 * together they never admit more than the limit; small chunks (a twentieth) keep what
 * one replica holds unused while another is refused within a few percent.
 */
export class RateLimiter {
  private readonly allowances = new Map<string, Allowance>();

  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {}

  /** Admits one request of `workspaceId` under `perMinute` (0: unlimited) or throws RESOURCE_EXHAUSTED. */
  async take(workspaceId: string, perMinute: number): Promise<void> {
    if (perMinute <= 0) return;
    const now = this.now();
    const window = Math.floor(now / WINDOW_MS) * WINDOW_MS;
    let a = this.allowances.get(workspaceId);
    if (!a || a.window !== window) {
      a = { window, left: 0, exhausted: false };
      this.allowances.set(workspaceId, a);
      this.sweep(window);
    }
    while (a.left <= 0) {
      if (a.exhausted) {
        throw new ResourceExhaustedError(`workspace ${workspaceId} exceeded ${perMinute} requests per minute`,
          window + WINDOW_MS - now, 'RATE_LIMITED');
      }
      a.pending ??= this.reserve(workspaceId, window, perMinute, a).finally(() => { a!.pending = undefined; });
      await a.pending;
    }
    a.left--;
  }

  private async reserve(workspaceId: string, window: number, perMinute: number, a: Allowance): Promise<void> {
    const chunk = Math.max(1, Math.floor(perMinute / 20));
    const granted = await this.store.sql.begin(async (tx) => {
      await tx`INSERT INTO rate_windows (workspace_id, window_start, used) VALUES (${workspaceId}, ${new Date(window)}, 0)
        ON CONFLICT DO NOTHING`;
      const [row] = await tx<{ used: number }[]>`
        SELECT used FROM rate_windows WHERE workspace_id = ${workspaceId} AND window_start = ${new Date(window)} FOR UPDATE`;
      const take = Math.max(0, Math.min(chunk, perMinute - row!.used));
      if (take > 0) {
        await tx`UPDATE rate_windows SET used = used + ${take}
          WHERE workspace_id = ${workspaceId} AND window_start = ${new Date(window)}`;
      }
      return take;
    });
    if (granted === 0) a.exhausted = true;
    a.left += granted;
  }

  private sweep(window: number): void {
    for (const [ws, a] of this.allowances) if (a.window < window) this.allowances.delete(ws);
  }

  /** Drops windows older than an hour (called from a timer). */
  async prune(): Promise<void> {
    await this.store.sql`DELETE FROM rate_windows WHERE window_start < now() - interval '1 hour'`;
  }
}
