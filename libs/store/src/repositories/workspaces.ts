import { asc, eq, gt, sql } from 'drizzle-orm';
import type { DbOrTx } from '../client.js';
import { workspaces, type NewWorkspaceRow, type WorkspaceRow } from '../schema/index.js';

/** A change of a workspace's policy: unset fields keep their value; null clears a nullable one. */
export type PolicyChange = Partial<
  Pick<WorkspaceRow, 'rateLimitPerMinute' | 'maxPending' | 'allowedJobTypes' | 'monthlyBudgetUsd'>
>;

export async function findWorkspace(db: DbOrTx, id: string): Promise<WorkspaceRow | undefined> {
  const [row] = await db.select().from(workspaces).where(eq(workspaces.id, id));
  return row;
}

export async function findWorkspaceByName(db: DbOrTx, name: string): Promise<WorkspaceRow | undefined> {
  const [row] = await db.select().from(workspaces).where(eq(workspaces.name, name));
  return row;
}

/** Workspaces by id, after `afterId` (paging). */
export function listWorkspaces(db: DbOrTx, afterId: string, limit: number): Promise<WorkspaceRow[]> {
  return db.select().from(workspaces).where(gt(workspaces.id, afterId)).orderBy(asc(workspaces.id)).limit(limit);
}

/** Inserts a workspace; undefined when its name is taken. */
export async function insertWorkspace(db: DbOrTx, row: NewWorkspaceRow): Promise<WorkspaceRow | undefined> {
  const [created] = await db
    .insert(workspaces)
    .values(row)
    .onConflictDoNothing({ target: workspaces.name })
    .returning();
  return created;
}

/** Applies a policy change; undefined when the workspace does not exist. */
export async function updateWorkspacePolicy(
  db: DbOrTx,
  id: string,
  c: PolicyChange,
): Promise<WorkspaceRow | undefined> {
  const [row] = await db
    .update(workspaces)
    .set({
      rateLimitPerMinute: c.rateLimitPerMinute,
      maxPending: c.maxPending,
      allowedJobTypes: c.allowedJobTypes,
      monthlyBudgetUsd: c.monthlyBudgetUsd,
      updatedAt: sql`now()`,
    })
    .where(eq(workspaces.id, id))
    .returning();
  return row;
}
