import { JetStreamApiError, type ConsumerConfig, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { durableConfig, streamConfigs, type StreamOptions, type Topology } from './topology.js';

const STREAM_NAME_IN_USE = 10058;
const CONSUMER_NAME_EXISTS = 10148;

/**
 * Creates the platform's streams, or updates them to the declared configuration. With
 * `createOnly` (workers, which do not own the settings) existing streams are left as they are.
 */
export async function ensureStreams(jsm: JetStreamManager, t: Topology, o: StreamOptions, createOnly = false): Promise<void> {
  for (const cfg of streamConfigs(t, o)) {
    try {
      await jsm.streams.add(cfg);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== STREAM_NAME_IN_USE) throw err;
      if (createOnly) continue;
      const { name, ...rest } = cfg as StreamConfig;
      await jsm.streams.update(name, rest);
    }
  }
}

/** Creates a durable pull consumer, or updates it when its configuration changed. */
export async function ensureDurable(
  jsm: JetStreamManager, stream: string, name: string, filter: string,
  o: { ackWaitMs: number; maxAckPending: number },
): Promise<void> {
  const cfg = durableConfig(name, filter, o.ackWaitMs, o.maxAckPending);
  try {
    await jsm.consumers.add(stream, cfg);
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || (err.code !== CONSUMER_NAME_EXISTS && err.status !== 400)) throw err;
    const { durable_name: _n, deliver_policy: _d, ...update } = cfg as ConsumerConfig;
    await jsm.consumers.update(stream, name, update);
  }
}

/** Deletes every stream of the topology (tests and `aijob` teardown). */
export async function deleteStreams(jsm: JetStreamManager, t: Topology): Promise<void> {
  for (const name of Object.values(t.streams)) {
    await jsm.streams.delete(name).catch(() => false);
  }
}
