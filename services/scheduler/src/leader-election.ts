import { performance } from 'node:perf_hooks';
import { errorMessage, type Logger } from '@aijob/core';
import { gauge } from '@aijob/telemetry';
import { acquireLease, releaseLease, renewLease, type Store } from '@aijob/store';

export interface Leadership {
  epoch: number;
  /** Aborted the moment this replica may no longer act as leader. */
  signal: AbortSignal;
}

/**
 * Leader election through a Postgres lease with a fencing token. The lease row's
 * `epoch` grows with each new holder; the leader's writes check it, so a deposed
 * leader's late writes are refused by the database itself. Locally the leader stops
 * acting at 80% of the lease, before any other replica can take it over.
 */
export class LeaderElection {
  private current: { epoch: number; abort: AbortController; validUntil: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly master = gauge('controller_leader_election_master', 'Whether this replica is the leader (1) or not (0).', ['name']);

  constructor(
    private readonly store: Store,
    readonly holder: string,
    private readonly log: Logger,
    private readonly o: { name: string; ttlMs: number; onElected: (l: Leadership) => void },
  ) {
    this.master.set({ name: o.name }, 0);
  }

  get epoch(): number | undefined {
    return this.isLeader() ? this.current!.epoch : undefined;
  }

  isLeader(): boolean {
    return this.current !== undefined && performance.now() < this.current.validUntil;
  }

  start(): void {
    void this.tick();
  }

  /** Gives up the lease (graceful shutdown) so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const had = this.current;
    this.depose('stopping');
    if (had) {
      await releaseLease(this.store.sql, this.o.name, this.holder, had.epoch).catch(() => undefined);
    }
  }

  private async tick(): Promise<void> {
    const sentAt = performance.now();
    try {
      const epoch = this.current ? await this.renew(this.current.epoch) : await this.acquire();
      if (epoch !== undefined) {
        const validUntil = sentAt + this.o.ttlMs * 0.8;
        if (this.current && this.current.epoch === epoch) {
          this.current.validUntil = validUntil;
        } else {
          this.depose('new epoch');
          this.current = { epoch, abort: new AbortController(), validUntil };
          this.master.set({ name: this.o.name }, 1);
          this.log.info({ epoch, holder: this.holder }, 'elected leader');
          this.o.onElected({ epoch, signal: this.current.abort.signal });
        }
      } else if (this.current) {
        this.depose('lease lost');
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'lease round trip failed');
    }
    if (this.current && !this.isLeader()) this.depose('lease not renewed in time');
    if (this.stopped) return;
    const next = this.current ? this.o.ttlMs / 4 : Math.min(1_000, this.o.ttlMs / 4);
    this.timer = setTimeout(() => void this.tick(), next);
    // Act on expiry even if the renewal round trip hangs.
    if (this.current) {
      const left = this.current.validUntil - performance.now();
      setTimeout(() => { if (this.current && !this.isLeader()) this.depose('lease expired'); }, Math.max(0, left) + 1).unref();
    }
  }

  private depose(reason: string): void {
    if (!this.current) return;
    this.log.warn({ epoch: this.current.epoch, reason }, 'no longer leader');
    this.current.abort.abort(new Error(`leadership lost: ${reason}`));
    this.current = undefined;
    this.master.set({ name: this.o.name }, 0);
  }

  private acquire(): Promise<number | undefined> {
    return acquireLease(this.store.sql, this.o.name, this.holder, this.o.ttlMs);
  }

  private renew(epoch: number): Promise<number | undefined> {
    return renewLease(this.store.sql, this.o.name, this.holder, epoch, this.o.ttlMs);
  }
}
