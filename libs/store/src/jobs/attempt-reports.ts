import type { JobStateName } from '../schema/enums.js';
import type { Sql, Tx } from '../client.js';
import { jobColumnList, raw, type JobRow, type UsageRow } from './job-row.js';
import { fromStates, jobTransitions, stateList, type JobTransition } from './state-machine.js';

/** What a batch of events says about one job's current attempt (folded by the job service). */
export interface AttemptReport {
  jobId: string;
  attempt: number;
  /** RUNNING, how the attempt ended, or DISPATCHED again when its worker handed it back. */
  state: 'DISPATCHED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
  workerId: string;
  at: Date;
  startedAt: Date | null;
  /** A SUCCEEDED attempt's output as JSON text (an object), stored as it is. */
  output: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  retryable: boolean;
  /** The least wait before the next attempt, when the failure said so. */
  retryAfterMs: number | null;
  progress: number | null;
  progressNote: string | null;
}

/** A job a transition moved: its row after, and the state it left. */
export type MovedJob = Pick<JobRow, 'id' | 'state' | 'attempt' | 'queue' | 'workspaceId' | 'type' | 'nextAttemptAt' |
  'startedAt' | 'finishedAt' | 'traceparent' | 'gangId' | 'gangSize' | 'createdBy' | 'priority'> & { previousState: JobStateName };

const movedKeys = ['id', 'state', 'attempt', 'queue', 'workspaceId', 'type', 'nextAttemptAt', 'startedAt', 'finishedAt',
  'traceparent', 'gangId', 'gangSize', 'createdBy', 'priority'] as const;

/** One history row of an applied report. */
export interface AttemptHistoryRow {
  jobId: string;
  attempt: number;
  state: JobStateName;
  workerId: string;
  detail: unknown;
  at: Date;
}

export type UsageRecord = Omit<UsageRow, 'id'>;

/** Which transitions each kind of report may make; the guard is built from their source states. */
const byReport: Record<AttemptReport['state'], JobTransition[]> = {
  RUNNING: ['start', 'report'],
  SUCCEEDED: ['succeed'],
  FAILED: ['fail', 'scheduleRetry'],
  CANCELLED: ['abort'],
  DISPATCHED: ['handBack'],
};
const sourcesOf = (ts: JobTransition[]) => stateList([...new Set(ts.flatMap((t) => jobTransitions[t].from))]);
const reportGuard = `CASE e.state ${Object.entries(byReport).map(([s, ts]) => `WHEN '${s}' THEN j.state IN (${sourcesOf(ts)})`).join(' ')} ELSE false END`;
const anyReport = sourcesOf(Object.values(byReport).flat());

/**
 * start, report, handBack, succeed, fail, scheduleRetry, abort, and with them gangRetry /
 * gangFail: applies a consumed batch of attempt reports in one transaction, one UPDATE
 * for every job in it, one INSERT for their history, one for their usage, and (when a
 * gang member failed) one UPDATE and one INSERT for its siblings. A report applies only
 * to the job's current attempt and only from the states its transitions start from, so
 * redelivered, late or reordered reports change nothing. Returns the jobs moved, gang
 * siblings after the reported jobs.
 */
