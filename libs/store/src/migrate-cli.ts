#!/usr/bin/env node
// `npm run migrate`: applies the migrations to DATABASE_URL.
import { commonEnv, createLogger, loadConfig } from '@aijob/platform';
import { runMigrations } from './migrate.js';

const config = loadConfig({ DATABASE_URL: commonEnv.DATABASE_URL, LOG_LEVEL: commonEnv.LOG_LEVEL });
const log = createLogger('migrate', config.LOG_LEVEL);
try {
  await runMigrations(config.DATABASE_URL);
  log.info('migrations applied');
} catch (err) {
  log.error({ err }, 'migration failed');
  process.exitCode = 1;
}
