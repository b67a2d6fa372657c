import { hostname } from 'node:os';
import { z } from 'zod';
import { bool, commonEnv, int, loadConfig, port, servicePortVariables } from '@aijob/core';

export const schedulerEnv = {
  ...commonEnv,
  GRPC_PORT: port(50053),
  OPS_PORT: port(8080),
  AUTH_ADDR: z.string().min(1).default('127.0.0.1:50051'),
  INTERNAL_TOKEN: z.string().min(16).optional(),
  AUTH_CACHE_MS: int(3_000, 0, 4_000),
  /** This replica's name in the leader lease. */
  SCHEDULER_ID: z.string().min(1).max(128).default(`${hostname()}-${process.pid}`),
  /** Lease time; a dead leader is replaced within about this plus one second. */
  LEADER_LEASE_MS: int(5_000, 1_000, 60_000),
  /** Defaults of a queue created on first use. */
  DEFAULT_QUEUE_CONCURRENCY: int(1_000, 1, 1_000_000),
  DEFAULT_QUEUE_RATE: z.coerce.number().min(0).default(0),
  RECONCILE_INTERVAL_MS: int(5_000, 100, 600_000),
  HEARTBEAT_INTERVAL_MS: int(2_000, 100, 60_000),
  /** A job DISPATCHED this long whose message is missing from the stream (checked twice) lost it. */
  DISPATCH_STUCK_MS: int(5_000, 500, 3_600_000),
  /** A gang that cannot start all its members within this time fails. */
  GANG_PLACEMENT_TIMEOUT_MS: int(300_000, 1_000, 86_400_000),
  NATS_REPLICAS: int(1, 1, 5),
  STREAM_MAX_AGE_MS: int(3_600_000, 60_000, 30 * 86_400_000),
  /** File storage JetStream reserves for each of the events and submissions streams. */
  STREAM_MAX_BYTES: int(4 * 1024 ** 3, 1024 ** 2, 1024 ** 4),
  MIGRATE_ON_START: bool(false),
  /** VACUUM/ANALYZE by the leader: `auto` while the server's autovacuum is off or falling behind, `always`, or `off`. */
  DB_MAINTENANCE: z.enum(['auto', 'always', 'off']).default('auto'),
  DB_MAINTENANCE_INTERVAL_MS: int(30_000, 1_000, 3_600_000),
  /** A table is maintained once this many of its rows are dead (or changed since the last analyze)… */
  DB_MAINTENANCE_MIN_ROWS: int(10_000, 1, 1_000_000_000),
  /** …and they are this share of its live rows. */
  DB_MAINTENANCE_RATIO: z.coerce.number().min(0).max(100).default(0.2),
};

export type SchedulerConfig = ReturnType<typeof loadSchedulerConfig>;
export const loadSchedulerConfig = () => loadConfig(schedulerEnv, process.env, servicePortVariables('scheduler'));
