#!/usr/bin/env node
// `npm run migrate`: applies the migrations to DATABASE_URL.
//   --check  exits 0 when the database has every migration of this build, 1 when not
//   --wait   waits (polling every 2 s) until it has them, then exits 0: an init container
//            of the services, so pods started beside the migration Job wait for it
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { commonEnv, createLogger, delay, loadConfig } from '@aijob/core';
import { migrationsFolder, runMigrations } from './migrate.js';

const { values } = parseArgs({ options: { check: { type: 'boolean' }, wait: { type: 'boolean' } }, allowPositionals: true });
const config = loadConfig({ DATABASE_URL: commonEnv.DATABASE_URL, LOG_LEVEL: commonEnv.LOG_LEVEL });
const log = createLogger('migrate', config.LOG_LEVEL);

/** Whether the newest migration of this build is applied (drizzle applies those newer than the last row). */
async function current(): Promise<{ ok: boolean; reason: string }> {
  const newest = Math.max(...readMigrationFiles({ migrationsFolder }).map((m) => m.folderMillis));
  const sql = postgres(config.DATABASE_URL, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    const [row] = await sql<{ last: string | null }[]>`SELECT max(created_at)::text AS last FROM drizzle.__drizzle_migrations`;
    const last = Number(row?.last ?? 0);
    return last >= newest ? { ok: true, reason: 'up to date' } : { ok: false, reason: `last applied ${last}, this build needs ${newest}` };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  } finally {
    await sql.end({ timeout: 5 }).catch(() => undefined);
  }
}

try {
  if (values.check || values.wait) {
    for (let i = 0; ; i++) {
      const r = await current();
      if (r.ok) { log.info('migrations are applied'); break; }
      if (!values.wait) { log.warn({ reason: r.reason }, 'migrations are missing'); process.exitCode = 1; break; }
      if (i % 15 === 0) log.info({ reason: r.reason }, 'waiting for the migrations (the aijob-migrate Job)');
      await delay(2_000);
    }
  } else {
    await runMigrations(config.DATABASE_URL);
    log.info('migrations applied');
  }
} catch (err) {
  log.error({ err }, 'migration failed');
  process.exitCode = 1;
}
