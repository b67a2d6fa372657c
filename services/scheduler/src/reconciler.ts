import { JobEvent, JobState } from '@aijob/contracts';
import type { EventPublisher } from '@aijob/bus';
import { errorMessage, type Logger } from '@aijob/core';
import { counter } from '@aijob/telemetry';
import {
  dispatchedSince, failUnplaceableGang, liveAttempts, requeueLostDispatches, runningAttempts, waitingJobs,
  type ActiveJob, type Store,
} from '@aijob/store';
import type { GangAssembly } from './gangs.js';
import type { SchedulerState } from './scheduler-state.js';
import type { WorkerRegistry } from './worker-registry.js';

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
    track: (row: ActiveJob, now: number) => void;
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
    const live = await liveAttempts(this.d.store.sql, inflight.map((j) => j.id));
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
    const rows = await waitingJobs(this.d.store.sql, from, new Date(until));
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
    const rows = await runningAttempts(this.d.store.sql);
    const grace = this.d.o.heartbeatIntervalMs * 3;
    for (const r of rows) {
      const worker = r.workerId ? this.d.registry.get(r.workerId) : undefined;
      const alive = worker !== undefined && now - worker.seenAt <= grace;
      let code: string | undefined;
      if (!alive) {
        code = r.startedAt && now - r.startedAt.getTime() > r.timeoutMs + grace ? 'TIMEOUT' : 'WORKER_LOST';
      } else if (r.startedAt && worker.seenAt - r.startedAt.getTime() > grace && !worker.runningJobIds.includes(r.id)) {
        code = 'WORKER_LOST';
      }
      if (!code) continue;
      this.repaired(code.toLowerCase());
      await this.d.events.publish(JobEvent.fromPartial({
        jobId: r.id, attempt: r.attempt, state: JobState.JOB_STATE_FAILED, workerId: r.workerId ?? '', at: new Date(),
        error: { code, message: code === 'TIMEOUT' ? 'timed out with no live worker' : `worker ${r.workerId} stopped running it`, retryable: true },
        queue: r.queue, workspaceId: r.workspaceId, traceparent: r.traceparent, source: 'scheduler', startedAt: r.startedAt ?? undefined,
      }));
    }
  }

  /**
   * DISPATCHED for a while and its message is not in the dispatch stream (neither
   * waiting nor being worked on), on two passes in a row: the message was lost (a
   * leader died between commit and publish, or NATS lost it). The job is queued again.
   */
  private async requeueStuckDispatches(): Promise<void> {
    const stuck = await dispatchedSince(this.d.store.sql, this.d.o.dispatchStuckMs);
    if (stuck.length === 0) { this.suspects.clear(); return; }
    const present = await this.d.dispatchMessages();
    const missing = stuck.filter((r) => !present.has(`${r.id}:${r.attempt}`)).map((r) => `${r.id}:${r.attempt}`);
    const confirmed = missing.filter((k) => this.suspects.has(k));
    this.suspects = new Set(missing);
    if (confirmed.length === 0) return;
    const lost = confirmed.map((k) => { const [id, attempt] = k.split(':'); return { id: id!, attempt: Number(attempt) }; });
    const requeued = await requeueLostDispatches(this.d.store.sql, lost);
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
      const failed = await failUnplaceableGang(this.d.store.sql, gangId);
      for (const f of failed) {
        this.d.state.remove(f.id);
        await this.d.events.publish(JobEvent.fromPartial({
          jobId: f.id, attempt: f.attempt, state: JobState.JOB_STATE_FAILED, at: new Date(), queue: f.queue,
          workspaceId: f.workspaceId, traceparent: f.traceparent, source: 'scheduler', gangId,
          // The state it left: this announces a transition already recorded (the job service applies nothing).
          previousState: f.previousState === 'RETRY_WAIT' ? JobState.JOB_STATE_RETRY_WAIT : JobState.JOB_STATE_QUEUED,
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