export async function applyAttemptReports(sql: Sql, reports: readonly AttemptReport[], o: {
  retryBaseMs: number;
  retryMaxMs: number;
  /** The history rows of the reports that applied. */
  history: (applied: MovedJob[]) => AttemptHistoryRow[];
  /** The usage rows of the reports that applied. */
  usage: (applied: MovedJob[]) => UsageRecord[];
}): Promise<MovedJob[]> {
  const rows = reports.map((u) => ({
    job_id: u.jobId, attempt: u.attempt, state: u.state, worker_id: u.workerId, at: u.at, started_at: u.startedAt,
    output: u.output, error_code: u.errorCode, error_message: u.errorMessage, retryable: u.retryable,
    progress: u.progress, progress_note: u.progressNote, jitter: Math.random(), retry_after_ms: u.retryAfterMs,
  }));
  return sql.begin(async (tx) => {
    const applied = await tx<MovedJob[]>`
      UPDATE jobs j SET
        state = CASE
          WHEN e.state = 'FAILED' AND e.retryable AND j.attempt < j.max_attempts THEN 'RETRY_WAIT'
          ELSE e.state END,
        worker_id = CASE WHEN e.state = 'DISPATCHED' THEN NULL ELSE COALESCE(NULLIF(e.worker_id, ''), j.worker_id) END,
        started_at = CASE WHEN e.state = 'DISPATCHED' THEN NULL
          WHEN j.state = 'DISPATCHED' THEN COALESCE(e.started_at, e.at) ELSE j.started_at END,
        progress = COALESCE(e.progress, j.progress),
        progress_note = COALESCE(e.progress_note, j.progress_note),
        output = CASE WHEN e.state = 'SUCCEEDED' THEN e.output ELSE j.output END,
        error_code = CASE WHEN e.state IN ('FAILED', 'CANCELLED') THEN e.error_code ELSE j.error_code END,
        error_message = CASE WHEN e.state IN ('FAILED', 'CANCELLED') THEN e.error_message ELSE j.error_message END,
        error_retryable = CASE WHEN e.state IN ('FAILED', 'CANCELLED') THEN e.retryable ELSE j.error_retryable END,
        -- Exponential backoff with full jitter: a uniform wait in [0, base * 2^(attempt-1)],
        -- the step capped at RETRY_MAX_MS; a provider's Retry-After is the least wait.
        next_attempt_at = CASE
          WHEN e.state = 'FAILED' AND e.retryable AND j.attempt < j.max_attempts
          THEN now() + GREATEST(coalesce(e.retry_after_ms, 0)::float8, e.jitter * LEAST(${o.retryMaxMs}::float8,
            COALESCE(j.retry_base_ms, ${o.retryBaseMs})::float8 * power(2, j.attempt - 1))) * interval '1 millisecond'
          ELSE NULL END,
        finished_at = CASE
          WHEN e.state IN ('RUNNING', 'DISPATCHED') OR (e.state = 'FAILED' AND e.retryable AND j.attempt < j.max_attempts) THEN NULL
          ELSE e.at END,
        updated_at = now()
      FROM (
        SELECT u.*, o.state AS old_state FROM json_to_recordset(${rowsWithOutput(rows)}::text::json) AS u(
          job_id uuid, attempt int, state text, worker_id text, at timestamptz, started_at timestamptz,
          output jsonb, error_code text, error_message text, retryable bool, progress real, progress_note text,
          jitter float8, retry_after_ms int)
        JOIN jobs o ON o.id = u.job_id
      ) e
      WHERE j.id = e.job_id AND j.attempt = e.attempt AND j.state IN (${raw(tx, anyReport)})
        AND ${raw(tx, reportGuard)}
        -- RUNNING moves a dispatched job, reports progress, or is another worker taking over.
        AND (e.state <> 'RUNNING' OR j.state = 'DISPATCHED' OR e.progress IS NOT NULL
             OR (e.worker_id <> '' AND e.worker_id IS DISTINCT FROM j.worker_id))
        -- DISPATCHED (a hand-back) only from the worker running the attempt.
        AND (e.state <> 'DISPATCHED' OR (j.state = 'RUNNING' AND j.worker_id = e.worker_id))
      RETURNING ${raw(tx, jobColumnList('j', movedKeys))}, e.old_state AS "previousState"`;
    const history = o.history(applied);
    if (history.length > 0) {
      const doc = history.map((h) => ({ job_id: h.jobId, attempt: h.attempt, state: h.state, worker_id: h.workerId, detail: h.detail, at: h.at }));
      await tx`INSERT INTO job_events (job_id, attempt, state, source, worker_id, detail, at)
        SELECT job_id, attempt, state, 'worker', worker_id, detail, at
        FROM json_to_recordset(${JSON.stringify(doc)}::text::json) AS h(
          job_id uuid, attempt int, state text, worker_id text, detail jsonb, at timestamptz)`;
    }
    await insertUsage(tx, o.usage(applied));
    const siblings = await propagateGangFailures(tx, applied);
    return [...applied, ...siblings];
  });
}

