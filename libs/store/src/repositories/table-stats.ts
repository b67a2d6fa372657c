import type postgres from 'postgres';
import type { Sql } from '../client.js';

/** Row counts of one table of the current schema, from the statistics collector. */
export interface TableStats {
  table: string;
  live: number;
  dead: number;
  /** Rows changed since its last analyze. */
  modified: number;
  /** Whether the server's autovacuum is on. */
  autovacuum: boolean;
}

/** The current schema's tables with their live, dead and modified rows, by name. */
export async function tableStats(sql: Sql): Promise<TableStats[]> {
  const rows = await sql<(Omit<TableStats, 'autovacuum'> & { autovacuum: string })[]>`
    SELECT relname AS table, n_live_tup::int AS live, n_dead_tup::int AS dead, n_mod_since_analyze::int AS modified,
      current_setting('autovacuum') AS autovacuum
    FROM pg_stat_user_tables WHERE schemaname = current_schema() ORDER BY relname`;
  return rows.map((r) => ({
    table: r.table,
    live: r.live,
    dead: r.dead,
    modified: r.modified,
    autovacuum: r.autovacuum === 'on',
  }));
}

/**
 * `VACUUM (ANALYZE)` or `ANALYZE` of one table, as a query the caller may cancel (on a big
 * table it runs for minutes). The name is quoted: these commands take no bind parameters.
 */
export function maintainTable(
  sql: Sql,
  table: string,
  action: 'vacuum' | 'analyze',
): postgres.PendingQuery<postgres.Row[]> {
  const name = `"${table.replaceAll('"', '""')}"`;
  return sql.unsafe(action === 'vacuum' ? `VACUUM (ANALYZE) ${name}` : `ANALYZE ${name}`);
}
