#!/usr/bin/env node
// The container's entry point: `run-service.mjs <auth|job|scheduler|worker|gateway|migrate>`.
import { fileURLToPath } from 'node:url';

const which = process.argv[2];
const entries = {
  auth: '../services/auth/dist/main.js',
  job: '../services/job/dist/main.js',
  scheduler: '../services/scheduler/dist/main.js',
  worker: '../services/worker/dist/main.js',
  gateway: '../services/gateway/dist/main.js',
  migrate: '../libs/store/dist/migrate-cli.js',
};
if (!which || !(which in entries)) {
  process.stderr.write(`usage: run-service.mjs <${Object.keys(entries).join('|')}>\n`);
  process.exit(2);
}
await import(fileURLToPath(new URL(entries[which], import.meta.url)));
