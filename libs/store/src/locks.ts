import { sql } from 'drizzle-orm';
import type { Db, DbTx } from './client.js';

/** The advisory locks the platform takes, by purpose: one place for their numbers. */
export const advisoryLocks = {
  /** Session lock while migrations run (one process migrates, the others wait). */
  migrate: 712001,
  /** Signing-key sealing, first key and rotation. */
  signingKeys: 712002,
  /** The bootstrap workspace and key. */
  bootstrap: 712003,
  /** Per workspace (second key: hashtext of its id) while a rate-window allowance is reserved. */
  rateWindow: 712004,
} as const;

/** Runs `work` in a transaction that first takes the transaction-scoped advisory lock `lock`. */
export function lockedTransaction<T>(
  db: Db,
  lock: 'signingKeys' | 'bootstrap',
  work: (tx: DbTx) => Promise<T>,
): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${advisoryLocks[lock]})`);
    return work(tx);
  });
}
