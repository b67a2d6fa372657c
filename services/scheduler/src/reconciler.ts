import { JobEvent, JobState } from '@aijob/contracts';
import type { EventPublisher } from '@aijob/bus';
import { errorMessage, type Logger } from '@aijob/core';
import { counter } from '@aijob/telemetry';
import type { Store } from '@aijob/store';
import type { GangAssembly } from './gangs.js';
import type { SchedulerState } from './scheduler-state.js';
import type { WorkerRegistry } from './worker-registry.js';

interface ActiveRow {
  id: string;
  workspace_id: string;
  queue: string;
  priority: number;
  state: 'QUEUED' | 'DISPATCHED' | 'RUNNING' | 'RETRY_WAIT';
  attempt: number;
  created_at: Date;
  updated_at: Date;
  run_at: Date | null;
  next_attempt_at: Date | null;
  gang_id: string | null;
  gang_size: number;
}

export const activeColumns = `id, workspace_id, queue, priority, state, attempt, created_at, updated_at, run_at,
  next_attempt_at, gang_id, gang_size`;
export type { ActiveRow };

export interface ReconcilerOptions {
  /** DISPATCHED this long and its message missing from the stream on two passes: it was lost. */
  dispatchStuckMs: number;
  gangPlacementTimeoutMs: number;
  heartbeatIntervalMs: number;
}

/** A UUID v7 lower bound for rows created at or after `ms` (ids sort by creation time). */
export function uuidAt(ms: number): string {
  const hex = Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}

/**
 * The leader's self-healing passes. Each compares the in-memory view, Postgres and
 * the worker registry, and repairs what drifted: slots held by attempts that ended
 * unheard, announcements lost between commit and publish, workers that died with jobs,
 * dispatch messages lost, gangs that cannot be placed.
 */
export class Reconciler {
  private outboxMark = Date.now() - 60_000;
  private readonly metrics = {
    passes: counter('controller_reconcile_total', 'Reconciliation passes run by the leader.'),
    errors: counter('controller_reconcile_errors_total', 'Reconciliation passes that failed.'),
    repairs: counter('controller_reconcile_repairs_total', 'Things a reconciliation pass repaired, by kind.', ['kind']),
  };

  constructor(private readonly d: {
    store: Store;
    state: SchedulerState;
    gangs: GangAssembly;
    registry: WorkerRegistry;
    events: EventPublisher;
    log: Logger;
    /** Adds a waiting job (or gang member) to the view. */
    track: (row: ActiveRow, now: number) => void;
    /** `<job id>:<attempt>` of every message in the dispatch stream (waiting or unacked). */
    dispatchMessages: () => Promise<Set<string>>;
    o: ReconcilerOptions;
  }) {}

  async pass(): Promise<void> {
    this.metrics.passes.inc();
    try {
      await this.resyncInflight();
      await this.pickUpWaiting();
      await this.failLostAttempts();
      await this.requeueStuckDispatches();
      await this.failUnplaceableGangs();
    } catch (err) {
      this.metrics.errors.inc();
      this.d.log.warn({ err: errorMessage(err) }, 'reconcile pass failed');
    }
  }

  /** Frees slots of attempts that ended without our hearing of it. */
  private async resyncInflight(): Promise<void> {
    const inflight: { id: string; attempt: number }[] = [];
    for (const q of this.d.state.queues.values()) {
      for (const j of q.inflight.values()) if (j.attempt >= 0) inflight.push({ id: j.id, attempt: j.attempt });
    }
    if (inflight.length === 0) return;
    const live = await this.d.store.sql<{ id: string; attempt: number }[]>`
      SELECT id, attempt FROM jobs WHERE id = ANY(${inflight.map((j) => j.id)}::uuid[]) AND state IN ('DISPATCHED', 'RUNNING')`;
    const current = new Set(live.map((r) => `${r.id}:${r.attempt}`));
    for (const j of inflight) {
      if (!current.has(`${j.id}:${j.attempt}`) && this.d.state.release(j.id, j.attempt)) this.repaired('slot');
    }
  }

  /**
   * Waiting jobs the view lacks: RETRY_WAIT ones whose announcement was lost, and QUEUED
   * ones created recently whose submitted message never came (the job service died
   * between commit and publish). A window over recent ids keeps this cheap.
   */
  private async pickUpWaiting(): Promise<void> {
    const now = Date.now();
    const from = uuidAt(this.outboxMark - 5_000);
    const until = now - 2_000;
    const rows = await this.d.store.sql.unsafe<ActiveRow[]>(
      `SELECT ${activeColumns} FROM jobs
       WHERE (state = 'QUEUED' AND id >= $1::uuid AND created_at < $2) OR state = 'RETRY_WAIT' LIMIT 50000`,
      [from, new Date(until)]);
    this.outboxMark = until;
    for (const r of rows) {
      if (this.d.state.where.has(r.id) || this.d.gangs.has(r.id)) continue;
      this.d.track(r, now);
      this.repaired(r.state === 'QUEUED' ? 'unannounced' : 'retry_unannounced');
    }
  }

