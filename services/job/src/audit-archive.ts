#!/usr/bin/env node
// `npm run audit:archive -- --older-than-days 90 --out audit.jsonl`
// Exports audit rows older than N days to JSON Lines, then deletes exactly the rows it
// wrote, chunk by chunk: a row is deleted only after it is safely in the file.
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { commonEnv, createLogger, loadConfig } from '@aijob/core';
import { auditLogBefore, createStore, deleteAuditLog, type AuditLogRow } from '@aijob/store';

const CHUNK = 5_000;

const { values } = parseArgs({
  options: { 'older-than-days': { type: 'string', default: '90' }, out: { type: 'string' }, 'dry-run': { type: 'boolean', default: false } },
});
const days = Number(values['older-than-days']);
if (!Number.isFinite(days) || days < 0 || !values.out) {
  process.stderr.write('usage: audit-archive --older-than-days N --out FILE.jsonl [--dry-run]\n');
  process.exit(2);
}
const config = loadConfig({ DATABASE_URL: commonEnv.DATABASE_URL, LOG_LEVEL: commonEnv.LOG_LEVEL });
const log = createLogger('audit-archive', config.LOG_LEVEL);
const store = createStore(config.DATABASE_URL, { max: 1, applicationName: 'aijob-audit-archive' });
const out: WriteStream = createWriteStream(values.out, { flags: 'a' });

/** One line of the archive, under the table's column names (the file's format since its first version). */
function archived(r: AuditLogRow) {
  return {
    id: String(r.id), at: r.at, actor: r.actor, workspace_id: r.workspaceId, action: r.action, resource: r.resource,
    outcome: r.outcome, reason: r.reason, trace_id: r.traceId, request_id: r.requestId,
  };
}

const cutoff = new Date(Date.now() - days * 86_400_000);
let afterId = 0;
let exported = 0;
let deleted = 0;
try {
  for (;;) {
    const rows = await auditLogBefore(store.db, cutoff, afterId, CHUNK);
    if (rows.length === 0) break;
    for (const r of rows) {
      if (!out.write(`${JSON.stringify(archived(r))}\n`)) await once(out, 'drain');
    }
    await new Promise<void>((resolve, reject) => out.write('', (err) => (err ? reject(err) : resolve())));
    exported += rows.length;
    const ids = rows.map((r) => r.id);
    afterId = ids[ids.length - 1]!;
    if (!values['dry-run']) deleted += await deleteAuditLog(store.db, ids, cutoff);
  }
  out.end();
  await once(out, 'finish');
  log.info({ exported, deleted, cutoff, file: values.out }, 'audit rows archived');
  process.stdout.write(`${JSON.stringify({ exported, deleted, cutoff, file: values.out })}\n`);
} catch (err) {
  log.error({ err }, 'audit archive failed; rows not yet written are kept');
  process.exitCode = 1;
} finally {
  await store.close();
}
