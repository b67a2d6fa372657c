import { JobEvent, JobState, QueueServiceService, type Queue } from '@aijob/contracts';
import type { EventPublisher } from '@aijob/bus';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@aijob/core';
import { activeTraceId } from '@aijob/telemetry';
import type { CallContext, Implementation } from '@aijob/server';
import {
  leaseHolder, workspaceQueueCounts, type AuditRecord, type AuditWriter, type QueueCounts, type QueueRow, type Store,
} from '@aijob/store';
import type { QueueRepository } from './queue-repository.js';
import type { WorkerRegistry } from './worker-registry.js';

const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

function queueName(name: string): string {
  if (!NAME.test(name)) throw InvalidArgumentError.field('name', 'must be 1-64 characters of a-z, 0-9, _ and -');
  return name;
}

function toQueue(r: QueueRow, c: QueueCounts | undefined, now = Date.now()): Queue {
  return {
    name: r.name, maxConcurrency: r.maxConcurrency, rateLimitPerSecond: r.rateLimitPerSecond, weight: r.weight,
    paused: r.paused, createdAt: r.createdAt,
    stats: {
      pending: c?.pending ?? 0, dispatched: c?.dispatched ?? 0, running: c?.running ?? 0, retryWait: c?.retryWait ?? 0,
      oldestPendingAgeSeconds: c?.oldestPending ? Math.max(0, now - c.oldestPending.getTime()) / 1000 : 0,
    },
  };
}

/** Whether the caller sees every workspace's counts and the cluster's internals (admin only). */
const seesAll = (ctx: CallContext) => ctx.principal?.scopes.includes('admin') === true;

/**
 * gRPC handlers of aijob.v1.QueueService. Queues are shared by every workspace: their
 * settings, pause and resume are operator actions (`queues:admin`, which only an admin
 * grants); ClearQueue cancels the caller's own workspace's jobs; counts are the caller's
 * workspace's unless it is an admin. Changes are audited and reach the leader through Postgres.
 */
export function queueServiceHandlers(d: {
  queues: QueueRepository;
  registry: WorkerRegistry;
  store: Store;
  audit: AuditWriter;
  events: EventPublisher;
  leaseName: string;
  /** Tells the leader to apply changed settings now. */
  changed: () => void;
}): Implementation<typeof QueueServiceService> {
  const audited = async (ctx: CallContext, action: string, resource: string, reason = '',
    outcome: AuditRecord['outcome'] = 'allowed') => {
    await d.audit.write({
      actor: ctx.principal!.subject, workspaceId: ctx.principal!.workspaceId, action, resource, outcome, reason,
      traceId: activeTraceId(), requestId: ctx.requestId,
    });
  };
  const counts = (ctx: CallContext) => (seesAll(ctx) ? d.queues.counts() : workspaceQueueCounts(d.store.db, ctx.principal!.workspaceId));
  const withStats = async (ctx: CallContext, row: QueueRow) => toQueue(row, (await counts(ctx)).get(row.name));
  const setPaused = async (ctx: CallContext, name: string, paused: boolean) => {
    const action = paused ? 'queue.pause' : 'queue.resume';
    const existing = await d.queues.get(queueName(name));
    if (!existing) {
      // A refused change leaves its row too (the generic handler-error audit skips NOT_FOUND).
      await audited(ctx, action, `queue/${name}`, 'queue not found', 'denied');
      throw new NotFoundError('queue', name);
    }
    const row = await d.queues.put(name, { paused });
    d.changed();
    await audited(ctx, action, `queue/${name}`);
    return { queue: await withStats(ctx, row) };
  };

  return {
    async putQueue(req, ctx) {
      const name = queueName(req.name);
      if (req.maxConcurrency !== undefined && (req.maxConcurrency < 1 || req.maxConcurrency > 1_000_000)) {
        throw InvalidArgumentError.field('max_concurrency', 'must be between 1 and 1000000');
      }
      if (req.rateLimitPerSecond !== undefined && (!Number.isFinite(req.rateLimitPerSecond) || req.rateLimitPerSecond < 0)) {
        throw InvalidArgumentError.field('rate_limit_per_second', 'must be 0 (unlimited) or more');
      }
      if (req.weight !== undefined && (req.weight < 1 || req.weight > 1000)) throw InvalidArgumentError.field('weight', 'must be between 1 and 1000');
      const row = await d.queues.put(name, { maxConcurrency: req.maxConcurrency, ratePerSecond: req.rateLimitPerSecond, weight: req.weight });
      d.changed();
      await audited(ctx, 'queue.put', `queue/${name}`);
      return { queue: await withStats(ctx, row) };
    },
    async getQueue(req, ctx) {
      const row = await d.queues.get(queueName(req.name));
      if (!row) throw new NotFoundError('queue', req.name);
      return { queue: await withStats(ctx, row) };
    },
    async listQueues(_req, ctx) {
      const [rows, c] = await Promise.all([d.queues.all(), counts(ctx)]);
      return { queues: rows.map((r) => toQueue(r, c.get(r.name))) };
    },
    pauseQueue: (req, ctx) => setPaused(ctx, req.name, true),
    resumeQueue: (req, ctx) => setPaused(ctx, req.name, false),
    async clearQueue(req, ctx) {
      const name = queueName(req.name);
      const allowed = [JobState.JOB_STATE_QUEUED, JobState.JOB_STATE_RETRY_WAIT];
      if (req.states.some((s) => !allowed.includes(s))) {
        throw new FailedPreconditionError('ClearQueue cancels waiting jobs only (JOB_STATE_QUEUED, JOB_STATE_RETRY_WAIT); cancel running jobs one by one');
      }
      if (req.reason.length > 1024) throw InvalidArgumentError.field('reason', 'must be at most 1024 characters');
      const states = (req.states.length ? req.states : allowed).map((s) => JobState[s].replace('JOB_STATE_', ''));
      const cleared = await d.queues.clear(name, ctx.principal!.workspaceId, states, req.reason || 'queue cleared');
      await Promise.all(cleared.map((j) => d.events.publish(JobEvent.fromPartial({
        jobId: j.id, attempt: j.attempt, state: JobState.JOB_STATE_CANCELLED, at: new Date(), queue: name,
        workspaceId: ctx.principal!.workspaceId, traceparent: j.traceparent, source: 'scheduler',
        // The state it left: this announces a transition already recorded (the job service applies nothing).
        previousState: j.previousState === 'RETRY_WAIT' ? JobState.JOB_STATE_RETRY_WAIT : JobState.JOB_STATE_QUEUED,
      }))));
      await audited(ctx, 'queue.clear', `queue/${name}`, `${cleared.length} jobs cancelled`);
      return { cancelled: cleared.length };
    },
    async getClusterStats(_req, ctx) {
      const [c, leader] = await Promise.all([counts(ctx), leaseHolder(d.store.sql, d.leaseName)]);
      const queueDepth: Record<string, number> = {};
      let totalPending = 0;
      for (const [q, n] of c) {
        queueDepth[q] = n.pending + n.retryWait;
        totalPending += n.pending + n.retryWait;
      }
      const alive = d.registry.alive();
      return {
        totalPending, queueDepth, liveWorkers: alive.length,
        totalSlots: alive.reduce((n, w) => n + w.slots, 0), freeSlots: alive.reduce((n, w) => n + w.freeSlots, 0),
        // Which pod leads is the operators' business.
        leader: seesAll(ctx) ? leader ?? '' : '',
      };
    },
  };
}
