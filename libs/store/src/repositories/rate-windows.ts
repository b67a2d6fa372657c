import type { Queryable, Sql } from '../client.js';
import { advisoryLocks } from '../locks.js';

// On the submit path (a few reservations per workspace and slot): prepared postgres.js
// statements on the main pool.

/**
 * Reserves up to `want` requests of `workspaceId` in the slot starting at `slot`, as far
 * as the slots since `since` leave room under `limit`; under a per-workspace lock so
 * replicas never reserve the same room twice. Returns what was granted and the oldest
 * slot still counting (when the allowance frees up).
 */
export function reserveRateAllowance(
  sql: Sql,
  o: { workspaceId: string; slot: Date; since: Date; want: number; limit: number },
): Promise<{ granted: number; oldest: Date | null }> {
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${advisoryLocks.rateWindow}, hashtext(${o.workspaceId}))`;
    const [row] = await tx<{ used: number; oldest: Date | null }[]>`
      SELECT COALESCE(sum(used), 0)::int AS used, min(window_start) FILTER (WHERE used > 0) AS oldest
      FROM rate_windows WHERE workspace_id = ${o.workspaceId} AND window_start >= ${o.since}`;
    const take = Math.max(0, Math.min(o.want, o.limit - row!.used));
    if (take > 0) {
      await tx`INSERT INTO rate_windows (workspace_id, window_start, used) VALUES (${o.workspaceId}, ${o.slot}, ${take})
        ON CONFLICT (workspace_id, window_start) DO UPDATE SET used = rate_windows.used + ${take}`;
    }
    return { granted: take, oldest: row!.oldest };
  });
}

/** Uncounts `n` requests reserved in a slot but never spent. */
export async function giveBackRateAllowance(q: Queryable, workspaceId: string, slot: Date, n: number): Promise<void> {
  await q`UPDATE rate_windows SET used = GREATEST(used - ${n}, 0)
    WHERE workspace_id = ${workspaceId} AND window_start = ${slot}`;
}

/** Drops slots older than an hour. */
export async function pruneRateWindows(q: Queryable): Promise<void> {
  await q`DELETE FROM rate_windows WHERE window_start < now() - interval '1 hour'`;
}
