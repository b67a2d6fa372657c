import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { HeartbeatRequest } from '@aijob/contracts';
import { errorMessage, type Logger } from '@aijob/core';
import { gauge } from '@aijob/telemetry';

export interface WorkerInfo extends HeartbeatRequest {
  /** When the scheduler last heard from it (ms since epoch). */
  seenAt: number;
}

const keyOf = (workerId: string) => workerId.replace(/[^A-Za-z0-9_=-]/g, '_');

/**
 * Live workers, kept in a NATS KV bucket so every scheduler replica answers for them.
 * Any replica records heartbeats; each keeps a watched copy. A worker not heard from
 * for three intervals is dead.
 */
export class WorkerRegistry {
  private kv: KV | undefined;
  private readonly workers = new Map<string, WorkerInfo>();
  private watching: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly nc: NatsConnection, private readonly o: { bucket: string; intervalMs: number; replicas: number; log: Logger }) {
    const alive = () => this.alive();
    gauge('aijob_workers_live', 'Workers heard from within three heartbeat intervals.', [], function () {
      this.set(alive().length);
    });
  }

  async start(): Promise<void> {
    await this.open();
    this.watching = this.watch();
  }

  private async open(): Promise<void> {
    this.kv = await new Kvm(this.nc).create(this.o.bucket, {
      history: 1, ttl: this.o.intervalMs * 10, replicas: this.o.replicas,
    });
  }

  async record(hb: HeartbeatRequest): Promise<void> {
    const info: WorkerInfo = { ...hb, seenAt: Date.now() };
    this.workers.set(hb.workerId, info);
    try {
      await this.kv!.put(keyOf(hb.workerId), HeartbeatRequest.encode(hb).finish());
    } catch (err) {
      // The bucket may have been lost with NATS' data: create it again, once.
      this.o.log.warn({ err: errorMessage(err) }, 'worker registry write failed; recreating the bucket');
      await this.open();
      await this.kv!.put(keyOf(hb.workerId), HeartbeatRequest.encode(hb).finish());
    }
  }

  alive(now = Date.now()): WorkerInfo[] {
    return [...this.workers.values()].filter((w) => now - w.seenAt <= this.o.intervalMs * 3);
  }

  get(workerId: string): WorkerInfo | undefined {
    return this.workers.get(workerId);
  }

  isAlive(workerId: string, now = Date.now()): boolean {
    const w = this.workers.get(workerId);
    return w !== undefined && now - w.seenAt <= this.o.intervalMs * 3;
  }

  /** Whether we have listened long enough to judge silence (not right after start). */
  get settled(): boolean {
    return this.startedAt !== undefined && Date.now() - this.startedAt > this.o.intervalMs * 3;
  }

  private startedAt: number | undefined;
  private iter: Awaited<ReturnType<KV['watch']>> | undefined;

  async stop(): Promise<void> {
    this.stopped = true;
    this.iter?.stop();
    await this.watching?.catch(() => undefined);
  }

  private async watch(): Promise<void> {
    this.startedAt = Date.now();
    while (!this.stopped) {
      try {
        const iter = (this.iter = await this.kv!.watch());
        for await (const e of iter) {
          if (e.operation !== 'PUT') continue;
          const hb = HeartbeatRequest.decode(e.value);
          const seenAt = e.created.getTime();
          const known = this.workers.get(hb.workerId);
          if (!known || known.seenAt < seenAt) this.workers.set(hb.workerId, { ...hb, seenAt });
        }
      } catch (err) {
        if (this.stopped) return;
        this.o.log.warn({ err: errorMessage(err) }, 'worker registry watch interrupted; resuming');
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }
}
