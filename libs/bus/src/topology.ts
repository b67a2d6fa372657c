import { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type ConsumerConfig, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';

/**
 * Every stream, subject, consumer and bucket of the platform, declared once.
 * `ns` (AIJOB_NAMESPACE, default `aijob`) prefixes them all so that several platforms,
 * or test runs, share one NATS server without seeing each other.
 */
export function topology(ns: string) {
  const NS = ns.toUpperCase();
  return {
    ns,
    streams: { jobs: `${NS}_JOBS`, dispatch: `${NS}_DISPATCH`, events: `${NS}_EVENTS` },
    subjects: {
      submitted: `${ns}.jobs.submitted`,
      dispatch: (queue: string) => `${ns}.dispatch.${queue}`,
      allDispatch: `${ns}.dispatch.>`,
      /** `state` is a JobState name without prefix, e.g. RUNNING. */
      event: (state: string) => `${ns}.events.${state.toLowerCase()}`,
      allEvents: `${ns}.events.>`,
      cancel: (jobId: string) => `${ns}.control.cancel.${jobId}`,
      allCancels: `${ns}.control.cancel.*`,
      /** Core NATS: job ids whose record changed, for WatchJob on every replica. */
      jobsChanged: `${ns}.notify.jobs`,
      /** Core NATS: credentials revoked or keys retired; drop auth caches. */
      authChanged: `${ns}.notify.auth`,
      /** Core NATS: queue settings changed; the leader reloads them. */
      queuesChanged: `${ns}.notify.queues`,
    },
    consumers: {
      /** Job service: applies events to the job record (shared by replicas). */
      jobState: 'job-state',
      /** Scheduler leader: frees slots and times retries. */
      schedulerEvents: 'scheduler',
      /** Scheduler leader: learns of submitted jobs. */
      schedulerSubmitted: 'scheduler',
      /** Workers of one queue share one durable. */
      dispatch: (queue: string) => `worker-${queue}`,
    },
    buckets: { workers: `${ns}_workers` },
  };
}
export type Topology = ReturnType<typeof topology>;

export interface StreamOptions {
  /** Stream replicas: 1 on one machine, 3 in a cluster. */
  replicas: number;
  /** How long events and submissions are kept for replay. */
  maxAgeMs: number;
  /**
   * Bytes each of the events and submissions streams may hold (oldest dropped beyond).
   * JetStream reserves this much file storage per stream. Default 4 GiB.
   */
  maxBytes?: number;
}

const DEFAULT_MAX_BYTES = 4 * 1024 ** 3;

export function streamConfigs(t: Topology, o: StreamOptions): (Partial<StreamConfig> & { name: string })[] {
  const common = { storage: StorageType.File, num_replicas: o.replicas, discard: DiscardPolicy.Old };
  return [
    {
      ...common, name: t.streams.jobs, subjects: [t.subjects.submitted], retention: RetentionPolicy.Limits,
      max_age: nanos(o.maxAgeMs), duplicate_window: nanos(120_000), max_bytes: o.maxBytes ?? DEFAULT_MAX_BYTES,
    },
    {
      ...common, name: t.streams.dispatch, subjects: [t.subjects.allDispatch], retention: RetentionPolicy.Workqueue,
      duplicate_window: nanos(120_000), discard: DiscardPolicy.New,
    },
    {
      ...common, name: t.streams.events, subjects: [t.subjects.allEvents], retention: RetentionPolicy.Limits,
      max_age: nanos(o.maxAgeMs), duplicate_window: nanos(120_000), max_bytes: o.maxBytes ?? DEFAULT_MAX_BYTES,
    },
  ];
}

/** A durable pull consumer with explicit acks. */
export function durableConfig(name: string, filter: string, ackWaitMs: number, maxAckPending: number): Partial<ConsumerConfig> {
  return {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: filter,
    ack_wait: nanos(ackWaitMs),
    max_ack_pending: maxAckPending,
    max_deliver: -1,
    max_waiting: 512,
  };
}
