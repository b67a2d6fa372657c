import * as grpc from '@grpc/grpc-js';
import { durationToMs, WorkerServiceClient, type HeartbeatRequest, type HeartbeatResponse } from '@aijob/contracts';
import { internalChannelOptions } from '@aijob/telemetry';

const DEADLINE_MS = 5_000;

/**
 * A worker's calls to the scheduler's WorkerService: heartbeats, and confirming that an
 * old or redelivered dispatch is still worth running. Heartbeats keep to the interval
 * the scheduler answers with when it is shorter than the configured one: the scheduler
 * judges a worker silent for three of its intervals dead.
 */
export class SchedulerLink {
  private readonly client: WorkerServiceClient;
  private readonly md = new grpc.Metadata({ waitForReady: true });
  private interval: number;

  constructor(address: string, private readonly o: { internalToken?: string; intervalMs: number }) {
    this.client = new WorkerServiceClient(address, grpc.credentials.createInsecure(), internalChannelOptions);
    if (o.internalToken) this.md.set('x-aijob-internal', o.internalToken);
    this.interval = o.intervalMs;
  }

  /** Milliseconds to the next heartbeat. */
  get intervalMs(): number {
    return this.interval;
  }

  async heartbeat(hb: HeartbeatRequest): Promise<void> {
    const res = await new Promise<HeartbeatResponse>((resolve, reject) => {
      this.client.heartbeat(hb, this.md, { deadline: Date.now() + DEADLINE_MS }, (err, r) => (err ? reject(err) : resolve(r)));
    });
    const asked = res.interval ? durationToMs(res.interval) : 0;
    this.interval = asked > 0 ? Math.min(this.o.intervalMs, asked) : this.o.intervalMs;
  }

  /** Whether the attempt is still current and nobody else runs it; true when the scheduler cannot say. */
  confirm(jobId: string, attempt: number): Promise<boolean> {
    return new Promise((resolve) => {
      this.client.confirmDispatch({ jobId, attempt }, this.md, { deadline: Date.now() + DEADLINE_MS },
        (err, res) => resolve(err ? true : res.current));
    });
  }

  close(): void {
    this.client.close();
  }
}
