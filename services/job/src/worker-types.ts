import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { HeartbeatRequest } from '@aijob/contracts';
import { errorMessage, type Logger } from '@aijob/core';

const FRESH_MS = 60_000;

/**
 * Job types that live workers announce in their heartbeats, read from the scheduler's
 * worker registry (a NATS KV bucket), so a team's own handler types are accepted at
 * submit as soon as a worker serving them is up.
 */
export class AnnouncedTypes {
  private readonly seen = new Map<string, { types: string[]; at: number }>();
  private stopped = false;
  private iter: Awaited<ReturnType<KV['watch']>> | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly nc: NatsConnection, private readonly bucket: string, private readonly log: Logger) {}

  start(): void {
    this.running = this.loop();
  }

  types(): ReadonlySet<string> {
    const out = new Set<string>();
    const now = Date.now();
    for (const w of this.seen.values()) if (now - w.at < FRESH_MS) for (const t of w.types) out.add(t);
    return out;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.iter?.stop();
    await this.running;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        const kv = await new Kvm(this.nc).open(this.bucket);
        this.iter = await kv.watch();
        for await (const e of this.iter) {
          if (e.operation !== 'PUT') continue;
          const hb = HeartbeatRequest.decode(e.value);
          this.seen.set(hb.workerId, { types: hb.jobTypes, at: e.created.getTime() });
        }
      } catch (err) {
        if (this.stopped) return;
        this.log.debug({ err: errorMessage(err) }, 'worker registry not readable yet; retrying');
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, 2_000));
    }
  }
}
