// The job service's rate limiter against a real Postgres, two limiters standing for two
// replicas, on a clock the test moves: a sliding 60-second window that holds across
// minute edges, and across replicas.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { ResourceExhaustedError } from '@aijob/core';
import { createStore, runMigrations } from '@aijob/store';
import { RateLimiter, SLOT_MS } from '../../services/job/dist/rate-limiter.js';
import { PG_BASE } from '../helpers/platform.js';

const dbName = `aijob_rl_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const url = `${PG_BASE}/${dbName}`;
await runMigrations(url);
const store = createStore(url, { max: 4 });
t.teardown(async () => {
  await store.close();
  const admin = postgres(`${PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
  await admin.unsafe(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).finally(() => admin.end({ timeout: 2 }));
});

/** Two replicas on one clock. */
function replicas(start: number) {
  const clock = { now: start };
  const now = () => clock.now;
  return { clock, limiters: [new RateLimiter(store, now), new RateLimiter(store, now)] };
}

/** Offers `n` requests alternately to the replicas; returns how many were admitted and the refusals. */
async function offer(limiters: RateLimiter[], ws: string, limit: number, n: number) {
  const results = await Promise.all(Array.from({ length: n }, (_, i) =>
    limiters[i % limiters.length]!.take(ws, limit).then(() => undefined, (e: unknown) => e)));
  const refused = results.filter((r) => r !== undefined);
  return { admitted: n - refused.length, refused: refused as ResourceExhaustedError[] };
}

t.test('a burst at a minute edge cannot admit twice the limit within 60 seconds', async (t) => {
  const minute = Math.ceil(Date.now() / 60_000) * 60_000 + 600_000;
  const { clock, limiters } = replicas(minute - 1_000);
  const before = await offer(limiters, 'ws_edge', 60, 200);
  t.equal(before.admitted, 60, 'one second before the minute: the limit is admitted');
  t.ok(before.refused.every((e) => e instanceof ResourceExhaustedError && e.reason === 'RATE_LIMITED'), 'the rest refused');
  const hint = before.refused[0]!.retryAfterMs!;
  t.ok(hint > 60_000 - 1_000 && hint <= 60_000 + SLOT_MS, `RetryInfo says when allowance frees up (${hint} ms)`);

  clock.now = minute + 1_000;
  t.equal((await offer(limiters, 'ws_edge', 60, 40)).admitted, 0, 'one second after the minute edge: still refused');
  clock.now = minute + 55_000;
  t.equal((await offer(limiters, 'ws_edge', 60, 10)).admitted, 0, 'and 56 seconds after the burst');
  clock.now = minute - 1_000 + hint;
  t.equal((await offer(limiters, 'ws_edge', 60, 200)).admitted, 60, 'once the hinted delay has passed, the whole limit again');
});

t.test('under steady demand, no 60-second span admits more than the limit, and the limit is nearly reached', async (t) => {
  const start = Math.ceil(Date.now() / 60_000) * 60_000 + 3_600_000 + 2_345;
  const { clock, limiters } = replicas(start);
  const limit = 100;
  const admittedAt: number[] = [];
  // Five minutes, a request every 250 ms to each replica (4.8 times the limit), at uneven times.
  for (let ms = 0; ms < 300_000; ms += 125) {
    clock.now = start + ms + (ms % 7);
    const ok = await limiters[(ms / 125) % 2]!.take('ws_steady', limit).then(() => true, () => false);
    if (ok) admittedAt.push(clock.now);
  }
  let worst = 0;
  for (let i = 0, j = 0; i < admittedAt.length; i++) {
    while (admittedAt[i]! - admittedAt[j]! >= 60_000) j++;
    worst = Math.max(worst, i - j + 1);
  }
  t.ok(worst <= limit, `the busiest 60 seconds admitted ${worst}, no more than ${limit}`);
  const perMinute = admittedAt.length / 5;
  t.ok(perMinute >= limit * 0.85, `${perMinute} admitted a minute on average, near the limit`);
});

t.test('two replicas together admit the limit, not a chunk more, and other workspaces are apart', async (t) => {
  const start = Math.ceil(Date.now() / 60_000) * 60_000 + 7_200_000 + 1_000;
  const { limiters } = replicas(start);
  t.equal((await offer(limiters, 'ws_a', 1_000, 2_200)).admitted, 1_000, 'exactly the limit of 1000');
  t.equal((await offer(limiters, 'ws_b', 10, 30)).admitted, 10, 'another workspace has its own');
  await t.resolves(limiters[0]!.take('ws_free', 0), '0 is unlimited');
});
