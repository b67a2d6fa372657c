import t from 'tap';
import { ConfigError } from '@aijob/core';
import { loadWorkerConfig } from '../../services/worker/dist/config.js';

const failure = (env: Record<string, string>): string[] => {
  try {
    loadWorkerConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected the configuration to be refused');
};

t.test('providers from LLM_PROVIDERS and one variable per setting', async (t) => {
  const c = loadWorkerConfig({
    LLM_PROVIDERS: 'openai, local-gpu,claude',
    LLM_OPENAI_BASE_URL: 'https://api.openai.com/v1/', LLM_OPENAI_API_KEY: 'sk-openai', LLM_OPENAI_RPM: '500', LLM_OPENAI_TPM: '200000',
    LLM_LOCAL_GPU_BASE_URL: 'http://localhost:11434/v1',
    LLM_CLAUDE_KIND: 'anthropic', LLM_CLAUDE_BASE_URL: 'https://api.anthropic.com', LLM_CLAUDE_API_KEY: 'sk-ant',
    LLM_DEFAULT_PROVIDER: 'local-gpu',
  });
  t.same(c.providers, [
    { name: 'openai', kind: 'openai', baseUrl: 'https://api.openai.com/v1', apiKey: 'sk-openai', rpm: 500, tpm: 200_000, anthropicVersion: '2023-06-01' },
    { name: 'local-gpu', kind: 'openai', baseUrl: 'http://localhost:11434/v1', apiKey: undefined, rpm: 0, tpm: 0, anthropicVersion: '2023-06-01' },
    { name: 'claude', kind: 'anthropic', baseUrl: 'https://api.anthropic.com', apiKey: 'sk-ant', rpm: 0, tpm: 0, anthropicVersion: '2023-06-01' },
  ]);
  t.equal(c.LLM_DEFAULT_PROVIDER, 'local-gpu');
  t.equal(c.LLM_TIMEOUT_MS, 15_000, 'a call times out after 15 s by default');
});

t.test('or a JSON object, keys possibly from other variables', async (t) => {
  const c = loadWorkerConfig({
    LLM_PROVIDERS: JSON.stringify({ local: { kind: 'openai', baseUrl: 'http://127.0.0.1:8000/v1', apiKeyEnv: 'VLLM_KEY', rpm: 60 } }),
    VLLM_KEY: 'vllm-secret',
  });
  t.match(c.providers, [{ name: 'local', baseUrl: 'http://127.0.0.1:8000/v1', apiKey: 'vllm-secret', rpm: 60, tpm: 0 }]);
  t.same(loadWorkerConfig({}).providers, [], 'none by default');
  t.same(loadWorkerConfig({ LLM_PROVIDERS: '{}' }).providers, [], 'as the deployment\'s Secret sets it');
});

t.test('bad settings fail start-up listing every problem, and no key', async (t) => {
  const problems = failure({
    LLM_PROVIDERS: 'openai,claude,Bad Name,a-b,a_b',
    LLM_OPENAI_KIND: 'gemini', LLM_OPENAI_API_KEY: 'sk-do-not-print', LLM_OPENAI_RPM: 'lots',
    LLM_CLAUDE_KIND: 'anthropic', LLM_CLAUDE_BASE_URL: 'ftp://example.com',
    LLM_A_B_BASE_URL: 'http://x.test',
    LLM_DEFAULT_PROVIDER: 'nowhere',
    LLM_TIMEOUT_MS: '-5',
  });
  t.match(problems, [/LLM_TIMEOUT_MS/]);
  for (const expected of [/^LLM_OPENAI_KIND:/, /^LLM_OPENAI_BASE_URL:/, /^LLM_OPENAI_RPM:/, /^LLM_CLAUDE_BASE_URL:/,
    /provider names/, /"a_b" and "a-b" would share the variables LLM_A_B_\*/, /^LLM_DEFAULT_PROVIDER: "nowhere" is not a configured provider/]) {
    t.ok(problems.some((p) => expected.test(p)), `${expected}`);
  }
  t.notMatch(problems.join('\n'), /sk-do-not-print/);
  const json = failure({ LLM_PROVIDERS: '{"x":{"kind":"openai","baseUrl":"http://a.test","rpms":5,"apiKeyEnv":"MISSING"}}' });
  t.match(json, [/LLM_PROVIDERS\.x\.rpms: Unrecognized key/]);
  t.match(failure({ LLM_PROVIDERS: '{"x":{"kind":"openai","baseUrl":"http://a.test","apiKeyEnv":"MISSING"}}' }),
    [/LLM_PROVIDERS\.x\.apiKeyEnv: MISSING is not set/]);
  t.match(failure({ LLM_PROVIDERS: '{not json' }), [/LLM_PROVIDERS: not JSON/]);
});
