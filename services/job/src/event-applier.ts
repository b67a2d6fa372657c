import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { JobEvent, JobEvents, JobState, JobsChanged } from '@aijob/contracts';
import { consumeBatches, decode, encode, type EventPublisher, type Topology } from '@aijob/bus';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '@aijob/core';
import { counter, durationBuckets, histogram, markSpan } from '@aijob/telemetry';
import type { Store, Tx } from '@aijob/store';
import { foldEvents, type JobUpdate } from './event-fold.js';
import type { PriceTable } from './prices.js';
import { propagateGangFailures, type GangChange } from './gang-propagation.js';

type Applied = GangChange;

const rank: Record<string, number> = { QUEUED: 0, DISPATCHED: 1, RUNNING: 2 };

/**
 * Applies job events to the job record as guarded transitions, a consumed batch at a
 * time: one UPDATE for all jobs in the batch and one INSERT for their history, in one
 * transaction. A transition applies only to the job's current attempt while it is
 * DISPATCHED or RUNNING, so redelivered, late or reordered events change nothing.
 * Retryable failures with attempts left become RETRY_WAIT, announced to the scheduler.
 */
export class EventApplier {
  private readonly metrics = {
    completed: counter('aijob_completed_total', 'Jobs that reached a terminal state, by status.', ['status', 'queue', 'type']),
    execution: histogram('aijob_execution_duration_seconds', 'Run time of attempts that ended, start to end.',
      ['queue', 'type', 'status'], durationBuckets),
    transitions: counter('aijob_state_transitions_total', 'Job state transitions applied.', ['to']),
    tokens: counter('ai_llm_tokens_total', 'Model tokens used by attempts that ended, by provider, model and type (prompt, completion).',
      ['provider', 'model', 'type']),
    cost: counter('ai_llm_cost_usd_total', 'Model cost in US dollars from the price table, by provider and model.', ['provider', 'model']),
  };

  constructor(
    private readonly store: Store,
    private readonly nc: NatsConnection,
    private readonly events: EventPublisher,
    private readonly t: Topology,
    private readonly log: Logger,
    private readonly prices: PriceTable,
    private readonly o: { retryBaseMs: number; retryMaxMs: number },
  ) {}

  start(open: () => Promise<Consumer>): { stop: () => Promise<void> } {
    return consumeBatches(open, (msgs) => this.handle(msgs), {
      maxBatch: 2_000, pullAhead: 4_000, retryDelayMs: 1_000, log: this.log,
    });
  }

  async handle(msgs: JsMsg[]): Promise<void> {
    const events: JobEvent[] = [];
    for (const m of msgs) {
      try {
        events.push(...decode(JobEvents, m.data).events);
      } catch (err) {
        this.log.error({ err, subject: m.subject, seq: m.seq }, 'undecodable event message; dropping it');
      }
    }
    await this.apply(events);
  }

  async apply(events: JobEvent[]): Promise<void> {
    const { updates, touched } = foldEvents(events);
    const applied = updates.length > 0 ? await this.write(updates) : [];
    this.observe(applied, updates);
    const retries = applied.filter((a) => a.state === 'RETRY_WAIT');
    // Gang siblings pulled out of a running attempt: abort their handlers.
    for (const a of applied) {
      if (a.gang_id && (a.old_state === 'RUNNING' || a.old_state === 'DISPATCHED') && !touched.has(a.id)) {
        this.nc.publish(this.t.subjects.cancel(a.id), new Uint8Array());
      }
      touched.add(a.id);
    }
    // Announce retries before acking: if this fails the batch is redelivered (and the
    // reconciler finds RETRY_WAIT jobs whose announcement was lost anyway).
    await Promise.all(retries.map((a) => this.events.publish(JobEvent.fromPartial({
      jobId: a.id, attempt: a.attempt, state: JobState.JOB_STATE_RETRY_WAIT, at: new Date(),
      nextAttemptAt: a.next_attempt_at ?? new Date(), queue: a.queue, workspaceId: a.workspace_id,
      traceparent: a.traceparent, source: 'job', previousState: JobState.JOB_STATE_RUNNING,
      gangId: a.gang_id ?? '', gangSize: a.gang_size, priority: (a as Applied & { priority?: number }).priority ?? 0,
    }))));
    if (touched.size > 0) this.nc.publish(this.t.subjects.jobsChanged, encode(JobsChanged, { jobIds: [...touched] }));
  }

