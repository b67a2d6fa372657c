import type { Queryable } from '../client.js';

// Leader election's statements run on the services' main pool as prepared postgres.js
// statements: a renewal that waits behind other queries costs the leadership.

/**
 * Takes lease `name` for `holder` when it is free or expired, with the next epoch
 * (fencing token); undefined while another holder's lease runs.
 */
export async function acquireLease(
  q: Queryable,
  name: string,
  holder: string,
  ttlMs: number,
): Promise<number | undefined> {
  const [row] = await q<{ epoch: string }[]>`
    INSERT INTO leases (name, holder, epoch, expires_at)
    VALUES (${name}, ${holder}, 1, now() + ${ttlMs} * interval '1 millisecond')
    ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, epoch = leases.epoch + 1,
      acquired_at = now(), expires_at = EXCLUDED.expires_at
      WHERE leases.expires_at <= now()
    RETURNING epoch`;
  return row ? Number(row.epoch) : undefined;
}

/** Extends the lease held at `epoch` by `ttlMs` from now; undefined when it is no longer held (or expired). */
export async function renewLease(
  q: Queryable,
  name: string,
  holder: string,
  epoch: number,
  ttlMs: number,
): Promise<number | undefined> {
  const [row] = await q<{ epoch: string }[]>`
    UPDATE leases SET expires_at = now() + ${ttlMs} * interval '1 millisecond'
    WHERE name = ${name} AND holder = ${holder} AND epoch = ${epoch} AND expires_at > now()
    RETURNING epoch`;
  return row ? Number(row.epoch) : undefined;
}

/** Ends the lease held at `epoch` now, so a standby takes over at once. */
export async function releaseLease(q: Queryable, name: string, holder: string, epoch: number): Promise<void> {
  await q`UPDATE leases SET expires_at = now() WHERE name = ${name} AND holder = ${holder} AND epoch = ${epoch}`;
}

/** Who holds lease `name` now, if anyone. */
export async function leaseHolder(q: Queryable, name: string): Promise<string | undefined> {
  const [row] = await q<{ holder: string }[]>`SELECT holder FROM leases WHERE name = ${name} AND expires_at > now()`;
  return row?.holder;
}
