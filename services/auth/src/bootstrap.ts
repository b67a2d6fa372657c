import type { Logger } from '@aijob/core';
import type { Store } from '@aijob/store';
import { hashApiKey, newApiKey, newWorkspaceId } from './keys.js';

/**
 * First start: creates the bootstrap workspace and an admin key for it. The key is
 * AIJOB_BOOTSTRAP_API_KEY when given (so scripts know it), otherwise generated and
 * shown once on stderr. Safe to run from several replicas at once.
 */
export async function bootstrap(store: Store, o: { workspace: string; apiKey?: string; rateLimitPerMinute: number; log: Logger }): Promise<void> {
  const shown = await store.sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(712003)`;
    let [ws] = await tx<{ id: string }[]>`SELECT id FROM workspaces WHERE name = ${o.workspace}`;
    const created = !ws;
    if (!ws) {
      [ws] = await tx<{ id: string }[]>`
        INSERT INTO workspaces (id, name, rate_limit_per_minute)
        VALUES (${newWorkspaceId()}, ${o.workspace}, ${o.rateLimitPerMinute}) RETURNING id`;
      o.log.info({ workspace_id: ws!.id, name: o.workspace }, 'bootstrap workspace created');
    }
    if (o.apiKey) {
      const inserted = await tx`
        INSERT INTO api_keys (id, workspace_id, name, secret_hash, scopes)
        VALUES ('key_bootstrap', ${ws!.id}, 'bootstrap admin', ${hashApiKey(o.apiKey)}, ${['admin']})
        ON CONFLICT (id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, revoked_at = NULL
          WHERE api_keys.secret_hash <> EXCLUDED.secret_hash`;
      if (inserted.count > 0) o.log.info({ key_id: 'key_bootstrap' }, 'bootstrap API key installed from AIJOB_BOOTSTRAP_API_KEY');
      return undefined;
    }
    if (!created) return undefined;
    const key = newApiKey();
    await tx`INSERT INTO api_keys (id, workspace_id, name, secret_hash, scopes)
      VALUES (${key.id}, ${ws!.id}, 'bootstrap admin', ${key.hash}, ${['admin']})`;
    return { key: key.key, id: key.id, workspaceId: ws!.id };
  });
  if (shown) {
    // Shown once, on stderr, outside the JSON log stream: it is a secret.
    process.stderr.write(
      `\n  aijob: admin API key for workspace "${o.workspace}" (${shown.workspaceId}), shown only now:\n\n` +
      `    ${shown.key}\n\n  Keep it; it is stored only as a hash.\n\n`);
  }
}