  private async write(updates: JobUpdate[]): Promise<Applied[]> {
    const rows = updates.map((u) => ({
      job_id: u.jobId, attempt: u.attempt, state: u.state, worker_id: u.workerId, at: u.at, started_at: u.startedAt,
      output: u.output, error_code: u.errorCode, error_message: u.errorMessage, retryable: u.retryable,
      progress: u.progress, progress_note: u.progressNote, jitter: Math.random(), retry_after_ms: u.retryAfterMs,
    }));
    return this.store.sql.begin(async (tx) => {
      const applied = await tx<Applied[]>`
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
            THEN now() + GREATEST(coalesce(e.retry_after_ms, 0)::float8, e.jitter * LEAST(${this.o.retryMaxMs}::float8,
              COALESCE(j.retry_base_ms, ${this.o.retryBaseMs})::float8 * power(2, j.attempt - 1))) * interval '1 millisecond'
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
        WHERE j.id = e.job_id AND j.attempt = e.attempt AND j.state IN ('DISPATCHED', 'RUNNING')
          -- RUNNING moves a dispatched job, reports progress, or is another worker taking over.
          AND (e.state <> 'RUNNING' OR j.state = 'DISPATCHED' OR e.progress IS NOT NULL
               OR (e.worker_id <> '' AND e.worker_id IS DISTINCT FROM j.worker_id))
          -- DISPATCHED (a hand-back) only from the worker running the attempt.
          AND (e.state <> 'DISPATCHED' OR (j.state = 'RUNNING' AND j.worker_id = e.worker_id))
        RETURNING j.id, e.old_state, j.state, j.attempt, j.queue, j.workspace_id, j.type, j.next_attempt_at,
                  j.started_at, j.finished_at, j.traceparent, j.gang_id, j.gang_size, j.created_by, j.priority`;
      const history = historyRows(updates, applied);
      if (history.length > 0) {
        await tx`INSERT INTO job_events (job_id, attempt, state, source, worker_id, detail, at)
          SELECT job_id, attempt, state, 'worker', worker_id, detail, at
          FROM json_to_recordset(${JSON.stringify(history)}::text::json) AS h(
            job_id uuid, attempt int, state text, worker_id text, detail jsonb, at timestamptz)`;
      }
      await this.recordUsage(tx, updates, applied);
      const siblings = await propagateGangFailures(tx, applied);
      return [...applied, ...siblings];
    });
  }

  /** Usage rows, costed by the price table, for attempts whose end was applied. */
  private async recordUsage(tx: Tx, updates: JobUpdate[], applied: (Applied & { created_by?: string })[]): Promise<void> {
    const byId = new Map(applied.map((a) => [a.id, a]));
    const rows = [];
    for (const u of updates) {
      const a = byId.get(u.jobId);
      if (!a || u.state === 'RUNNING' || u.usage.length === 0) continue;
      for (const x of u.usage) {
        const cost = this.prices.cost(x.provider, x.model, x.promptTokens, x.completionTokens);
        rows.push({
          job_id: u.jobId, attempt: u.attempt, workspace_id: a.workspace_id, queue: a.queue, api_key_id: a.created_by ?? '',
          provider: x.provider.slice(0, 128), model: x.model.slice(0, 256), prompt_tokens: x.promptTokens,
          completion_tokens: x.completionTokens, cost_usd: cost, at: u.at,
        });
        this.metrics.tokens.inc({ provider: x.provider, model: x.model, type: 'prompt' }, x.promptTokens);
        this.metrics.tokens.inc({ provider: x.provider, model: x.model, type: 'completion' }, x.completionTokens);
        this.metrics.cost.inc({ provider: x.provider, model: x.model }, cost);
      }
    }
    if (rows.length === 0) return;
    await tx`INSERT INTO usage (job_id, attempt, workspace_id, queue, api_key_id, provider, model, prompt_tokens,
        completion_tokens, cost_usd, at)
      SELECT * FROM json_to_recordset(${JSON.stringify(rows)}::text::json) AS u(job_id uuid, attempt int,
        workspace_id text, queue text, api_key_id text, provider text, model text, prompt_tokens bigint,
        completion_tokens bigint, cost_usd float8, at timestamptz)`;
  }

