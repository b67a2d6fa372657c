import { z } from 'zod';
import { bool, commonEnv, int, loadConfig, port } from '@aijob/platform';

export const authEnv = {
  ...commonEnv,
  GRPC_PORT: port(50051),
  OPS_PORT: port(8001),
  /** Used as the dev workspace's admin key when set, so scripts can know it. */
  AIJOB_BOOTSTRAP_API_KEY: z.string().min(20).max(512).optional(),
  /** Name of the workspace created at first start. */
  BOOTSTRAP_WORKSPACE: z.string().min(1).max(64).default('default'),
  TOKEN_ISSUER: z.string().min(1).default('aijob'),
  TOKEN_AUDIENCE: z.string().min(1).default('aijob'),
  /** Lifetime of issued JWTs; at most 15 minutes. */
  TOKEN_TTL_SECONDS: int(900, 5, 900),
  /** Shared secret for service-to-service RPCs (optional inside an mTLS mesh). */
  INTERNAL_TOKEN: z.string().min(16).optional(),
  MIGRATE_ON_START: bool(false),
  /** Policy of new workspaces (and of the bootstrap one, whose rate limit is its own setting). */
  DEFAULT_RATE_LIMIT_PER_MINUTE: int(100, 0, 100_000_000),
  DEFAULT_MAX_PENDING: int(0, 0, 100_000_000),
  /** The bootstrap (dev) workspace's requests per minute; 0 is unlimited. */
  BOOTSTRAP_RATE_LIMIT_PER_MINUTE: int(0, 0, 100_000_000),
  NATS_REPLICAS: int(1, 1, 5),
};

export type AuthConfig = ReturnType<typeof loadAuthConfig>;
export const loadAuthConfig = () => loadConfig(authEnv);
