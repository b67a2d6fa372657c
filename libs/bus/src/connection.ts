import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { Logger } from '@aijob/platform';

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Readiness probe: a round trip to the server. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Connects to NATS and keeps reconnecting forever; the first connection is retried
 * until it succeeds so services can start before NATS does. Status changes are logged.
 */
export async function connectBus(opts: { servers: string[]; name: string; log: Logger }): Promise<Bus> {
  const nc = await connect({
    servers: opts.servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    pingInterval: 10_000,
    // Otherwise every request and JetStream publish builds two Error objects (stack
    // traces for a timeout that rarely happens): an eighth of the scheduler's CPU.
    noAsyncTraces: true,
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'error') {
        opts.log.warn({ nats: s.type, server: 'server' in s ? s.server : undefined }, 'nats connection status');
      }
    }
  })();
  const js = jetstream(nc, { timeout: 10_000 });
  const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: false });
  return {
    nc, js, jsm,
    ping: async () => {
      if (nc.isClosed()) throw new Error('nats connection closed');
      await nc.rtt();
    },
    close: async () => {
      if (nc.isClosed()) return;
      await nc.drain().catch(() => nc.close());
    },
  };
}
