import { and, asc, eq, getTableColumns, isNull, ne, sql } from 'drizzle-orm';
import type { Db, DbOrTx } from '../client.js';
import { apiKeys, workspaces, type ApiKeyRow, type NewApiKeyRow } from '../schema/index.js';

/** An API key as listed and returned: the row without its secret's hash. */
export type ApiKeyInfo = Omit<ApiKeyRow, 'secretHash'>;

const { secretHash: _hash, ...infoColumns } = getTableColumns(apiKeys);

export async function findApiKey(db: DbOrTx, id: string): Promise<ApiKeyInfo | undefined> {
  const [row] = await db.select(infoColumns).from(apiKeys).where(eq(apiKeys.id, id));
  return row;
}

/** A workspace's keys, oldest first; revoked ones only with `includeRevoked`. */
export function listApiKeys(db: DbOrTx, workspaceId: string, includeRevoked: boolean): Promise<ApiKeyInfo[]> {
  return db
    .select(infoColumns)
    .from(apiKeys)
    .where(and(eq(apiKeys.workspaceId, workspaceId), includeRevoked ? undefined : isNull(apiKeys.revokedAt)))
    .orderBy(asc(apiKeys.createdAt), asc(apiKeys.id));
}

export async function insertApiKey(db: DbOrTx, row: NewApiKeyRow): Promise<ApiKeyInfo> {
  const [created] = await db.insert(apiKeys).values(row).returning(infoColumns);
  return created!;
}

/**
 * Inserts a key under a fixed id, or gives the existing one this secret (and un-revokes
 * it) when its secret differs; whether anything changed.
 */
export async function installApiKey(db: DbOrTx, row: NewApiKeyRow): Promise<boolean> {
  const changed = await db
    .insert(apiKeys)
    .values(row)
    .onConflictDoUpdate({
      target: apiKeys.id,
      set: { secretHash: sql`excluded.secret_hash`, revokedAt: null },
      setWhere: ne(apiKeys.secretHash, sql`excluded.secret_hash`),
    })
    .returning({ id: apiKeys.id });
  return changed.length > 0;
}

/** Revokes a key (a revoked one keeps its first revocation time); undefined when there is none. */
export async function revokeApiKey(db: DbOrTx, id: string): Promise<ApiKeyInfo | undefined> {
  const [row] = await db
    .update(apiKeys)
    .set({ revokedAt: sql`COALESCE(${apiKeys.revokedAt}, now())` })
    .where(eq(apiKeys.id, id))
    .returning(infoColumns);
  return row;
}

/** Records that a key was just used. */
export async function touchApiKey(db: DbOrTx, id: string): Promise<void> {
  await db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .where(eq(apiKeys.id, id));
}

/** What authenticating with a key needs: the key's state and its workspace's policy. */
export type Credential = Awaited<ReturnType<ReturnType<typeof credentialQueries>['byHash']['execute']>>[number];

function credentialQueries(db: Db) {
  const select = () =>
    db
      .select({
        id: apiKeys.id,
        workspaceId: apiKeys.workspaceId,
        scopes: apiKeys.scopes,
        revokedAt: apiKeys.revokedAt,
        expiresAt: apiKeys.expiresAt,
        rateLimitPerMinute: workspaces.rateLimitPerMinute,
        maxPending: workspaces.maxPending,
        allowedJobTypes: workspaces.allowedJobTypes,
        monthlyBudgetUsd: workspaces.monthlyBudgetUsd,
      })
      .from(apiKeys)
      .innerJoin(workspaces, eq(workspaces.id, apiKeys.workspaceId));
  return {
    byHash: select()
      .where(eq(apiKeys.secretHash, sql.placeholder('hash')))
      .prepare('credential_by_hash'),
    byId: select()
      .where(eq(apiKeys.id, sql.placeholder('id')))
      .prepare('credential_by_id'),
  };
}

const prepared = new WeakMap<Db, ReturnType<typeof credentialQueries>>();
const queriesOf = (db: Db) => {
  let q = prepared.get(db);
  if (!q) prepared.set(db, (q = credentialQueries(db)));
  return q;
};

/** The key whose secret hashes to `hash`, with its workspace's policy (prepared: every uncached call runs it). */
export async function credentialByHash(db: Db, hash: string): Promise<Credential | undefined> {
  const [row] = await queriesOf(db).byHash.execute({ hash });
  return row;
}

/** The key `id` with its workspace's policy (a token's key, checked on every uncached token). */
export async function credentialById(db: Db, id: string): Promise<Credential | undefined> {
  const [row] = await queriesOf(db).byId.execute({ id });
  return row;
}