  /**
   * Attempts whose worker is gone (silent for three heartbeats), or alive but no longer
   * reporting the job, or that overran their timeout with no worker alive: they fail
   * as retryable WORKER_LOST / TIMEOUT, so the job runs again elsewhere.
   */
  private async failLostAttempts(): Promise<void> {
    if (!this.d.registry.settled) return;
    const now = Date.now();
    const rows = await this.d.store.sql<{ id: string; attempt: number; worker_id: string | null; queue: string;
      workspace_id: string; traceparent: string; started_at: Date | null; timeout_ms: number; state: string }[]>`
      SELECT id, attempt, worker_id, queue, workspace_id, traceparent, started_at, timeout_ms, state
      FROM jobs WHERE state = 'RUNNING'`;
    const grace = this.d.o.heartbeatIntervalMs * 3;
    for (const r of rows) {
      const worker = r.worker_id ? this.d.registry.get(r.worker_id) : undefined;
      const alive = worker !== undefined && now - worker.seenAt <= grace;
      let code: string | undefined;
      if (!alive) {
        code = r.started_at && now - r.started_at.getTime() > r.timeout_ms + grace ? 'TIMEOUT' : 'WORKER_LOST';
      } else if (r.started_at && worker.seenAt - r.started_at.getTime() > grace && !worker.runningJobIds.includes(r.id)) {
        code = 'WORKER_LOST';
      }
      if (!code) continue;
      this.repaired(code.toLowerCase());
      await this.d.events.publish(JobEvent.fromPartial({
        jobId: r.id, attempt: r.attempt, state: JobState.JOB_STATE_FAILED, workerId: r.worker_id ?? '', at: new Date(),
        error: { code, message: code === 'TIMEOUT' ? 'timed out with no live worker' : `worker ${r.worker_id} stopped running it`, retryable: true },
        queue: r.queue, workspaceId: r.workspace_id, traceparent: r.traceparent, source: 'scheduler', startedAt: r.started_at ?? undefined,
      }));
    }
  }

  /**
   * DISPATCHED for a while and its message is not in the dispatch stream (neither
   * waiting nor being worked on), on two passes in a row: the message was lost (a
   * leader died between commit and publish, or NATS lost it). The job is queued again.
   */
  private async requeueStuckDispatches(): Promise<void> {
    const stuck = await this.d.store.sql<{ id: string; attempt: number }[]>`
      SELECT id, attempt FROM jobs WHERE state = 'DISPATCHED'
        AND dispatched_at < now() - ${this.d.o.dispatchStuckMs} * interval '1 millisecond' LIMIT 10000`;
    if (stuck.length === 0) { this.suspects.clear(); return; }
    const present = await this.d.dispatchMessages();
    const missing = stuck.filter((r) => !present.has(`${r.id}:${r.attempt}`)).map((r) => `${r.id}:${r.attempt}`);
    const confirmed = missing.filter((k) => this.suspects.has(k));
    this.suspects = new Set(missing);
    if (confirmed.length === 0) return;
    const doc = confirmed.map((k) => { const [id, attempt] = k.split(':'); return { id, attempt: Number(attempt) }; });
    const requeued = await this.d.store.sql.unsafe<ActiveRow[]>(
      `UPDATE jobs j SET state = 'QUEUED', updated_at = now(), dispatched_at = NULL
       FROM json_to_recordset($1::text::json) AS c(id uuid, attempt int)
       WHERE j.id = c.id AND j.attempt = c.attempt AND j.state = 'DISPATCHED'
       RETURNING ${activeColumns.split(',').map((x) => `j.${x.trim()}`).join(', ')}`, [JSON.stringify(doc)]);
    const now = Date.now();
    for (const r of requeued) {
      this.d.state.release(r.id);
      this.d.track(r, now);
      this.repaired('dispatch_lost');
    }
    if (requeued.length) this.d.log.warn({ jobs: requeued.length }, 'dispatch messages lost; jobs queued again');
  }

  private suspects = new Set<string>();

  /**
   * Gangs ready for longer than the placement timeout fail as a whole. The clock starts
   * when the gang became ready to start (run_at or its retry reached, or this leader's
   * rebuild), not at submit: a delayed gang is not placed before its time anyway.
   */
  private async failUnplaceableGangs(): Promise<void> {
    const now = Date.now();
    const timeout = this.d.o.gangPlacementTimeoutMs;
    const expired = new Set(this.d.gangs.expire(now, timeout));
    for (const q of this.d.state.queues.values()) {
      for (const heap of q.byWorkspace.values()) {
        for (const j of heap.toArray()) if (j.gangId && now - (j.readyAt ?? now) > timeout) expired.add(j.gangId);
      }
    }
    for (const gangId of expired) {
      const failed = await this.d.store.sql<{ id: string; attempt: number; queue: string; workspace_id: string; traceparent: string }[]>`
        WITH upd AS (
          UPDATE jobs SET state = 'FAILED', finished_at = now(), updated_at = now(), next_attempt_at = NULL,
            error_code = 'GANG_PLACEMENT_TIMEOUT', error_retryable = false,
            error_message = 'not enough free worker slots to start every member at once within the placement timeout'
          WHERE gang_id = ${gangId} AND state IN ('QUEUED', 'RETRY_WAIT')
          RETURNING id, attempt, queue, workspace_id, traceparent
        ), hist AS (
          INSERT INTO job_events (job_id, attempt, state, source, detail)
          SELECT id, attempt, 'FAILED', 'scheduler', '{"error":{"code":"GANG_PLACEMENT_TIMEOUT"}}'::jsonb FROM upd
        )
        SELECT * FROM upd`;
      for (const f of failed) {
        this.d.state.remove(f.id);
        await this.d.events.publish(JobEvent.fromPartial({
          jobId: f.id, attempt: f.attempt, state: JobState.JOB_STATE_FAILED, at: new Date(), queue: f.queue,
          workspaceId: f.workspace_id, traceparent: f.traceparent, source: 'job', gangId,
          error: { code: 'GANG_PLACEMENT_TIMEOUT', message: 'gang could not be placed', retryable: false },
        }));
      }
      if (failed.length) { this.repaired('gang_timeout'); this.d.log.warn({ gang_id: gangId, members: failed.length }, 'gang placement timed out'); }
    }
  }

  private repaired(kind: string): void {
    this.metrics.repairs.inc({ kind });
  }
}
