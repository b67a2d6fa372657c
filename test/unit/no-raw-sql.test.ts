// Services hold no SQL: every statement lives in libs/store (drizzle's builder or a typed
// postgres.js template there), and services call its functions. This reads the source of
// every service and fails on a tagged SQL template (`sql`…``, `tx`…``, typed or not), a
// `.unsafe(` call or an SQL statement in a string.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');


const rawSql: [string, RegExp][] = [
  ['a tagged SQL template', /\b(?:sql|tx)\s*(?:<[^`]*?>)?\s*`/],
  ['a .unsafe( call', /\.unsafe\s*(?:<[^(]*?>)?\s*\(/],
  ['an SQL statement in a string', /\b(?:SELECT|INSERT INTO|DELETE FROM|UPDATE [a-z_]+ SET)\b/],
];

/** What a file says, without its comment lines (which may well talk about SQL). */
function code(file: string): string {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => !/^\s*(\/\/|\*|\/\*)/.test(l))
    .join('\n');
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The raw SQL a source holds, by kind. */
function rawSqlIn(source: string): string[] {
  return rawSql.filter(([, re]) => re.test(source)).map(([kind]) => kind);
}

t.test('the patterns catch raw SQL and let store calls through', async (t) => {
  t.same(rawSqlIn('await this.store.sql`SELECT 1`;'), ['a tagged SQL template', 'an SQL statement in a string']);
  t.same(rawSqlIn('const [r] = await tx<{ n: number; m: string }[]>`x`;'), ['a tagged SQL template']);
  t.same(rawSqlIn('store.sql.unsafe<Row[]>(query, params)'), ['a .unsafe( call']);
  t.same(rawSqlIn("const q = 'DELETE FROM jobs WHERE id = $1';"), ['an SQL statement in a string']);
  t.same(rawSqlIn('await renewLease(this.store.sql, name, holder, epoch, ttlMs);'), []);
  t.same(rawSqlIn('const rows = await listAuditLog(this.store.db, { workspaceId, limit });'), []);
});

t.test('no service source holds raw SQL', async (t) => {
  const files = readdirSync(join(repoRoot, 'services'), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => sources(join(repoRoot, 'services', e.name, 'src')))
    .map((f) => relative(repoRoot, f).split('\\').join('/'));
  t.ok(files.length > 20, `${files.length} service sources read`);
  const offenders = files
    .map((f) => ({ file: f, holds: rawSqlIn(code(join(repoRoot, f))) }))
    .filter((o) => o.holds.length > 0);
  t.same(offenders, [], 'SQL belongs in libs/store/src/repositories; call a function from there');
});
