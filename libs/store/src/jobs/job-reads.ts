import type { JobStateName } from '../schema/enums.js';
import { jobColumnList, raw, type JobRow, type Queryable } from './job-row.js';
import { activeKeys, type ActiveJob } from './scheduler-transitions.js';
import { stateList } from './state-machine.js';
import { activeStates } from '../schema/enums.js';

const active = stateList(activeStates);

/** One job of a workspace. */
export async function getJob(q: Queryable, workspaceId: string, id: string): Promise<JobRow | undefined> {
  const [row] = await q<JobRow[]>`SELECT ${raw(q, jobColumnList(''))} FROM jobs WHERE id = ${id} AND workspace_id = ${workspaceId}`;
  return row;
}

/** Several jobs of one workspace by id (in no particular order). */
export async function getJobs(q: Queryable, workspaceId: string, ids: readonly string[]): Promise<JobRow[]> {
  if (ids.length === 0) return [];
  return q<JobRow[]>`
    SELECT ${raw(q, jobColumnList(''))} FROM jobs WHERE id = ANY(${ids as string[]}::uuid[]) AND workspace_id = ${workspaceId}`;
}

export interface JobListQuery {
  workspaceId: string;
  queue?: string;
  type?: string;
  states: readonly JobStateName[];
  /** Exclusive upper bound of ids (paging newest first). */
  beforeId?: string;
  limit: number;
}

/** A workspace's jobs, newest first. */
export async function listJobs(q: Queryable, f: JobListQuery): Promise<JobRow[]> {
  const none = q``;
  return q<JobRow[]>`
    SELECT ${raw(q, jobColumnList(''))} FROM jobs WHERE workspace_id = ${f.workspaceId}
      ${f.queue ? q`AND queue = ${f.queue}` : none}
      ${f.type ? q`AND type = ${f.type}` : none}
      ${f.states.length > 0 ? q`AND state = ANY(${f.states as string[]}::text[])` : none}
      ${f.beforeId ? q`AND id < ${f.beforeId}::uuid` : none}
    ORDER BY id DESC LIMIT ${f.limit}`;
}

/** The workspace a job belongs to when it is not `workspaceId`'s, or undefined. */
export async function jobOwnerElsewhere(q: Queryable, workspaceId: string, id: string): Promise<string | undefined> {
  const [row] = await q<{ workspaceId: string }[]>`
    SELECT workspace_id AS "workspaceId" FROM jobs WHERE id = ${id} AND workspace_id <> ${workspaceId}`;
  return row?.workspaceId;
}

/** Jobs waiting platform-wide (QUEUED and RETRY_WAIT): backpressure. */
export async function countWaitingJobs(q: Queryable): Promise<number> {
  const [row] = await q<{ n: number }[]>`SELECT count(*)::int AS n FROM jobs WHERE state IN ('QUEUED', 'RETRY_WAIT')`;
  return row!.n;
}

/** A workspace's unfinished jobs: its max-pending policy. */
export async function countUnfinishedJobs(q: Queryable, workspaceId: string): Promise<number> {
  const [row] = await q<{ n: number }[]>`
    SELECT count(*)::int AS n FROM jobs WHERE workspace_id = ${workspaceId} AND state IN (${raw(q, active)})`;
  return row!.n;
}

/** A job's state, attempt and worker (a worker confirming a dispatch). */
export async function jobAttempt(q: Queryable, id: string): Promise<Pick<JobRow, 'state' | 'attempt' | 'workerId'> | undefined> {
  const [row] = await q<Pick<JobRow, 'state' | 'attempt' | 'workerId'>[]>`
    SELECT state, attempt, worker_id AS "workerId" FROM jobs WHERE id = ${id}`;
  return row;
}

/** Every unfinished job, `batch` rows at a time (the leader's rebuild). */
export async function forEachActiveJob(q: Queryable, batch: number, each: (rows: ActiveJob[]) => void): Promise<void> {
  await q<ActiveJob[]>`SELECT ${raw(q, jobColumnList('', activeKeys))} FROM jobs WHERE state IN (${raw(q, active)})`
    .cursor(batch, (rows) => { each(rows); });
}

/** Which of these jobs are DISPATCHED or RUNNING, at which attempt. */
export async function liveAttempts(q: Queryable, ids: readonly string[]): Promise<{ id: string; attempt: number }[]> {
  return q<{ id: string; attempt: number }[]>`
    SELECT id, attempt FROM jobs WHERE id = ANY(${ids as string[]}::uuid[]) AND state IN ('DISPATCHED', 'RUNNING')`;
}

/**
 * Waiting jobs to check against the scheduler's view: every RETRY_WAIT job, and QUEUED
 * ones with ids from `fromId` (UUID v7: created since) created before `createdBefore`.
 */
export async function waitingJobs(q: Queryable, fromId: string, createdBefore: Date): Promise<ActiveJob[]> {
  return q<ActiveJob[]>`
    SELECT ${raw(q, jobColumnList('', activeKeys))} FROM jobs
    WHERE (state = 'QUEUED' AND id >= ${fromId}::uuid AND created_at < ${createdBefore}) OR state = 'RETRY_WAIT' LIMIT 50000`;
}

export type RunningAttempt = Pick<JobRow, 'id' | 'attempt' | 'workerId' | 'queue' | 'workspaceId' | 'traceparent' |
  'startedAt' | 'timeoutMs' | 'state'>;

/** Every RUNNING attempt (the reconciler looks for lost workers and overruns). */
export async function runningAttempts(q: Queryable): Promise<RunningAttempt[]> {
  return q<RunningAttempt[]>`
    SELECT ${raw(q, jobColumnList('', ['id', 'attempt', 'workerId', 'queue', 'workspaceId', 'traceparent', 'startedAt', 'timeoutMs', 'state']))}
    FROM jobs WHERE state = 'RUNNING'`;
}

/** Attempts DISPATCHED for longer than `olderThanMs` (at most 10 000). */
export async function dispatchedSince(q: Queryable, olderThanMs: number): Promise<{ id: string; attempt: number }[]> {
  return q<{ id: string; attempt: number }[]>`
    SELECT id, attempt FROM jobs WHERE state = 'DISPATCHED'
      AND dispatched_at < now() - ${olderThanMs} * interval '1 millisecond' LIMIT 10000`;
}
