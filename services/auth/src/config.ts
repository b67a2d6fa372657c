import { z } from 'zod';
import { bool, commonEnv, ConfigError, int, loadConfig, port, servicePortVariables } from '@aijob/core';
import { parseKeks } from './key-encryption.js';

export const authEnv = {
  ...commonEnv,
  GRPC_PORT: port(50051),
  OPS_PORT: port(8001),
  /** `production` requires SIGNING_KEY_ENCRYPTION_KEY and refuses the development key. */
  NODE_ENV: z.string().default('development'),
  /**
   * Key-encryption keys of the signing keys' private halves (AES-256-GCM): comma-separated
   * base64 of 32 bytes each, the first seals, all open. From a Secret; validated (without
   * echoing it) in loadAuthConfig.
   */
  SIGNING_KEY_ENCRYPTION_KEY: z.string().optional(),
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

/** Parses the auth service's environment; fails listing every problem, never echoing a key. */
export function loadAuthConfig(env: Record<string, string | undefined> = process.env) {
  const problems: string[] = [];
  let config: z.infer<z.ZodObject<typeof authEnv>> | undefined;
  try {
    config = loadConfig(authEnv, env, servicePortVariables('auth'));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  const production = (env['NODE_ENV'] || 'development') === 'production';
  const keyEncryptionKeys = parseKeks(env['SIGNING_KEY_ENCRYPTION_KEY'] || undefined, production, problems);
  if (problems.length || !config) throw new ConfigError(problems);
  return { ...config, SIGNING_KEY_ENCRYPTION_KEY: undefined, keyEncryptionKeys };
}
