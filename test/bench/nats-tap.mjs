// Counts the NATS messages of a platform's namespace while it runs: what it publishes on
// its subjects (JetStream and core), the acks of its streams' messages and its consumers'
// pull requests. Subscribing to everything doubles what NATS sends, so the benchmark taps
// only its small counting scenario, never a throughput run.
import { connect } from '@nats-io/transport-node';

export class NatsTap {
  constructor(url, ns) {
    this.url = url;
    this.ns = ns;
    this.counts = {};
  }

  async start() {
    this.nc = await connect({ servers: this.url, name: 'aijob-bench-tap' });
    const NS = this.ns.toUpperCase();
    const count = (key) => { this.counts[key] = (this.counts[key] ?? 0) + 1; };
    // `<ns>.jobs.submitted` -> "jobs.submitted"; per-job subjects (cancel, dispatch queue) by their kind.
    this.nc.subscribe(`${this.ns}.>`, {
      callback: (_e, m) => {
        const [, a, b] = m.subject.split('.');
        count(`publish ${a}.${a === 'control' || a === 'dispatch' ? '*' : b}`);
      },
    });
    for (const s of ['JOBS', 'DISPATCH', 'EVENTS']) {
      this.nc.subscribe(`$JS.ACK.${NS}_${s}.>`, { callback: () => count(`ack ${s}`) });
      this.nc.subscribe(`$JS.API.CONSUMER.MSG.NEXT.${NS}_${s}.>`, { callback: () => count(`pull request ${s}`) });
    }
    this.nc.subscribe(`$KV.${this.ns}_workers.>`, { callback: () => count('kv workers') });
    await this.nc.flush();
    return this;
  }

  /** Counts so far, and resets them. */
  take() {
    const c = this.counts;
    this.counts = {};
    return c;
  }

  async stop() {
    await this.nc?.close();
  }
}
