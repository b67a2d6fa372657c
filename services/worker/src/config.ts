import { hostname } from 'node:os';
import { z } from 'zod';
import { bool, commonEnv, ConfigError, int, list, loadConfig, port, servicePortVariables } from '@aijob/core';

export const workerEnv = {
  LOG_LEVEL: commonEnv.LOG_LEVEL,
  NATS_URL: commonEnv.NATS_URL,
  NATS_USER: commonEnv.NATS_USER,
  NATS_PASSWORD: commonEnv.NATS_PASSWORD,
  AIJOB_NAMESPACE: commonEnv.AIJOB_NAMESPACE,
  GRPC_HOST: commonEnv.GRPC_HOST,
  SHUTDOWN_GRACE_MS: commonEnv.SHUTDOWN_GRACE_MS,
  /** Not 9090, Prometheus's own port; 8002 is the gateway's. */
  OPS_PORT: port(8003),
  SCHEDULER_ADDR: z.string().min(1).default('127.0.0.1:50053'),
  INTERNAL_TOKEN: z.string().min(16).optional(),
  WORKER_ID: z.string().regex(/^[\w.:@-]{1,128}$/).default(`${hostname()}-${process.pid}`),
  WORKER_QUEUES: list('default'),
  WORKER_CONCURRENCY: int(10, 1, 10_000),
  HEARTBEAT_INTERVAL_MS: int(2_000, 100, 60_000),
  ACK_WAIT_MS: int(30_000, 1_000, 3_600_000),
  NATS_REPLICAS: int(1, 1, 5),
  /**
   * LLM providers for llm.chat: provider names, comma-separated, each configured by
   * LLM_<NAME>_* variables; or a JSON object of name → settings. See parseProviders.
   */
  LLM_PROVIDERS: z.string().default('{}'),
  /** The provider of jobs that name none; the first configured one when unset. */
  LLM_DEFAULT_PROVIDER: z.string().optional(),
  /** Per model call. */
  LLM_TIMEOUT_MS: int(15_000, 100, 600_000),
  /** http.request: hosts (host or host:port, *.example.com) jobs may call. Empty: none. */
  HTTP_ALLOWED_HOSTS: list(''),
  /** Let http.request reach loopback, private and link-local addresses (tests, internal webhooks). */
  HTTP_ALLOW_PRIVATE: bool(false),
  HTTP_MAX_RESPONSE_BYTES: int(1024 * 1024, 1, 64 * 1024 * 1024),
  /** Per webhook call, unless the job's input.timeout_ms says otherwise. */
  HTTP_TIMEOUT_MS: int(15_000, 100, 600_000),
};

/** One model provider llm.chat can call. */
export interface LlmProvider {
  name: string;
  /** `openai`: any OpenAI-compatible /chat/completions (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM); `anthropic`: /v1/messages. */
  kind: 'openai' | 'anthropic';
  baseUrl: string;
  apiKey?: string;
  /** Requests and tokens per minute, enforced per worker process; 0 is unlimited. */
  rpm: number;
  tpm: number;
  anthropicVersion: string;
}

export type WorkerConfig = ReturnType<typeof loadWorkerConfig>;

/**
 * The worker's settings with the LLM providers resolved. Fails listing every problem:
 * the fixed variables', the providers' and a default provider that is not configured.
 */
