import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { JobsChanged } from '@aijob/contracts';
import { decode, type Topology } from '@aijob/bus';
import type { Logger } from '@aijob/core';

/**
 * Tells WatchJob streams on this replica when their job may have changed. Every
 * replica hears every change (core NATS), whichever replica applied it.
 */
export class WatchHub {
  private readonly listeners = new Map<string, Set<() => void>>();
  private sub: Subscription | undefined;
  /** Set at shutdown: open watches end (UNAVAILABLE) so their clients reconnect to another replica. */
  draining = false;

  constructor(private readonly nc: NatsConnection, private readonly t: Topology, private readonly log: Logger) {}

  start(): void {
    this.sub = this.nc.subscribe(this.t.subjects.jobsChanged, {
      callback: (err, msg) => {
        if (err || this.listeners.size === 0) return;
        try {
          for (const id of decode(JobsChanged, msg.data).jobIds) this.notify(id);
        } catch (e) {
          this.log.warn({ err: e }, 'undecodable jobs-changed notice');
        }
      },
    });
  }

  /** Calls `fn` whenever job `id` may have changed, until the returned function is called. */
  listen(id: string, fn: () => void): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(fn);
    return () => {
      set!.delete(fn);
      if (set!.size === 0) this.listeners.delete(id);
    };
  }

  notify(id: string): void {
    const set = this.listeners.get(id);
    if (set) for (const fn of set) fn();
  }

  /** Ends every open watch at once, for the start of a shutdown. */
  drain(): void {
    this.draining = true;
    for (const set of this.listeners.values()) for (const fn of set) fn();
  }

  get watchers(): number {
    return this.listeners.size;
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}
