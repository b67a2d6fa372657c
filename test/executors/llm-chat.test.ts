import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AbortReason, NonRetryableError, RetryableError } from '@aijob/worker';
import { llmChat } from '../../services/worker/dist/executors/llm-chat.js';
import type { LlmProvider } from '../../services/worker/dist/config.js';
import { FakeLlm } from '../helpers/fake-llm.js';
import { fakeContext, jobOf, thrown } from './fixtures/job-context.js';

const KEY = 'sk-test-secret-0123456789';
const hi = [{ role: 'user', content: 'hi' }];
const provider = (name: string, fake: FakeLlm, extra: Partial<LlmProvider> = {}): LlmProvider => ({
  name, kind: fake.kind, baseUrl: fake.baseUrl, apiKey: KEY, rpm: 0, tpm: 0, anthropicVersion: '2023-06-01', ...extra,
});

const openai = await new FakeLlm('openai').start();
const anthropic = await new FakeLlm('anthropic').start();
t.teardown(async () => { await openai.stop(); await anthropic.stop(); });
const handler = llmChat({ providers: [provider('local', openai), provider('claude', anthropic)], defaultProvider: 'local', timeoutMs: 2_000 });
const chat = (input: Record<string, unknown>, f = fakeContext()) => handler(jobOf('llm.chat', { model: 'm1', messages: hi, ...input }), f.ctx);

t.test('OpenAI-compatible: the answer is normalised and its usage reported', async (t) => {
  openai.reply({ kind: 'ok', content: 'bonjour', promptTokens: 1000, completionTokens: 500 });
  const f = fakeContext();
  const out = await chat({ temperature: 0.2, max_tokens: 50 }, f);
  t.same(out, { provider: 'local', model: 'm1', content: 'bonjour', finish_reason: 'stop', usage: { prompt_tokens: 1000, completion_tokens: 500 }, raw_id: 'chatcmpl-1' });
  t.same(f.usage, [{ provider: 'local', model: 'm1', promptTokens: 1000, completionTokens: 500 }]);
  const req = openai.seen.at(-1)!;
  t.equal(req.path, '/v1/chat/completions');
  t.equal(req.headers['authorization'], `Bearer ${KEY}`);
  t.same(req.body, { model: 'm1', messages: hi, temperature: 0.2, max_tokens: 50, stream: false }, 'params passed through, provider left out');
});

t.test('Anthropic: system split out, max_tokens defaulted, the answer normalised', async (t) => {
  anthropic.reply({ kind: 'ok', content: 'hello from claude', promptTokens: 100, completionTokens: 10 });
  const f = fakeContext();
  const out = await chat({ provider: 'claude', model: 'claude-x', messages: [{ role: 'system', content: 'be brief' }, ...hi] }, f);
  t.same(out, { provider: 'claude', model: 'claude-x', content: 'hello from claude', finish_reason: 'end_turn', usage: { prompt_tokens: 100, completion_tokens: 10 }, raw_id: 'msg_1' });
  t.same(f.usage, [{ provider: 'claude', model: 'claude-x', promptTokens: 100, completionTokens: 10 }]);
  const req = anthropic.seen.at(-1)!;
  t.equal(req.path, '/v1/messages');
  t.same([req.headers['x-api-key'], req.headers['anthropic-version'], req.headers['authorization']], [KEY, '2023-06-01', undefined]);
  t.same([req.body['system'], req.body['messages'], req.body['max_tokens']], ['be brief', hi, 1024]);
});

t.test('429 is retryable and carries Retry-After, in seconds or as a date', async (t) => {
  for (const fake of [openai, anthropic]) {
    fake.reply({ kind: 'rate_limited', retryAfter: '7' });
    const err = await thrown(chat({ provider: fake === openai ? 'local' : 'claude' }));
    t.type(err, RetryableError);
    t.same([err.code, err.retryAfterMs], ['PROVIDER_RATE_LIMITED', 7000], fake.kind);
  }
  openai.reply({ kind: 'rate_limited', retryAfter: new Date(Date.now() + 30_000).toUTCString() });
  const err = await thrown(chat({}));
  t.ok(err.retryAfterMs! > 25_000 && err.retryAfterMs! <= 30_000, `an HTTP date: ${err.retryAfterMs} ms`);
});

t.test('5xx is retryable; 401, 403, 404, 422 and 400 are not', async (t) => {
  for (const [reply, code, retryable] of [
    [{ kind: 'server_error' }, 'PROVIDER_ERROR', true],
    [{ kind: 'server_error', status: 503 }, 'PROVIDER_ERROR', true],
    [{ kind: 'auth' }, 'PROVIDER_AUTH', false],
    [{ kind: 'status', status: 403 }, 'PROVIDER_AUTH', false],
    [{ kind: 'status', status: 404, body: { error: { message: 'The model `m1` does not exist', code: 'model_not_found' } } }, 'PROVIDER_NOT_FOUND', false],
    [{ kind: 'status', status: 422 }, 'PROVIDER_UNPROCESSABLE', false],
    [{ kind: 'status', status: 400, body: { error: { message: 'temperature must be at most 2' } } }, 'PROVIDER_BAD_REQUEST', false],
  ] as const) {
    openai.reply(reply);
    const err = await thrown(chat({}));
    t.type(err, retryable ? RetryableError : NonRetryableError, `${JSON.stringify(reply)}: ${retryable ? '' : 'not '}retryable`);
    t.equal(err.code, code);
  }
  anthropic.reply({ kind: 'auth' });
  t.equal((await thrown(chat({ provider: 'claude' }))).code, 'PROVIDER_AUTH');
});