export function loadWorkerConfig(env: Record<string, string | undefined> = process.env) {
  const problems: string[] = [];
  let config: z.infer<z.ZodObject<typeof workerEnv>> | undefined;
  try {
    config = loadConfig(workerEnv, env, servicePortVariables('worker'));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  const providers = parseProviders(env, problems);
  const fallback = env['LLM_DEFAULT_PROVIDER'] || undefined;
  if (fallback && !providers.some((p) => p.name === fallback)) {
    problems.push(`LLM_DEFAULT_PROVIDER: "${fallback}" is not a configured provider (${providers.map((p) => p.name).join(', ') || 'none'})`);
  }
  if (problems.length || !config) throw new ConfigError(problems);
  return { ...config, providers };
}

const count = z.coerce.number().int().min(0).default(0);
const providerSchema = z.object({
  kind: z.enum(['openai', 'anthropic']).default('openai'),
  baseUrl: z.url({ protocol: /^https?$/ }),
  /** The key itself; or (JSON form) apiKeyEnv, the name of a variable holding it. */
  apiKey: z.string().min(1).optional(),
  apiKeyEnv: z.string().min(1).optional(),
  rpm: count,
  tpm: count,
  anthropicVersion: z.string().min(1).default('2023-06-01'),
}).strict();

/** The per-provider variables of the list form, by the setting each fills. */
const suffixes = { kind: 'KIND', baseUrl: 'BASE_URL', apiKey: 'API_KEY', rpm: 'RPM', tpm: 'TPM', anthropicVersion: 'ANTHROPIC_VERSION' } as const;
const NAME = /^[a-z0-9_-]{1,64}$/;

/**
 * LLM_PROVIDERS in either of two forms. The list form suits Secrets, one variable each:
 *   LLM_PROVIDERS=openai,local
 *   LLM_OPENAI_KIND=openai LLM_OPENAI_BASE_URL=https://api.openai.com/v1 LLM_OPENAI_API_KEY=sk-… LLM_OPENAI_RPM=500
 *   LLM_LOCAL_BASE_URL=http://localhost:11434/v1
 * (<NAME> is the name upper-cased with - as _). The JSON form keeps it in one value:
 *   {"openai":{"kind":"openai","baseUrl":"…","apiKeyEnv":"OPENAI_API_KEY","rpm":500,"tpm":0}}
 * Problems are appended to `problems`, named by the variable (or JSON path) at fault.
 */
export function parseProviders(env: Record<string, string | undefined>, problems: string[]): LlmProvider[] {
  const raw = (env['LLM_PROVIDERS'] ?? '').trim();
  const entries: { name: string; settings: Record<string, unknown>; where: (field: string) => string }[] = [];
  if (raw.startsWith('{')) {
    let doc: unknown;
    try {
      doc = JSON.parse(raw);
    } catch (err) {
      problems.push(`LLM_PROVIDERS: not JSON (${(err as Error).message})`);
      return [];
    }
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
      problems.push('LLM_PROVIDERS: a JSON object of name → settings expected');
      return [];
    }
    for (const [name, settings] of Object.entries(doc)) {
      entries.push({ name, settings: settings as Record<string, unknown>, where: (f) => `LLM_PROVIDERS.${name}${f ? `.${f}` : ''}` });
    }
  } else {
    const prefixes = new Map<string, string>();
    for (const name of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
      const prefix = `LLM_${name.toUpperCase().replace(/-/g, '_')}_`;
      const clash = prefixes.get(prefix);
      if (clash !== undefined) {
        problems.push(`LLM_PROVIDERS: "${name}" and "${clash}" would share the variables ${prefix}*`);
        continue;
      }
      prefixes.set(prefix, name);
      const settings = Object.fromEntries(Object.entries(suffixes)
        .map(([field, suffix]) => [field, env[prefix + suffix] || undefined]).filter(([, v]) => v !== undefined));
      entries.push({ name, settings, where: (f) => (f in suffixes ? prefix + suffixes[f as keyof typeof suffixes] : `LLM_PROVIDERS (${name})`) });
    }
  }
  const out: LlmProvider[] = [];
  for (const { name, settings, where } of entries) {
    if (!NAME.test(name)) {
      problems.push(`${where('')}: provider names are 1-64 of a-z, 0-9, _ and -`);
      continue;
    }
    const parsed = providerSchema.safeParse(settings);
    if (!parsed.success) {
      // Never echo values here: some of them are keys.
      problems.push(...parsed.error.issues.map((i) => `${where(i.path.map(String).join('.') || String((i as { keys?: string[] }).keys ?? ''))}: ${i.message}`));
      continue;
    }
    const p = parsed.data;
    const apiKey = p.apiKey ?? (p.apiKeyEnv ? env[p.apiKeyEnv] || undefined : undefined);
    if (p.apiKeyEnv && !apiKey) problems.push(`${where('apiKeyEnv')}: ${p.apiKeyEnv} is not set`);
    out.push({ name, kind: p.kind, baseUrl: p.baseUrl.replace(/\/+$/, ''), apiKey, rpm: p.rpm, tpm: p.tpm, anthropicVersion: p.anthropicVersion });
  }
  return out;
}
