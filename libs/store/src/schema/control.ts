import { sql } from 'drizzle-orm';
import { bigint, boolean, doublePrecision, integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** Queue settings, owned by the scheduler. A queue is created on first submit. */
export const queues = pgTable('queues', {
  name: text('name').primaryKey(),
  maxConcurrency: integer('max_concurrency').notNull(),
  /** Jobs per second; 0 is unlimited. */
  rateLimitPerSecond: doublePrecision('rate_limit_per_second').notNull().default(0),
  weight: integer('weight').notNull().default(1),
  paused: boolean('paused').notNull().default(false),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().default(sql`now()`),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().default(sql`now()`),
});

/** Leader election: one row per lease; `epoch` grows with every new holder (fencing token). */
export const leases = pgTable('leases', {
  name: text('name').primaryKey(),
  holder: text('holder').notNull(),
  epoch: bigint('epoch', { mode: 'number' }).notNull(),
  acquiredAt: timestamp('acquired_at', { withTimezone: true }).notNull().default(sql`now()`),
  expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
});

export type QueueRow = typeof queues.$inferSelect;
export type NewQueueRow = typeof queues.$inferInsert;
export type LeaseRow = typeof leases.$inferSelect;
