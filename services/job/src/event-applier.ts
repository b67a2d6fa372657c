import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { JobEvent, JobEvents, JobState, JobsChanged } from '@aijob/contracts';
import { consumeBatches, decode, encode, type EventPublisher, type Topology } from '@aijob/bus';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '@aijob/core';
import { counter, durationBuckets, histogram, markSpan } from '@aijob/telemetry';
import { applyAttemptReports, type AttemptHistoryRow, type MovedJob, type Store, type UsageRecord } from '@aijob/store';
import { foldEvents, type JobUpdate } from './event-fold.js';
import type { PriceTable } from './prices.js';

type Applied = MovedJob;

const rank: Record<string, number> = { QUEUED: 0, DISPATCHED: 1, RUNNING: 2 };

/**
 * Applies job events to the job record as guarded transitions, a consumed batch at a
 * time (applyAttemptReports in @aijob/store: one UPDATE for all jobs in the batch and
 * one INSERT for their history, in one transaction). A transition applies only to the job's current attempt while it is
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
      if (a.gangId && (a.previousState === 'RUNNING' || a.previousState === 'DISPATCHED') && !touched.has(a.id)) {
        this.nc.publish(this.t.subjects.cancel(a.id), new Uint8Array());
      }
      touched.add(a.id);
    }
    // Announce retries before acking: if this fails the batch is redelivered (and the
    // reconciler finds RETRY_WAIT jobs whose announcement was lost anyway).
    await Promise.all(retries.map((a) => this.events.publish(JobEvent.fromPartial({
      jobId: a.id, attempt: a.attempt, state: JobState.JOB_STATE_RETRY_WAIT, at: new Date(),
      nextAttemptAt: a.nextAttemptAt ?? new Date(), queue: a.queue, workspaceId: a.workspaceId,
      traceparent: a.traceparent, source: 'job', previousState: JobState.JOB_STATE_RUNNING,
      gangId: a.gangId ?? '', gangSize: a.gangSize, priority: a.priority,
    }))));
    if (touched.size > 0) this.nc.publish(this.t.subjects.jobsChanged, encode(JobsChanged, { jobIds: [...touched] }));
  }

  private write(updates: JobUpdate[]): Promise<Applied[]> {
    return applyAttemptReports(this.store.sql, updates, {
      retryBaseMs: this.o.retryBaseMs, retryMaxMs: this.o.retryMaxMs,
      history: (applied) => historyRows(updates, applied),
      usage: (applied) => this.usageRows(updates, applied),
    });
  }

  /** Usage rows, costed by the price table, for attempts whose end was applied. */
  private usageRows(updates: JobUpdate[], applied: Applied[]): UsageRecord[] {
    const byId = new Map(applied.map((a) => [a.id, a]));
    const rows: UsageRecord[] = [];
    for (const u of updates) {
      const a = byId.get(u.jobId);
      if (!a || u.state === 'RUNNING' || u.usage.length === 0) continue;
      for (const x of u.usage) {
        const cost = this.prices.cost(x.provider, x.model, x.promptTokens, x.completionTokens);
        rows.push({
          jobId: u.jobId, attempt: u.attempt, workspaceId: a.workspaceId, queue: a.queue, apiKeyId: a.createdBy,
          provider: x.provider.slice(0, 128), model: x.model.slice(0, 256), promptTokens: x.promptTokens,
          completionTokens: x.completionTokens, costUsd: cost, at: u.at,
        });
        this.metrics.tokens.inc({ provider: x.provider, model: x.model, type: 'prompt' }, x.promptTokens);
        this.metrics.tokens.inc({ provider: x.provider, model: x.model, type: 'completion' }, x.completionTokens);
        this.metrics.cost.inc({ provider: x.provider, model: x.model }, cost);
      }
    }
    return rows;
  }

  private observe(applied: Applied[], updates: JobUpdate[]): void {
    const tp = new Map(updates.map((u) => [u.jobId, u.events[u.events.length - 1]?.traceparent]));
    for (const a of applied) {
      // Each applied transition marks the job's trace (child of the worker's execution span).
      markSpan(`aijob.transition ${a.state}`, tp.get(a.id) || a.traceparent, {
        'aijob.job_id': a.id, 'aijob.state': a.state, 'aijob.previous_state': a.previousState, 'aijob.attempt': a.attempt,
      });
      this.metrics.transitions.inc({ to: a.state });
      const ended = a.state !== 'RUNNING' && a.state !== 'DISPATCHED';
      if (ended && a.startedAt) {
        const end = a.finishedAt ?? new Date();
        this.metrics.execution.observe({ queue: a.queue, type: a.type, status: a.state.toLowerCase() },
          Math.max(0, end.getTime() - a.startedAt.getTime()) / 1000);
      }
      if (a.state === 'SUCCEEDED' || a.state === 'FAILED' || a.state === 'CANCELLED') {
        this.metrics.completed.inc({ status: a.state.toLowerCase(), queue: a.queue, type: a.type });
      }
    }
  }
}

/** History rows for the transitions that moved each applied job forward. */
function historyRows(updates: JobUpdate[], applied: Applied[]): AttemptHistoryRow[] {
  const byId = new Map(applied.map((a) => [a.id, a]));
  const rows: AttemptHistoryRow[] = [];
  for (const u of updates) {
    const a = byId.get(u.jobId);
    if (!a) continue;
    let reached = rank[a.previousState] ?? 0;
    // A quick attempt reports only its end; its RUNNING step still belongs in the history.
    const first = u.events[0];
    if (reached < 2 && first && first.state !== JobState.JOB_STATE_RUNNING && first.startedAt) {
      rows.push({ jobId: u.jobId, attempt: u.attempt, state: 'RUNNING', workerId: first.workerId, detail: {}, at: first.startedAt });
      reached = 2;
    }
    for (const e of u.events) {
      const isEnd = e.state !== JobState.JOB_STATE_RUNNING;
      if (!isEnd && reached >= 2 && !e.hasProgress) continue;
      if (!isEnd && e.hasProgress && reached >= 2) {
        rows.push({ jobId: u.jobId, attempt: u.attempt, state: 'RUNNING', workerId: e.workerId,
          detail: { progress: e.progress, note: e.progressNote }, at: e.at ?? new Date() });
        continue;
      }
      if (!isEnd) {
        reached = 2;
        rows.push({ jobId: u.jobId, attempt: u.attempt, state: 'RUNNING', workerId: e.workerId, detail: {}, at: e.at ?? new Date() });
        continue;
      }
      rows.push({
        jobId: u.jobId, attempt: u.attempt, state: a.state, workerId: e.workerId,
        detail: a.state === 'RETRY_WAIT' ? { error: e.error, next_attempt_at: a.nextAttemptAt }
          : e.error ? { error: e.error } : a.state === 'DISPATCHED' ? { handed_back: true } : {},
        at: e.at ?? new Date(),
      });
      break;
    }
  }
  return rows;
}
