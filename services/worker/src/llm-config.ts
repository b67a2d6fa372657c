import { z } from 'zod';
import { ConfigError } from '@aijob/platform';

const provider = z.object({
  /** `openai`: any OpenAI-compatible /chat/completions (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM); `anthropic`: /v1/messages. */
  kind: z.enum(['openai', 'anthropic']),
  baseUrl: z.url(),
  /** The key itself, or the name of an environment variable holding it (for Kubernetes Secrets). */
  apiKey: z.string().optional(),
  apiKeyEnv: z.string().optional(),
  /** Requests and tokens per minute, per worker process; 0 is unlimited. */
  rpm: z.number().int().min(0).default(0),
  tpm: z.number().int().min(0).default(0),
  anthropicVersion: z.string().default('2023-06-01'),
});

export interface LlmProvider {
  name: string;
  kind: 'openai' | 'anthropic';
  baseUrl: string;
  apiKey?: string;
  rpm: number;
  tpm: number;
  anthropicVersion: string;
}

/**
 * Providers from LLM_PROVIDERS, a JSON object of name → settings, e.g.
 * {"openai":{"kind":"openai","baseUrl":"https://api.openai.com/v1","apiKeyEnv":"OPENAI_API_KEY","rpm":500},
 *  "local":{"kind":"openai","baseUrl":"http://localhost:11434/v1"}}
 */
export function parseProviders(json: string, env: Record<string, string | undefined>): LlmProvider[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new ConfigError([`LLM_PROVIDERS: not JSON (${(err as Error).message})`]);
  }
  const parsed = z.record(z.string().regex(/^[a-z0-9_-]{1,64}$/), provider).safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `LLM_PROVIDERS.${i.path.join('.')}: ${i.message}`));
  }
  const problems: string[] = [];
  const out = Object.entries(parsed.data).map(([name, p]) => {
    const apiKey = p.apiKey ?? (p.apiKeyEnv ? env[p.apiKeyEnv] : undefined);
    if (p.apiKeyEnv && !apiKey) problems.push(`LLM_PROVIDERS.${name}.apiKeyEnv: ${p.apiKeyEnv} is not set`);
    return { name, kind: p.kind, baseUrl: p.baseUrl.replace(/\/+$/, ''), apiKey, rpm: p.rpm, tpm: p.tpm, anthropicVersion: p.anthropicVersion };
  });
  if (problems.length) throw new ConfigError(problems);
  return out;
}
