import { sql } from 'drizzle-orm';
import { bigint, doublePrecision, index, integer, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { auditOutcomes } from './enums.js';

/** Who did what to which resource, allowed or not, with the trace to follow it. */
export const auditLog = pgTable('audit_log', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  at: timestamp('at', { withTimezone: true }).notNull().default(sql`now()`),
  actor: text('actor').notNull(),
  workspaceId: text('workspace_id').notNull(),
  action: text('action').notNull(),
  resource: text('resource').notNull(),
  outcome: text('outcome', { enum: auditOutcomes }).notNull(),
  reason: text('reason').notNull().default(''),
  traceId: text('trace_id').notNull().default(''),
  requestId: text('request_id').notNull().default(''),
}, (t) => [
  index('audit_workspace_idx').on(t.workspaceId, t.at.desc()),
  index('audit_at_idx').on(t.at),
]);

export type AuditLogRow = typeof auditLog.$inferSelect;
export type NewAuditLogRow = typeof auditLog.$inferInsert;

/** Tokens and cost of one attempt's model calls. */
export const usage = pgTable('usage', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  jobId: uuid('job_id').notNull(),
  attempt: integer('attempt').notNull(),
  workspaceId: text('workspace_id').notNull(),
  queue: text('queue').notNull(),
  apiKeyId: text('api_key_id').notNull().default(''),
  provider: text('provider').notNull(),
  model: text('model').notNull(),
  promptTokens: bigint('prompt_tokens', { mode: 'number' }).notNull(),
  completionTokens: bigint('completion_tokens', { mode: 'number' }).notNull(),
  costUsd: doublePrecision('cost_usd').notNull(),
  at: timestamp('at', { withTimezone: true }).notNull().default(sql`now()`),
}, (t) => [index('usage_workspace_at_idx').on(t.workspaceId, t.at)]);

/**
 * Shared request counters for per-workspace rate limits, one row per workspace and
 * one-minute window. Job-service replicas reserve chunks of the allowance atomically,
 * so together they never admit more than the limit.
 */
export const rateWindows = pgTable('rate_windows', {
  workspaceId: text('workspace_id').notNull(),
  windowStart: timestamp('window_start', { withTimezone: true }).notNull(),
  used: integer('used').notNull(),
}, (t) => [primaryKey({ columns: [t.workspaceId, t.windowStart] })]);

export type RateWindowRow = typeof rateWindows.$inferSelect;
