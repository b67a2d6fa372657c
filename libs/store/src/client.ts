import postgres from 'postgres';
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import * as schema from './schema/index.js';

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;
export type Db = PostgresJsDatabase<typeof schema>;

export interface Store {
  /** postgres.js client, for batched hot-path statements. */
  sql: Sql;
  /** drizzle over the same pool, for everything else. */
  db: Db;
  close(): Promise<void>;
  /** Readiness probe: one round trip. */
  ping(): Promise<void>;
}

/** The one place that builds database clients. */
export function createStore(url: string, opts: { max?: number; applicationName?: string } = {}): Store {
  const sql = postgres(url, {
    max: opts.max ?? 10,
    idle_timeout: 60,
    connect_timeout: 10,
    prepare: true,
    onnotice: () => {},
    connection: { application_name: opts.applicationName ?? 'aijob' },
  });
  const db = drizzle(sql, { schema });
  return {
    sql,
    db,
    close: () => sql.end({ timeout: 5 }),
    ping: async () => { await sql`SELECT 1`; },
  };
}
