import { getTableColumns } from 'drizzle-orm';
import type postgres from 'postgres';
import { jobEvents, jobs } from '../schema/jobs.js';
import { usage } from '../schema/audit.js';
import type { Queryable } from '../client.js';

/** A jobs row, as every query of the table returns it (camelCase keys, from the drizzle schema). */
export type JobRow = typeof jobs.$inferSelect;
/** A job_events row. */
export type JobEventRow = typeof jobEvents.$inferSelect;
/** A usage row. */
export type UsageRow = typeof usage.$inferSelect;

export type { Queryable };

type JobKey = keyof JobRow;
const columns = getTableColumns(jobs);
const allKeys = Object.keys(columns) as JobKey[];

/**
 * A select (or RETURNING) list of jobs columns under their row keys:
 * `j.workspace_id AS "workspaceId", ...`, every column when `keys` is not given.
 */
export function jobColumnList(alias: string, keys: readonly JobKey[] = allKeys): string {
  const prefix = alias ? `${alias}.` : '';
  return keys.map((k) => {
    const name = columns[k].name;
    return name === k ? `${prefix}${name}` : `${prefix}${name} AS "${k}"`;
  }).join(', ');
}

/** The same list as a postgres.js fragment, to splice into a tagged template. */
export function jobColumnsOf(q: Queryable, alias: string, keys?: readonly JobKey[]): postgres.PendingQuery<postgres.Row[]> {
  return q.unsafe(jobColumnList(alias, keys));
}

/** A raw SQL fragment (state lists from the transition table, column lists). */
export function raw(q: Queryable, text: string): postgres.PendingQuery<postgres.Row[]> {
  return q.unsafe(text);
}

/** (id, attempt) pairs as one JSON document for json_to_recordset: one parameter, any number of rows. */
export function attemptsDoc(rows: readonly { id: string; attempt: number }[]): string {
  return JSON.stringify(rows.map((r) => ({ id: r.id, attempt: r.attempt })));
}
