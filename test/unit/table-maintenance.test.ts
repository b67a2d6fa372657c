// The scheduler leader's table maintenance against a real Postgres (a database of its
// own): tables with enough dead rows are vacuumed, tables only grown are analyzed, and a
// table that needs nothing is left alone.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import pino from 'pino';
import { TableMaintenance } from '../../services/scheduler/dist/table-maintenance.js';
import { PG_BASE, waitFor } from '../helpers/platform.js';

const dbName = `aijob_tm_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const admin = postgres(`${PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
await admin.unsafe(`CREATE DATABASE "${dbName}"`);
const sql = postgres(`${PG_BASE}/${dbName}`, { max: 2, onnotice: () => {} });
t.teardown(async () => {
  await sql.end({ timeout: 2 });
  await admin.unsafe(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).finally(() => admin.end({ timeout: 2 }));
});

const stats = async (table: string) => (await sql<{ dead: number; modified: number; vacuumed: Date | null; analyzed: Date | null }[]>`
  SELECT n_dead_tup::int AS dead, n_mod_since_analyze::int AS modified, last_vacuum AS vacuumed, last_analyze AS analyzed
  FROM pg_stat_user_tables WHERE relname = ${table}`)[0]!;

t.test('dead rows past the threshold get VACUUM (ANALYZE), grown tables ANALYZE, others nothing', async (t) => {
  await sql`CREATE TABLE churn (id int PRIMARY KEY, v int NOT NULL, state text NOT NULL)`;
  await sql`CREATE INDEX churn_state_idx ON churn (state)`;
  await sql`INSERT INTO churn SELECT i, 0, 'QUEUED' FROM generate_series(1, 5000) i`;
  // Two transitions a row, as jobs make them (the indexed state column: no HOT updates).
  await sql`UPDATE churn SET state = 'RUNNING', v = 1`;
  await sql`UPDATE churn SET state = 'SUCCEEDED', v = 2`;
  await sql`CREATE TABLE grown (id int PRIMARY KEY)`;
  await sql`INSERT INTO grown SELECT generate_series(1, 3000)`;
  await sql`CREATE TABLE quiet (id int PRIMARY KEY)`;
  await sql`INSERT INTO quiet SELECT generate_series(1, 10)`;
  // Backends report their row counts to the statistics within seconds.
  await waitFor(async () => (await stats('churn')).dead >= 10_000 && (await stats('grown')).modified >= 3_000, 30_000, 'the statistics');

  const logged: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => { logged.push(JSON.parse(line) as Record<string, unknown>); } });
  const m = new TableMaintenance(sql, log, { mode: 'always', intervalMs: 1_000, minDeadRows: 1_000, deadRatio: 0.2 });
  const done = await m.check();
  t.same(done, [{ table: 'churn', action: 'vacuum' }, { table: 'grown', action: 'analyze' }], 'churn vacuumed, grown analyzed, quiet left alone');
  const churn = await stats('churn');
  t.ok(churn.vacuumed && churn.analyzed, 'churn has a last vacuum and analyze');
  t.ok(churn.dead < 1_000, `churn's dead rows are gone (${churn.dead} left)`);
  t.ok((await stats('grown')).analyzed, 'grown has a last analyze');
  t.equal((await stats('quiet')).vacuumed, null, 'quiet was not vacuumed');
  t.ok(logged.some((l) => l['msg'] === 'table maintained' && l['table'] === 'churn' && l['dead_rows'] === 10_000), 'each run is logged with its row counts');
  t.same(await m.check(), [], 'nothing is due right after');

  const [{ autovacuum }] = await sql<{ autovacuum: string }[]>`SELECT current_setting('autovacuum') AS autovacuum`;
  await sql`UPDATE churn SET v = 3 WHERE id <= 2000`;
  await waitFor(async () => (await stats('churn')).dead >= 2_000, 30_000, 'the new dead rows counted');
  const auto = new TableMaintenance(sql, log, { mode: 'auto', intervalMs: 1_000, minDeadRows: 1_000, deadRatio: 0.2 });
  // With autovacuum off (as on this machine's server) auto acts; with it on, 2 000 dead rows
  // of 5 000 live are autovacuum's to handle.
  t.same(await auto.check(), autovacuum === 'off' ? [{ table: 'churn', action: 'vacuum' }] : [],
    `auto mode with the server's autovacuum ${autovacuum}`);
});

t.test('stop cancels a VACUUM in progress instead of waiting for it', async (t) => {
  await sql`CREATE TABLE locked (id int PRIMARY KEY, v int NOT NULL)`;
  await sql`INSERT INTO locked SELECT i, 0 FROM generate_series(1, 200) i`;
  await sql`UPDATE locked SET v = 1`;
  await waitFor(async () => (await stats('locked')).dead >= 200, 30_000, 'the dead rows counted');
  // A transaction holding the lock VACUUM needs keeps it waiting for as long as we like.
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  const holder = postgres(`${PG_BASE}/${dbName}`, { max: 1, onnotice: () => {} });
  t.teardown(() => holder.end({ timeout: 2 }));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => { locked = r; });
  const holding = holder.begin(async (tx) => {
    await tx`LOCK TABLE locked IN SHARE UPDATE EXCLUSIVE MODE`;
    locked();
    await released;
  });
  await isLocked;

  const logged: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => { logged.push(JSON.parse(line) as Record<string, unknown>); } });
  const m = new TableMaintenance(sql, log, { mode: 'always', intervalMs: 1_000, minDeadRows: 100, deadRatio: 0 });
  m.start(() => true);
  await waitFor(async () => (await sql`SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = ${dbName} AND wait_event_type = 'Lock' AND query LIKE 'VACUUM%locked%'`)[0]!['n'] === 1, 30_000, 'the VACUUM waiting for the lock');
  let deadline: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([m.stop().then(() => 'stopped'), new Promise((r) => { deadline = setTimeout(() => r('still waiting'), 10_000); })]);
  clearTimeout(deadline);
  t.equal(stopped, 'stopped', 'stop returned while the VACUUM could not have finished');
  t.ok(logged.some((l) => l['msg'] === 'table maintenance cancelled at shutdown' && l['table'] === 'locked'), 'the cancelled run is logged as such');
  t.notOk(logged.some((l) => l['msg'] === 'table maintenance failed'), 'not as a failure');
  release();
  await holding;
});
