import { sql } from 'drizzle-orm';
import { jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** A JSON Web Key as stored (the auth service reads it as jose's JWK). */
export type Jwk = { kty?: string; crv?: string; x?: string; y?: string; d?: string } & Record<string, unknown>;

/**
 * JWT signing keys. The newest active key signs; every unretired key verifies. Private
 * keys are sealed (AES-256-GCM) with a key-encryption key only the auth service holds,
 * bound to the row's kid, algorithm and public key, so neither reading the table nor
 * writing a row of one's own yields a key the auth service will sign or verify with.
 */
export const signingKeys = pgTable('signing_keys', {
  kid: text('kid').primaryKey(),
  algorithm: text('algorithm').notNull(),
  publicJwk: jsonb('public_jwk').$type<Jwk>().notNull(),
  /** Plain-text private JWK of rows from before sealing; the auth service seals them at start and clears this. */
  privateJwk: jsonb('private_jwk').$type<Jwk>(),
  /** The private JWK sealed with the key-encryption key (`aijob-kek-v1.<kek fingerprint>.<iv>.<ciphertext>.<tag>`). */
  privateKeySealed: text('private_key_sealed'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().default(sql`now()`),
  /** Set when a newer key replaced this one for signing. */
  rotatedAt: timestamp('rotated_at', { withTimezone: true }),
  /** From this time on, tokens signed by this key are refused. */
  retiresAt: timestamp('retires_at', { withTimezone: true }),
});

export type SigningKeyRow = typeof signingKeys.$inferSelect;
export type NewSigningKeyRow = typeof signingKeys.$inferInsert;
