import type { Logger } from '@aijob/core';
import { findWorkspaceByName, insertApiKey, insertWorkspace, installApiKey, lockedTransaction, type Store } from '@aijob/store';
import { hashApiKey, newApiKey, newWorkspaceId } from './keys.js';

/**
 * First start: creates the bootstrap workspace and an admin key for it. The key is
 * AIJOB_BOOTSTRAP_API_KEY when given (so scripts know it), otherwise generated and
 * shown once on stderr. Safe to run from several replicas at once.
 */
export async function bootstrap(store: Store, o: { workspace: string; apiKey?: string; rateLimitPerMinute: number; log: Logger }): Promise<void> {
  const shown = await lockedTransaction(store.db, 'bootstrap', async (tx) => {
    let ws = await findWorkspaceByName(tx, o.workspace);
    const created = !ws;
    if (!ws) {
      ws = await insertWorkspace(tx, { id: newWorkspaceId(), name: o.workspace, rateLimitPerMinute: o.rateLimitPerMinute });
      o.log.info({ workspace_id: ws!.id, name: o.workspace }, 'bootstrap workspace created');
    }
    const admin = { workspaceId: ws!.id, name: 'bootstrap admin', scopes: ['admin'] };
    if (o.apiKey) {
      if (await installApiKey(tx, { ...admin, id: 'key_bootstrap', secretHash: hashApiKey(o.apiKey) })) {
        o.log.info({ key_id: 'key_bootstrap' }, 'bootstrap API key installed from AIJOB_BOOTSTRAP_API_KEY');
      }
      return undefined;
    }
    if (!created) return undefined;
    const key = newApiKey();
    await insertApiKey(tx, { ...admin, id: key.id, secretHash: key.hash });
    return { key: key.key, id: key.id, workspaceId: ws!.id };
  });
  if (shown) {
    // Shown once, on stderr, outside the JSON log stream: it is a secret.
    process.stderr.write(
      `\n  aijob: admin API key for workspace "${o.workspace}" (${shown.workspaceId}), shown only now:\n\n` +
      `    ${shown.key}\n\n  Keep it; it is stored only as a hash.\n\n`);
  }
}
