import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { errorMessage, type Logger } from '@aijob/core';
import type { WorkerSession } from './worker-session.js';

/** Slots of one session promised to a fetch in flight. */
export interface Claim {
  session: WorkerSession;
  left: number;
}

/**
 * Pulls one queue's dispatch messages (the durable shared with NATS workers) on behalf
 * of the sessions serving it: each fetch asks for exactly the free slots it claims from
 * them, so no job waits in the gateway while a worker elsewhere is idle. A queue whose
 * last fetch came back empty claims one slot only, so its held-open pull never keeps
 * slots from a busier queue the same sessions serve.
 */
export class QueuePuller {
  private wakeUp: (() => void) | undefined;
  private stopped = false;
  private idle = false;
  private consumer: Consumer | undefined;
  private readonly loop: Promise<void>;

  constructor(
    readonly queue: string,
    private readonly d: {
      sessions: () => Iterable<WorkerSession>;
      open: (queue: string) => Promise<Consumer>;
      /** Takes one message; `claims` are this fetch's, for the handler to draw from. */
      take: (msg: JsMsg, claims: Claim[]) => void;
      log: Logger;
    },
  ) {
    this.loop = this.run();
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let budget = this.idle ? 1 : 256;
      const claims: Claim[] = [];
      for (const s of this.d.sessions()) {
        if (budget === 0) break;
        if (!s.serves(this.queue)) continue;
        const n = Math.min(s.free, budget);
        if (n <= 0) continue;
        s.reserved += n;
        budget -= n;
        claims.push({ session: s, left: n });
      }
      const want = claims.reduce((n, c) => n + c.left, 0);
      if (want === 0) {
        await new Promise<void>((resolve) => {
          this.wakeUp = resolve;
        });
        continue;
      }
      let got = 0;
      try {
        this.consumer ??= await this.d.open(this.queue);
        const batch = await this.consumer.fetch({ max_messages: want, expires: 2_000 });
        for await (const m of batch) {
          got++;
          this.d.take(m, claims);
        }
      } catch (err) {
        if (!this.stopped) {
          // The stream or durable may be gone (NATS lost its data): open (recreate) it again.
          this.d.log.warn({ err: errorMessage(err), queue: this.queue }, 'fetch failed; reopening the consumer');
          this.consumer = undefined;
          await new Promise((r) => setTimeout(r, 500));
        }
      } finally {
        for (const c of claims) c.session.reserved -= c.left;
        this.idle = got === 0;
      }
    }
  }
}
