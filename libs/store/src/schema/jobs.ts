import { sql } from 'drizzle-orm';
import {
  bigint, boolean, index, integer, jsonb, pgTable, real, text, timestamp, uniqueIndex, uuid,
} from 'drizzle-orm/pg-core';
import { jobStates } from './enums.js';

/**
 * The job record. Every change of `state` goes through libs/store/src/job-transitions.ts
 * (the state diagram and the named, guarded transitions); rows are read as `JobRow`.
 */
export const jobs = pgTable('jobs', {
  id: uuid('id').primaryKey(),
  workspaceId: text('workspace_id').notNull(),
  queue: text('queue').notNull(),
  type: text('type').notNull(),
  state: text('state', { enum: jobStates }).notNull(),
  priority: integer('priority').notNull().default(0),
  attempt: integer('attempt').notNull().default(0),
  maxAttempts: integer('max_attempts').notNull(),
  timeoutMs: integer('timeout_ms').notNull(),
  /** Base of the retry backoff; NULL: the service default. */
  retryBaseMs: integer('retry_base_ms'),
  input: jsonb('input').$type<Record<string, unknown>>().notNull(),
  output: jsonb('output').$type<Record<string, unknown>>(),
  errorCode: text('error_code'),
  errorMessage: text('error_message'),
  errorRetryable: boolean('error_retryable'),
  labels: jsonb('labels').$type<Record<string, string>>().notNull().default({}),
  idempotencyKey: text('idempotency_key'),
  runAt: timestamp('run_at', { withTimezone: true }),
  nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true }),
  gangId: uuid('gang_id'),
  gangSize: integer('gang_size').notNull().default(0),
  workerId: text('worker_id'),
  progress: real('progress'),
  progressNote: text('progress_note'),
  createdBy: text('created_by').notNull().default(''),
  traceparent: text('traceparent').notNull().default(''),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().default(sql`now()`),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().default(sql`now()`),
  dispatchedAt: timestamp('dispatched_at', { withTimezone: true }),
  startedAt: timestamp('started_at', { withTimezone: true }),
  finishedAt: timestamp('finished_at', { withTimezone: true }),
}, (t) => [
  uniqueIndex('jobs_idempotency_idx').on(t.workspaceId, t.idempotencyKey)
    .where(sql`${t.idempotencyKey} IS NOT NULL`),
  index('jobs_workspace_idx').on(t.workspaceId, t.id.desc()),
  index('jobs_workspace_state_idx').on(t.workspaceId, t.state, t.id.desc()),
  index('jobs_active_idx').on(t.queue, t.state)
    .where(sql`${t.state} IN ('QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT')`),
  index('jobs_dead_letter_idx').on(t.workspaceId, t.finishedAt)
    .where(sql`${t.state} = 'FAILED'`),
]);

/** Append-only history of every transition applied to a job. */
export const jobEvents = pgTable('job_events', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  jobId: uuid('job_id').notNull(),
  attempt: integer('attempt').notNull(),
  state: text('state', { enum: jobStates }).notNull(),
  /** Who wrote the transition: worker (applied worker events), job (the job service), scheduler. */
  source: text('source').notNull(),
  workerId: text('worker_id'),
  detail: jsonb('detail'),
  at: timestamp('at', { withTimezone: true }).notNull().default(sql`now()`),
}, (t) => [index('job_events_job_idx').on(t.jobId, t.id)]);
