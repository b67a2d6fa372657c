import { WorkerServiceService, msToDuration } from '@aijob/contracts';
import { InvalidArgumentError, type Implementation } from '@aijob/platform';
import type { Store } from '@aijob/store';
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
    async confirmDispatch(req) {
      if (!UUID.test(req.jobId)) throw InvalidArgumentError.field('job_id', 'must be a job id (UUID)');
      const [row] = await d.store.sql<{ state: string; attempt: number }[]>`
        SELECT state, attempt FROM jobs WHERE id = ${req.jobId}`;
      return { current: row !== undefined && row.state === 'DISPATCHED' && row.attempt === req.attempt };
    },
  };
}
