import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { Logger } from '@aijob/core';

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Readiness probe: a round trip to the server. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface BusOptions {
  /** NATS URLs; `nats://user:password@host:port` carries credentials too (the client does not read them itself). */
  servers: string[];
  name: string;
  log: Logger;
  /** NATS_USER / NATS_PASSWORD; win over credentials in the URLs. */
  user?: string;
  pass?: string;
}

/** The servers with credentials in their URLs, for code that passes only `servers` on. */
export function withCredentials(servers: string[], user?: string, pass?: string): string[] {
  if (!user && !pass) return servers;
  return servers.map((s) => {
    const u = new URL(s.includes('://') ? s : `nats://${s}`);
    u.username = encodeURIComponent(user ?? '');
    u.password = encodeURIComponent(pass ?? '');
    return u.toString();
  });
}

/** Splits `user:password@` out of the URLs; throws when a user comes without a password or the reverse. */
export function credentialsOf(opts: Pick<BusOptions, 'servers' | 'user' | 'pass'>): { servers: string[]; user?: string; pass?: string } {
  let { user, pass } = opts;
  const servers = opts.servers.map((s) => {
    if (!s.includes('@')) return s;
    const u = new URL(s.includes('://') ? s : `nats://${s}`);
    user ??= decodeURIComponent(u.username) || undefined;
    pass ??= decodeURIComponent(u.password) || undefined;
    return `${u.protocol}//${u.host}`;
  });
  if (Boolean(user) !== Boolean(pass)) throw new Error('NATS credentials need both a user and a password (NATS_USER, NATS_PASSWORD)');
  return { servers, user, pass };
}

/**
 * Connects to NATS and keeps reconnecting forever; the first connection is retried
 * until it succeeds so services can start before NATS does. Status changes are logged.
 */
export async function connectBus(opts: BusOptions): Promise<Bus> {
  const { servers, user, pass } = credentialsOf(opts);
  const nc = await connect({
    servers,
    name: opts.name,
    ...(user ? { user, pass } : {}),
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