  private observe(applied: Applied[], updates: JobUpdate[]): void {
    const tp = new Map(updates.map((u) => [u.jobId, u.events[u.events.length - 1]?.traceparent]));
    for (const a of applied) {
      // Each applied transition marks the job's trace (child of the worker's execution span).
      markSpan(`aijob.transition ${a.state}`, tp.get(a.id) || a.traceparent, {
        'aijob.job_id': a.id, 'aijob.state': a.state, 'aijob.previous_state': a.old_state, 'aijob.attempt': a.attempt,
      });
      this.metrics.transitions.inc({ to: a.state });
      const ended = a.state !== 'RUNNING' && a.state !== 'DISPATCHED';
      if (ended && a.started_at) {
        const end = a.finished_at ?? new Date();
        this.metrics.execution.observe({ queue: a.queue, type: a.type, status: a.state.toLowerCase() },
          Math.max(0, end.getTime() - a.started_at.getTime()) / 1000);
      }
      if (a.state === 'SUCCEEDED' || a.state === 'FAILED' || a.state === 'CANCELLED') {
        this.metrics.completed.inc({ status: a.state.toLowerCase(), queue: a.queue, type: a.type });
      }
    }
  }
}

/** The rows as a JSON array, each `output` (JSON text already) spliced in as it is. */
function rowsWithOutput(rows: { output: string | null }[]): string {
  return `[${rows.map(({ output, ...rest }) => {
    const head = JSON.stringify(rest);
    return output === null ? head : `${head.slice(0, -1)},"output":${output}}`;
  }).join(',')}]`;
}

/** History rows for the transitions that moved each applied job forward. */
function historyRows(updates: JobUpdate[], applied: Applied[]) {
  const byId = new Map(applied.map((a) => [a.id, a]));
  const rows: { job_id: string; attempt: number; state: string; worker_id: string; detail: unknown; at: Date }[] = [];
  for (const u of updates) {
    const a = byId.get(u.jobId);
    if (!a) continue;
    let reached = rank[a.old_state] ?? 0;
    // A quick attempt reports only its end; its RUNNING step still belongs in the history.
    const first = u.events[0];
    if (reached < 2 && first && first.state !== JobState.JOB_STATE_RUNNING && first.startedAt) {
      rows.push({ job_id: u.jobId, attempt: u.attempt, state: 'RUNNING', worker_id: first.workerId, detail: {}, at: first.startedAt });
      reached = 2;
    }
    for (const e of u.events) {
      const isEnd = e.state !== JobState.JOB_STATE_RUNNING;
      if (!isEnd && reached >= 2 && !e.hasProgress) continue;
      if (!isEnd && e.hasProgress && reached >= 2) {
        rows.push({ job_id: u.jobId, attempt: u.attempt, state: 'RUNNING', worker_id: e.workerId,
          detail: { progress: e.progress, note: e.progressNote }, at: e.at ?? new Date() });
        continue;
      }
      if (!isEnd) {
        reached = 2;
        rows.push({ job_id: u.jobId, attempt: u.attempt, state: 'RUNNING', worker_id: e.workerId, detail: {}, at: e.at ?? new Date() });
        continue;
      }
      rows.push({
        job_id: u.jobId, attempt: u.attempt, state: a.state, worker_id: e.workerId,
        detail: a.state === 'RETRY_WAIT' ? { error: e.error, next_attempt_at: a.next_attempt_at }
          : e.error ? { error: e.error } : a.state === 'DISPATCHED' ? { handed_back: true } : {},
        at: e.at ?? new Date(),
      });
      break;
    }
  }
  return rows;
}
