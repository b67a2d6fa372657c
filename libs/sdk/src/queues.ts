import type {
  ClearQueueResponse, GetClusterStatsResponse, GetQueueResponse, JobState, ListQueuesResponse, PauseQueueResponse,
  PutQueueResponse, Queue, QueueServiceClient, ResumeQueueResponse,
} from '@aijob/contracts';
import type { CallOptions, Unary } from './calls.js';

/** Queues and the cluster (`client.queues`); served by the scheduler (`queueAddress`). */
export class QueuesApi {
  constructor(private readonly c: QueueServiceClient, private readonly unary: Unary) {}

  async list(opts?: CallOptions): Promise<Queue[]> {
    return (await this.unary<ListQueuesResponse>((md, co, cb) => this.c.listQueues({}, md, co, cb), opts, true)).queues;
  }

  async get(name: string, opts?: CallOptions): Promise<Queue> {
    return (await this.unary<GetQueueResponse>((md, co, cb) => this.c.getQueue({ name }, md, co, cb), opts, true)).queue!;
  }

  /** Creates a queue or changes the settings given. */
  async put(name: string, s: { maxConcurrency?: number; rateLimitPerSecond?: number; weight?: number } = {}, opts?: CallOptions): Promise<Queue> {
    return (await this.unary<PutQueueResponse>((md, co, cb) => this.c.putQueue({ name, ...s }, md, co, cb), opts, true)).queue!;
  }

  async pause(name: string, opts?: CallOptions): Promise<Queue> {
    return (await this.unary<PauseQueueResponse>((md, co, cb) => this.c.pauseQueue({ name }, md, co, cb), opts, true)).queue!;
  }

  async resume(name: string, opts?: CallOptions): Promise<Queue> {
    return (await this.unary<ResumeQueueResponse>((md, co, cb) => this.c.resumeQueue({ name }, md, co, cb), opts, true)).queue!;
  }

  /** Cancels the queue's waiting jobs of your workspace; returns how many. */
  async clear(name: string, o: { states?: JobState[]; reason?: string } = {}, opts?: CallOptions): Promise<number> {
    return (await this.unary<ClearQueueResponse>((md, co, cb) =>
      this.c.clearQueue({ name, states: o.states ?? [], reason: o.reason ?? '' }, md, co, cb), opts, false)).cancelled;
  }

  async clusterStats(opts?: CallOptions): Promise<GetClusterStatsResponse> {
    return this.unary<GetClusterStatsResponse>((md, co, cb) => this.c.getClusterStats({}, md, co, cb), opts, true);
  }
}
