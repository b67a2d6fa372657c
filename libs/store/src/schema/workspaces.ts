import { sql } from 'drizzle-orm';
import { doublePrecision, integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** A tenant: its jobs, keys and limits are its own. Owned by the auth service. */
export const workspaces = pgTable('workspaces', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  /** Requests per minute across all job-service replicas. */
  rateLimitPerMinute: integer('rate_limit_per_minute').notNull().default(100),
  /** Most non-terminal jobs at once; 0 means no workspace limit. */
  maxPending: integer('max_pending').notNull().default(0),
  /** Job types this workspace may submit; NULL means the platform default. */
  allowedJobTypes: text('allowed_job_types').array(),
  /** Monthly LLM budget in USD; NULL means none. */
  monthlyBudgetUsd: doublePrecision('monthly_budget_usd'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().default(sql`now()`),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().default(sql`now()`),
});

/** A workspaces row as drizzle reads it (camelCase keys). */
export type WorkspaceRow = typeof workspaces.$inferSelect;
export type NewWorkspaceRow = typeof workspaces.$inferInsert;
