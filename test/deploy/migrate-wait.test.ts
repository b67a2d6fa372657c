// `migrate --check` and `migrate --wait` (the services' init container) against a real
// Postgres: missing migrations are reported, the wait ends once the migration runs, and a
// database that is not there yet is waited for rather than failed on.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import postgres from 'postgres';
import { PG_BASE } from '../helpers/platform.js';
import { repoRoot, waitFor } from '../helpers/processes.js';

const cli = join(repoRoot, 'libs/store/dist/migrate-cli.js');
const db = `aijob_migwait_${randomBytes(4).toString('hex')}`;
const url = `${PG_BASE}/${db}`;

function run(args: string[]): { child: ChildProcess; exit: Promise<number> } {
  const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, DATABASE_URL: url, LOG_LEVEL: 'warn' }, stdio: 'ignore' });
  return { child, exit: new Promise((resolve) => child.once('exit', (code) => resolve(code ?? -1))) };
}

t.teardown(async () => {
  const sql = postgres(`${PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
  await sql.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`).catch(() => undefined);
  await sql.end();
});

t.test('check fails and wait waits until the migration Job has run, then both succeed', async (t) => {
  t.equal(await run(['--check']).exit, 1, 'no database yet: migrations missing');
  const waiting = run(['migrate', '--wait']);
  let done = false;
  void waiting.exit.then(() => { done = true; });
  await new Promise((r) => setTimeout(r, 2_500));
  t.notOk(done, 'still waiting while nothing migrated');
  t.equal(await run([]).exit, 0, 'the migration (what the Job runs)');
  await waitFor(() => done, 10_000, 'the wait to end');
  t.equal(await waiting.exit, 0, 'the wait ends with success, so the service container starts');
  t.equal(await run(['--check']).exit, 0, 'check now passes');
});

t.test('a database missing its newest migration is not current', async (t) => {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  t.teardown(() => sql.end());
  const [newest] = await sql<{ id: number; hash: string; created_at: string }[]>`
    SELECT id, hash, created_at::text FROM drizzle.__drizzle_migrations ORDER BY created_at DESC LIMIT 1`;
  await sql`DELETE FROM drizzle.__drizzle_migrations WHERE id = ${newest!.id}`;
  t.equal(await run(['--check']).exit, 1, 'one migration behind (an image newer than the schema): missing');
  await sql`INSERT INTO drizzle.__drizzle_migrations (id, hash, created_at) VALUES (${newest!.id}, ${newest!.hash}, ${newest!.created_at}::bigint)`;
  t.equal(await run(['--check']).exit, 0, 'and current again once it is recorded');
});
