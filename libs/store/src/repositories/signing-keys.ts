import { and, desc, asc, eq, gt, isNotNull, isNull, ne, or, sql } from 'drizzle-orm';
import type { DbOrTx } from '../client.js';
import { signingKeys, type NewSigningKeyRow, type SigningKeyRow } from '../schema/index.js';

const k = signingKeys;
const unretired = or(isNull(k.retiresAt), gt(k.retiresAt, sql`now()`));

/** Keys not yet retired, newest first. */
export function unretiredSigningKeys(db: DbOrTx): Promise<SigningKeyRow[]> {
  return db.select().from(k).where(unretired).orderBy(desc(k.createdAt), asc(k.kid));
}

/** Whether a key signs now (not rotated out, not retired). */
export async function hasActiveSigningKey(db: DbOrTx): Promise<boolean> {
  const [row] = await db
    .select({ kid: k.kid })
    .from(k)
    .where(and(isNull(k.rotatedAt), unretired))
    .limit(1);
  return row !== undefined;
}

/**
 * Rows to seal at start: a plain-text private key from before sealing, none sealed, or
 * sealed with another key-encryption key than `primaryKek` (its fingerprint).
 */
export function signingKeysToSeal(db: DbOrTx, primaryKek: string): Promise<SigningKeyRow[]> {
  return db
    .select()
    .from(k)
    .where(
      or(
        isNotNull(k.privateJwk),
        isNull(k.privateKeySealed),
        ne(sql`split_part(${k.privateKeySealed}, '.', 2)`, primaryKek),
      ),
    );
}

/** Stores a row's sealed private key and drops its plain-text one. */
export async function setSealedSigningKey(db: DbOrTx, kid: string, sealed: string): Promise<void> {
  await db.update(k).set({ privateKeySealed: sealed, privateJwk: null }).where(eq(k.kid, kid));
}

export async function insertSigningKey(db: DbOrTx, row: NewSigningKeyRow): Promise<void> {
  await db.insert(k).values(row);
}

/**
 * Marks the signing keys rotated, each to retire `retireAfterMs` from now (or earlier,
 * if it already was to); returns their kids and that time, by the database's clock (read
 * once, so the time reported is the time stored, in a transaction or not).
 */
export async function rotateOutSigningKeys(
  db: DbOrTx,
  retireAfterMs: number,
): Promise<{ kids: string[]; retireAt: Date }> {
  const [at] = await db.execute<{ t: string }>(
    sql`SELECT (now() + ${retireAfterMs} * interval '1 millisecond')::text AS t`,
  );
  const retireAt = new Date(at!.t);
  const rotated = await db
    .update(k)
    .set({
      rotatedAt: sql`now()`,
      retiresAt: sql`LEAST(COALESCE(${k.retiresAt}, 'infinity'), ${retireAt.toISOString()}::timestamptz)`,
    })
    .where(isNull(k.rotatedAt))
    .returning({ kid: k.kid });
  return { kids: rotated.map((r) => r.kid), retireAt };
}
