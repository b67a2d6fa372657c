import t from 'tap';
import { AbortReason, RetryableError } from '@aijob/worker';
import { llmChat } from '../../services/worker/dist/executors/llm-chat.js';
import { MinuteLimiter } from '../../services/worker/dist/executors/minute-limiter.js';
import type { LlmProvider } from '../../services/worker/dist/config.js';
import { FakeLlm } from '../helpers/fake-llm.js';
import { FakeClock, fakeContext, jobOf, thrown } from './fixtures/job-context.js';

// `[{"role":"user","content":"hi"}]` is 32 characters: an estimate of 8 prompt tokens.
const hi = [{ role: 'user', content: 'hi' }];

const fake = await new FakeLlm('openai').start();
t.teardown(() => fake.stop());
const limited = (limits: Partial<LlmProvider>, clock: FakeClock) => llmChat({
  providers: [{ name: 'local', kind: 'openai', baseUrl: fake.baseUrl, rpm: 0, tpm: 0, anthropicVersion: '2023-06-01', ...limits }],
  timeoutMs: 2_000, clock,
});

t.test('RPM: the call past the limit waits for the window instead of failing', async (t) => {
  fake.reply({ kind: 'ok' });
  const clock = new FakeClock();
  const chat = limited({ rpm: 2 }, clock);
  const run = (f = fakeContext()) => chat(jobOf('llm.chat', { model: 'm1', messages: hi }, 300_000), f.ctx);
  await run();
  clock.advance(10_000);
  await run();
  const before = fake.seen.length;
  const f = fakeContext();
  const sleeping = clock.sleeping();
  const third = run(f);
  t.equal(await sleeping, 50_000, 'the third call waits until the first leaves the minute');
  t.equal(fake.seen.length, before, 'and has not been sent');
  t.match(f.progress, [{ pct: 0, note: /waiting 50 s for provider local's rate limit/ }], 'the wait shows as progress');
  clock.advance(50_000);
  t.match(await third, { content: 'hello' }, 'then it goes through');
  t.equal(fake.seen.length, before + 1);
});

t.test('TPM: tokens are reserved by estimate and corrected with the usage reported', async (t) => {
  fake.reply({ kind: 'ok', promptTokens: 12, completionTokens: 5 });
  const clock = new FakeClock();
  const chat = limited({ tpm: 200 }, clock);
  const run = (maxTokens: number) => chat(jobOf('llm.chat', { model: 'm1', messages: hi, max_tokens: maxTokens }, 300_000), fakeContext().ctx);
  await run(150); // reserves 158, settles at 17
  await run(150); // 17 + 158 fits only because the first was corrected
  t.same(clock.sleeps, [], 'neither waited');
  const sleeping = clock.sleeping();
  const third = run(190); // 34 + 198 does not fit
  t.equal(await sleeping, 60_000, 'the third waits for the window to clear');
  clock.advance(60_000);
  await third;
  t.equal(fake.seen.length >= 3, true);
});

t.test('a wait past the job\'s timeout is a retryable PROVIDER_RATE_LIMITED at once', async (t) => {
  fake.reply({ kind: 'ok' });
  const clock = new FakeClock();
  const chat = limited({ rpm: 1 }, clock);
  await chat(jobOf('llm.chat', { model: 'm1', messages: hi }, 30_000), fakeContext().ctx);
  const err = await thrown(chat(jobOf('llm.chat', { model: 'm1', messages: hi }, 30_000), fakeContext().ctx));
  t.type(err, RetryableError);
  t.same([err.code, err.retryAfterMs], ['PROVIDER_RATE_LIMITED', 60_000], 'retry when the limit frees up');
  t.same(clock.sleeps, [], 'without waiting first');
});

t.test('cancelling a call that waits for the limit rejects with the reason', async (t) => {
  fake.reply({ kind: 'ok' });
  const clock = new FakeClock();
  const chat = limited({ rpm: 1 }, clock);
  await chat(jobOf('llm.chat', { model: 'm1', messages: hi }, 300_000), fakeContext().ctx);
  const before = fake.seen.length;
  const f = fakeContext();
  const sleeping = clock.sleeping();
  const waiting = thrown(chat(jobOf('llm.chat', { model: 'm1', messages: hi }, 300_000), f.ctx));
  await sleeping;
  const reason = new AbortReason('cancelled', 'cancelled by request');
  f.abort.abort(reason);
  t.equal(await waiting, reason);
  t.equal(fake.seen.length, before, 'never sent');
});

t.test('the minute limiter, by itself', async (t) => {
  const clock = new FakeClock();
  const signal = new AbortController().signal;
  const requests = new MinuteLimiter(2, 0, clock);
  await requests.acquire(1, signal);
  await requests.acquire(1, signal);
  t.equal(requests.waitMs(1), 60_000, 'the third call waits a minute');
  clock.advance(30_000);
  t.equal(requests.waitMs(1), 30_000);
  clock.advance(30_000);
  t.equal(requests.waitMs(1), 0, 'then it fits');
  const tokens = new MinuteLimiter(0, 1000, clock);
  const slot = await tokens.acquire(900, signal);
  t.ok(tokens.waitMs(200) > 0, 'the token budget holds');
  slot.settle(100);
  t.equal(tokens.waitMs(200), 0, 'correcting with actual usage frees it');
  t.equal(tokens.waitMs(5000) > 0, true, 'a call larger than the budget waits for an empty window…');
  clock.advance(60_000);
  t.equal(tokens.waitMs(5000), 0, '…then goes');
  t.same(clock.sleeps, [], 'nothing here slept');
});
