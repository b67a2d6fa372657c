import t from 'tap';
import { JobState, type AijobClient, type Job } from '@aijob/sdk';
import { FakeLlm } from '../helpers/fake-llm.js';
import { startPlatform, waitFor } from '../helpers/platform.js';

async function finished(c: AijobClient, id: string, ms = 30_000): Promise<Job> {
  return waitFor(async () => {
    const j = await c.get(id);
    return j.state === JobState.JOB_STATE_SUCCEEDED || j.state === JobState.JOB_STATE_FAILED || j.state === JobState.JOB_STATE_CANCELLED ? j : undefined;
  }, ms, `job ${id} to finish`, 100);
}

t.test('llm.chat against fake OpenAI-compatible and Anthropic servers', async (t) => {
  const openai = await new FakeLlm('openai').start();
  const anthropic = await new FakeLlm('anthropic').start();
  t.teardown(async () => { await openai.stop(); await anthropic.stop(); });
  const providers = {
    local: { kind: 'openai', baseUrl: openai.baseUrl, apiKeyEnv: 'LOCAL_LLM_KEY' },
    claude: { kind: 'anthropic', baseUrl: anthropic.baseUrl, apiKey: 'sk-ant-test' },
  };
  const p = await startPlatform(t, {
    workers: 1,
    serviceEnv: {
      worker: { LLM_PROVIDERS: JSON.stringify(providers), LLM_DEFAULT_PROVIDER: 'local', LLM_TIMEOUT_MS: '1000', LOCAL_LLM_KEY: 'sk-local-secret' },
      job: { LLM_PRICES: '{"local/gpt-test":{"prompt":2,"completion":4},"claude/*":{"prompt":3,"completion":15}}', RETRY_BASE_MS: '20' },
    },
  });
  const c = p.client();
  const chat = (input: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    c.submit({ type: 'llm.chat', input: { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], ...input }, ...extra });

  await t.test('success: usage recorded and costed, output normalised', async (t) => {
    openai.reply({ kind: 'ok', content: 'bonjour', promptTokens: 1000, completionTokens: 500 });
    const j = await finished(c, (await chat({})).id);
    t.equal(j.state, JobState.JOB_STATE_SUCCEEDED);
    t.match(j.output, { provider: 'local', model: 'gpt-test', content: 'bonjour', finish_reason: 'stop', usage: { prompt_tokens: 1000, completion_tokens: 500 } });
    t.same(j.usage, [{ provider: 'local', model: 'gpt-test', promptTokens: 1000, completionTokens: 500, costUsd: 0.004 }]);
    t.equal(openai.seen.at(-1)!.headers['authorization'], 'Bearer sk-local-secret', 'the key from apiKeyEnv');
    anthropic.reply({ kind: 'ok', content: 'hello from claude', promptTokens: 100, completionTokens: 10 });
    const a = await finished(c, (await chat({ provider: 'claude', model: 'claude-x', max_tokens: 64,
      messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }] })).id);
    t.match(a.output, { provider: 'claude', content: 'hello from claude', usage: { prompt_tokens: 100, completion_tokens: 10 } });
    const req = anthropic.seen.at(-1)!;
    t.equal(req.body['system'], 'be brief', 'system prompt split out for Anthropic');
    t.equal(req.headers['x-api-key'], 'sk-ant-test');
    t.ok(Math.abs(a.usage[0]!.costUsd - (100 * 3 + 10 * 15) / 1e6) < 1e-12, 'costed with the provider wildcard');
  });

  await t.test('429 with Retry-After, then success', async (t) => {
    openai.reply({ kind: 'status', status: 429, retryAfter: '1' }, { kind: 'ok' });
    const before = openai.seen.length;
    const j = await finished(c, (await chat({})).id);
    t.equal(j.state, JobState.JOB_STATE_SUCCEEDED);
    t.equal(j.attempt, 2);
    t.equal(openai.seen.length - before, 2);
    const rows = await p.sql()`SELECT state, at FROM job_events WHERE job_id = ${j.id} ORDER BY id`;
    const wait = rows.find((r) => r['state'] === 'RETRY_WAIT')!['at'] as Date;
    const redispatch = rows.filter((r) => r['state'] === 'DISPATCHED')[1]!['at'] as Date;
    t.ok(redispatch.getTime() - wait.getTime() >= 900, `waited out Retry-After (${redispatch.getTime() - wait.getTime()} ms)`);
  });

  await t.test('500 three times: FAILED, retryable, in the dead letters', async (t) => {
    openai.reply({ kind: 'status', status: 500 });
    const j = await finished(c, (await chat({ model: 'gpt-500' }, { maxAttempts: 3 })).id);
    t.equal(j.state, JobState.JOB_STATE_FAILED);
    t.equal(j.attempt, 3);
    t.equal(j.error?.code, 'PROVIDER_ERROR');
    t.equal(j.error?.retryable, true);
    const dead = [];
    for await (const d of c.deadLetters.list({ errorCode: 'PROVIDER_ERROR' })) dead.push(d.id);
    t.same(dead, [j.id]);
  });

  await t.test('401: FAILED at once, not retryable; context length and content policy too', async (t) => {
    openai.reply({ kind: 'status', status: 401, body: { error: { message: 'bad key' } } });
    const j = await finished(c, (await chat({})).id);
    t.same([j.state, j.attempt, j.error?.code, j.error?.retryable], [JobState.JOB_STATE_FAILED, 1, 'PROVIDER_AUTH', false]);
    t.notMatch(j.error?.message ?? '', /sk-local-secret/, 'no key in the error');
    openai.reply({ kind: 'status', status: 400, body: { error: { code: 'context_length_exceeded', message: "This model's maximum context length is 8192 tokens" } } });
    t.equal((await finished(c, (await chat({})).id)).error?.code, 'CONTEXT_LENGTH_EXCEEDED');
    openai.reply({ kind: 'status', status: 400, body: { error: { code: 'content_policy_violation', message: 'rejected' } } });
    t.equal((await finished(c, (await chat({})).id)).error?.code, 'CONTENT_POLICY');
  });

  await t.test('a hanging server times out and the call is retried', async (t) => {
    openai.reply({ kind: 'hang' }, { kind: 'ok', content: 'late but fine' });
    const j = await finished(c, (await chat({})).id);
    t.equal(j.state, JobState.JOB_STATE_SUCCEEDED);
    t.equal(j.attempt, 2, 'the timed-out attempt was retried');
    const events = await p.sql()`SELECT detail FROM job_events WHERE job_id = ${j.id} AND state = 'RETRY_WAIT'`;
    t.match(JSON.stringify(events[0]!['detail']), /PROVIDER_TIMEOUT/);
  });

  await t.test('cancel mid-call: the server sees the connection closed, the job ends CANCELLED', async (t) => {
    openai.reply({ kind: 'hang' });
    const job = await chat({}, { timeoutMs: 60_000 });
    const before = openai.seen.length;
    await waitFor(() => openai.seen.length > before, 20_000, 'the call to arrive');
    await c.cancel(job.id);
    await Promise.race([openai.seen.at(-1)!.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('connection stayed open')), 3_000))]);
    t.pass('connection closed by the worker');
    t.equal((await c.get(job.id)).state, JobState.JOB_STATE_CANCELLED);
  });

  await t.test('unknown provider: a clear non-retryable failure', async (t) => {
    const j = await finished(c, (await chat({ provider: 'nope' })).id);
    t.same([j.error?.code, j.error?.retryable], ['LLM_PROVIDER_NOT_CONFIGURED', false]);
  });
});