async function insertUsage(tx: Tx, rows: UsageRecord[]): Promise<void> {
  if (rows.length === 0) return;
  const doc = rows.map((x) => ({
    job_id: x.jobId, attempt: x.attempt, workspace_id: x.workspaceId, queue: x.queue, api_key_id: x.apiKeyId,
    provider: x.provider, model: x.model, prompt_tokens: x.promptTokens, completion_tokens: x.completionTokens,
    cost_usd: x.costUsd, at: x.at,
  }));
  await tx`INSERT INTO usage (job_id, attempt, workspace_id, queue, api_key_id, provider, model, prompt_tokens,
      completion_tokens, cost_usd, at)
    SELECT * FROM json_to_recordset(${JSON.stringify(doc)}::text::json) AS u(job_id uuid, attempt int,
      workspace_id text, queue text, api_key_id text, provider text, model text, prompt_tokens bigint,
      completion_tokens bigint, cost_usd float8, at timestamptz)`;
}

/**
 * gangRetry / gangFail: a gang lives and dies together. When one member's attempt failed,
 * every other member of that attempt follows it: back to RETRY_WAIT (even those that had
 * succeeded, so the gang reruns as a whole) or to FAILED with GANG_MEMBER_FAILED.
 */
async function propagateGangFailures(tx: Tx, moved: MovedJob[]): Promise<MovedJob[]> {
  const byGang = new Map<string, MovedJob>();
  for (const f of moved) {
    if (f.gangId && (f.state === 'RETRY_WAIT' || f.state === 'FAILED') && !byGang.has(f.gangId)) byGang.set(f.gangId, f);
  }
  if (byGang.size === 0) return [];
  const doc = [...byGang.values()].map((f) => ({
    gang_id: f.gangId, member: f.id, attempt: f.attempt, state: f.state, next_attempt_at: f.nextAttemptAt,
  }));
  const changed = await tx<MovedJob[]>`
    WITH f AS (
      SELECT * FROM json_to_recordset(${JSON.stringify(doc)}::text::json)
        AS f(gang_id uuid, member uuid, attempt int, state text, next_attempt_at timestamptz)
    ), old AS (
      SELECT j.id, j.state, f.state AS to_state, f.next_attempt_at, f.member FROM jobs j JOIN f ON j.gang_id = f.gang_id
      WHERE j.id <> f.member AND j.attempt = f.attempt
        AND CASE f.state WHEN 'RETRY_WAIT' THEN j.state IN (${raw(tx, fromStates('gangRetry'))})
                         ELSE j.state IN (${raw(tx, fromStates('gangFail'))}) END
      FOR UPDATE OF j
    )
    UPDATE jobs j SET state = old.to_state, updated_at = now(),
      next_attempt_at = CASE WHEN old.to_state = 'RETRY_WAIT' THEN old.next_attempt_at ELSE NULL END,
      finished_at = CASE WHEN old.to_state = 'FAILED' THEN now() ELSE NULL END,
      error_code = 'GANG_MEMBER_FAILED', error_message = 'gang member ' || old.member || ' failed',
      error_retryable = old.to_state = 'RETRY_WAIT', output = CASE WHEN old.to_state = 'RETRY_WAIT' THEN NULL ELSE j.output END
    FROM old WHERE j.id = old.id
    RETURNING ${raw(tx, jobColumnList('j', movedKeys))}, old.state AS "previousState"`;
  if (changed.length > 0) {
    const hist = changed.map((c) => ({ id: c.id, attempt: c.attempt, state: c.state }));
    await tx`INSERT INTO job_events (job_id, attempt, state, source, detail)
      SELECT id, attempt, state, 'job', '{"error":{"code":"GANG_MEMBER_FAILED"}}'::jsonb
      FROM json_to_recordset(${JSON.stringify(hist)}::text::json) AS h(id uuid, attempt int, state text)`;
  }
  return changed;
}

/** The rows as a JSON array, each `output` (JSON text already) spliced in as it is. */
function rowsWithOutput(rows: { output: string | null }[]): string {
  return `[${rows.map(({ output, ...rest }) => {
    const head = JSON.stringify(rest);
    return output === null ? head : `${head.slice(0, -1)},"output":${output}}`;
  }).join(',')}]`;
}
