import { QueueServiceService, WorkerServiceService, msToDuration } from '@aijob/contracts';
import { InvalidArgumentError, type Implementation } from '@aijob/platform';
import type { Store } from '@aijob/store';
import type { QueueRepository } from './queue-repository.js';
import type { WorkerRegistry } from './worker-registry.js';

const WORKER_ID = /^[\w.:@-]{1,128}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** gRPC handlers of aijob.v1.QueueService. */
export function queueServiceHandlers(d: { queues: QueueRepository; registry: WorkerRegistry; store: Store; leaseName: string }):
  Implementation<typeof QueueServiceService> {
  return {
    async listQueues() {
      const [rows, counts] = await Promise.all([d.queues.all(), d.queues.counts()]);
      const now = Date.now();
      return {
        queues: rows.map((r) => {
          const c = counts.get(r.name);
          return {
            name: r.name, maxConcurrency: r.max_concurrency, rateLimitPerSecond: r.rate_limit_per_second,
            weight: r.weight, paused: r.paused, createdAt: r.created_at,
            stats: {
              pending: c?.pending ?? 0, dispatched: c?.dispatched ?? 0, running: c?.running ?? 0,
              retryWait: c?.retry_wait ?? 0,
              oldestPendingAgeSeconds: c?.oldest_pending ? Math.max(0, now - c.oldest_pending.getTime()) / 1000 : 0,
            },
          };
        }),
      };
    },
    async getClusterStats() {
      const [counts, [lease]] = await Promise.all([
        d.queues.counts(),
        d.store.sql<{ holder: string }[]>`SELECT holder FROM leases WHERE name = ${d.leaseName} AND expires_at > now()`,
      ]);
      const queueDepth: Record<string, number> = {};
      let totalPending = 0;
      for (const [q, c] of counts) {
        queueDepth[q] = c.pending + c.retry_wait;
        totalPending += c.pending + c.retry_wait;
      }
      const alive = d.registry.alive();
      return {
        totalPending, queueDepth, liveWorkers: alive.length,
        totalSlots: alive.reduce((n, w) => n + w.slots, 0), freeSlots: alive.reduce((n, w) => n + w.freeSlots, 0),
        leader: lease?.holder ?? '',
      };
    },
  };
}

/** gRPC handlers of aijob.v1.WorkerService. */
export function workerServiceHandlers(d: { registry: WorkerRegistry; store: Store; intervalMs: number }):
  Implementation<typeof WorkerServiceService> {
  return {
    async heartbeat(req) {
      if (!WORKER_ID.test(req.workerId)) throw InvalidArgumentError.field('worker_id', 'must be 1-128 characters of letters, digits, and ._:@-');
      if (req.slots < 0 || req.freeSlots < 0 || req.freeSlots > req.slots) {
        throw InvalidArgumentError.field('free_slots', 'must be between 0 and slots');
      }
      await d.registry.record(req);
      return { interval: msToDuration(d.intervalMs) };
    },
    async confirmDispatch(req) {
      if (!UUID.test(req.jobId)) throw InvalidArgumentError.field('job_id', 'must be a job id (UUID)');
      const [row] = await d.store.sql<{ state: string; attempt: number }[]>`
        SELECT state, attempt FROM jobs WHERE id = ${req.jobId}`;
      return { current: row !== undefined && row.state === 'DISPATCHED' && row.attempt === req.attempt };
    },
  };
}
