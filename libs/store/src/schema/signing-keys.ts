import { sql } from 'drizzle-orm';
import { jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** JWT signing keys. The newest active key signs; every unretired key verifies. */
export const signingKeys = pgTable('signing_keys', {
  kid: text('kid').primaryKey(),
  algorithm: text('algorithm').notNull(),
  publicJwk: jsonb('public_jwk').notNull(),
  privateJwk: jsonb('private_jwk').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().default(sql`now()`),
  /** Set when a newer key replaced this one for signing. */
  rotatedAt: timestamp('rotated_at', { withTimezone: true }),
  /** From this time on, tokens signed by this key are refused. */
  retiresAt: timestamp('retires_at', { withTimezone: true }),
});