t.test('context length and content policy are not retryable, for either API', async (t) => {
  for (const [fake, name] of [[openai, 'local'], [anthropic, 'claude']] as const) {
    fake.reply({ kind: 'context_length' });
    const long = await thrown(chat({ provider: name }));
    t.type(long, NonRetryableError);
    t.equal(long.code, 'CONTEXT_LENGTH_EXCEEDED', `${fake.kind}: context length`);
    fake.reply({ kind: 'content_policy' });
    const policy = await thrown(chat({ provider: name }));
    t.type(policy, NonRetryableError);
    t.equal(policy.code, 'CONTENT_POLICY', `${fake.kind}: content policy`);
  }
  // A 200 whose answer the provider filtered: the tokens count, the job does not succeed.
  openai.reply({ kind: 'ok', content: '', finishReason: 'content_filter', promptTokens: 9, completionTokens: 0 });
  const f = fakeContext();
  t.equal((await thrown(chat({}, f))).code, 'CONTENT_POLICY');
  t.same(f.usage, [{ provider: 'local', model: 'm1', promptTokens: 9, completionTokens: 0 }]);
});

t.test('error messages keep the provider\'s words, briefly, never the key or the prompt', async (t) => {
  const secretPrompt = 'my private prompt text';
  openai.reply({ kind: 'status', status: 401, body: { error: { message: `key ${KEY} rejected ${'x'.repeat(2000)}`, code: 'invalid_api_key' } } });
  const err = await thrown(chat({ messages: [{ role: 'user', content: secretPrompt }] }));
  t.match(err.message, /provider local answered 401: invalid_api_key: key \[redacted\] rejected/);
  t.notMatch(err.message, KEY);
  t.notMatch(err.message, secretPrompt);
  t.ok(err.message.length < 600, `trimmed to ${err.message.length} characters`);
});

t.test('a hanging server: a retryable PROVIDER_TIMEOUT within the per-call timeout, connection closed', async (t) => {
  openai.reply({ kind: 'hang' });
  const quick = llmChat({ providers: [provider('local', openai)], timeoutMs: 300 });
  const started = Date.now();
  const err = await thrown(quick(jobOf('llm.chat', { model: 'm1', messages: hi }), fakeContext().ctx));
  const took = Date.now() - started;
  t.type(err, RetryableError);
  t.equal(err.code, 'PROVIDER_TIMEOUT');
  t.ok(took >= 290 && took < 2_000, `gave up after ${took} ms`);
  await openai.seen.at(-1)!.closed;
  t.ok(openai.seen.at(-1)!.clientClosed, 'the server saw the connection closed');
});

t.test('abort mid-call: the server sees the connection closed, the handler rejects with the signal\'s reason', async (t) => {
  for (const kind of ['cancelled', 'shutdown', 'timeout'] as const) {
    openai.reply({ kind: 'hang' });
    const f = fakeContext();
    const index = openai.seen.length;
    const pending = thrown(chat({}, f));
    const req = await openai.request(index);
    const reason = new AbortReason(kind, `${kind} mid-call`);
    f.abort.abort(reason);
    t.equal(await pending, reason, `${kind}: the reason itself, not a provider error`);
    await req.closed;
    t.ok(req.clientClosed, `${kind}: connection closed`);
    t.same(f.usage, [], 'no usage for an aborted call');
  }
});

t.test('a provider that refuses connections: a retryable NETWORK_ERROR', async (t) => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  const gone = llmChat({ providers: [{ ...provider('gone', openai), baseUrl: `http://127.0.0.1:${port}/v1` }], timeoutMs: 2_000 });
  const err = await thrown(gone(jobOf('llm.chat', { model: 'm1', messages: hi }), fakeContext().ctx));
  t.type(err, RetryableError);
  t.equal(err.code, 'NETWORK_ERROR');
  t.match(err.message, /ECONNREFUSED/);
});

t.test('an unknown provider or bad input fails at once, not retryable, without calling', async (t) => {
  const before = openai.seen.length;
  const unknown = await thrown(chat({ provider: 'nope' }));
  t.type(unknown, NonRetryableError);
  t.equal(unknown.code, 'LLM_PROVIDER_NOT_CONFIGURED');
  t.match(unknown.message, /"nope".*configured: local, claude/);
  const none = await thrown(llmChat({ providers: [], timeoutMs: 1000 })(jobOf('llm.chat', { model: 'm', messages: hi }), fakeContext().ctx));
  t.equal(none.code, 'LLM_PROVIDER_NOT_CONFIGURED', 'a worker with no providers');
  for (const input of [{ model: '' }, { messages: [] }, { messages: [{ content: 'no role' }] }, { max_tokens: -1 }, { max_tokens: 1.5 }]) {
    t.equal((await thrown(chat(input))).code, 'INVALID_INPUT', JSON.stringify(input));
  }
  t.equal(openai.seen.length, before, 'nothing reached the provider');
});

t.test('a 200 the worker cannot read is a retryable PROVIDER_ERROR', async (t) => {
  openai.reply({ kind: 'status', status: 200, body: { object: 'list', data: [] } });
  const err = await thrown(chat({}));
  t.type(err, RetryableError);
  t.same([err.code, err.message], ['PROVIDER_ERROR', 'provider local answered 200 but without choices']);
});
