import { WorkerServiceService, msToDuration } from '@aijob/contracts';
import { InvalidArgumentError } from '@aijob/core';
import type { Implementation } from '@aijob/server';
import { jobAttempt, type Store } from '@aijob/store';
import type { WorkerRegistry } from './worker-registry.js';

const WORKER_ID = /^[\w.:@-]{1,128}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** gRPC handlers of aijob.v1.WorkerService. */
export function workerServiceHandlers(d: { registry: WorkerRegistry; store: Store; intervalMs: number }):
  Implementation<typeof WorkerServiceService> {
  return {
    async heartbeat(req) {
      if (!WORKER_ID.test(req.workerId)) throw InvalidArgumentError.field('worker_id', 'must be 1-128 characters of letters, digits, and ._:@-');
      if (req.slots < 0 || req.freeSlots < 0 || req.freeSlots > req.slots) {
        throw InvalidArgumentError.field('free_slots', 'must be between 0 and slots');
      }
      if (req.runningJobIds.length > 100_000) throw InvalidArgumentError.field('running_job_ids', 'too many');
      await d.registry.record(req);
      return { interval: msToDuration(d.intervalMs) };
    },
    /**
     * Whether a redelivered or old dispatch message is still worth running: its attempt is
     * the job's current one, and no live worker is running it (a worker that stopped
     * handed it back; one that died will not finish it).
     */
    async confirmDispatch(req) {
      if (!UUID.test(req.jobId)) throw InvalidArgumentError.field('job_id', 'must be a job id (UUID)');
      const row = await jobAttempt(d.store.sql, req.jobId);
      if (!row || row.attempt !== req.attempt) return { current: false };
      if (row.state === 'DISPATCHED') return { current: true };
      if (row.state !== 'RUNNING') return { current: false };
      const holder = row.workerId ? d.registry.get(row.workerId) : undefined;
      const held = holder !== undefined && d.registry.isAlive(holder.workerId) && holder.runningJobIds.includes(req.jobId);
      return { current: !held };
    },
  };
}
