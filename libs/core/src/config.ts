import { z } from 'zod';

/** Thrown at start-up when environment variables are missing or malformed; lists them all. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** A TCP port, with a default. */
export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

/** A whole number in [min, max], with a default. */
export const int = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

/** A comma-separated list, trimmed, empty entries dropped. */
export const list = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean));

/** `true/false/1/0/yes/no`. */
export const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Settings every service shares. */
export const commonEnv = {
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  DATABASE_URL: z.string().min(1).default('postgres://postgres@127.0.0.1:5432/aijob'),
  DATABASE_POOL_MAX: int(10, 1, 500),
  NATS_URL: list('nats://127.0.0.1:4222'),
  /** NATS user and password when the servers require them (deploy/nats/values.yaml does); both or neither. */
  NATS_USER: z.string().min(1).optional(),
  NATS_PASSWORD: z.string().min(1).optional(),
  /** Prefix of every NATS subject, stream and bucket, so several platforms share one NATS. */
  AIJOB_NAMESPACE: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,31}$/, 'lowercase letters, digits and _, starting with a letter')
    .default('aijob'),
  GRPC_HOST: z.string().default('0.0.0.0'),
  /** Grace period for draining in-flight work at shutdown. */
  SHUTDOWN_GRACE_MS: int(10_000, 0, 600_000),
};

/**
 * A service's own names for its listener ports (`AUTH_GRPC_PORT`, `WORKER_OPS_PORT`), which
 * win over the shared GRPC_PORT / OPS_PORT: those move every service that sees them, these
 * let one shell (or `npm start`) give each service on a host its own ports.
 */
export const servicePortVariables = (service: string) => {
  const prefix = service.toUpperCase();
  return { GRPC_PORT: `${prefix}_GRPC_PORT`, OPS_PORT: `${prefix}_OPS_PORT` };
};

/**
 * Parses `env` once against `shape`; `overrides` names variables that win over a key of
 * it (see servicePortVariables). Fails listing every bad variable, never only the first.
 * This is the only place that reads process.env.
 */
export function loadConfig<S extends z.ZodRawShape>(
  shape: S,
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<Record<keyof S & string, string>> = {},
): z.infer<z.ZodObject<S>> {
  const cleaned: Record<string, string> = {};
  const from: Record<string, string> = {};
  for (const key of Object.keys(shape)) {
    const name = [overrides[key as keyof S & string], key].find((n) => n !== undefined && env[n] !== undefined && env[n] !== '');
    if (name === undefined) continue;
    cleaned[key] = env[name]!;
    if (name !== key) from[key] = name;
  }
  const parsed = z.object(shape).safeParse(cleaned);
  if (parsed.success) return parsed.data;
  throw new ConfigError(parsed.error.issues.map((i) => {
    const key = String(i.path[0] ?? '');
    const name = from[key] ?? key;
    const given = cleaned[key];
    // Secrets are never echoed, not even in a start-up error.
    const shown = given === undefined ? 'nothing' : SECRET.test(name) ? `${given.length} characters` : JSON.stringify(given);
    return `${[name, ...i.path.slice(1)].join('.') || '(env)'}: ${i.message}${name ? ` (got ${shown})` : ''}`;
  }));
}

const SECRET = /TOKEN|KEY|PASSWORD|SECRET|CREDENTIAL|PRIVATE/i;

/** Environment variables a service knows, for documentation and manifest checks. */
export function knownVariables(shape: z.ZodRawShape): string[] {
  return Object.keys(shape).sort();
}
