import postgres from 'postgres';
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import * as schema from './schema/index.js';

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;
export type Db = PostgresJsDatabase<typeof schema>;
/** An open drizzle transaction (what `db.transaction` hands its callback). */
export type DbTx = Parameters<Parameters<Db['transaction']>[0]>[0];
/** Where a drizzle query runs: the client or an open transaction of it. */
export type DbOrTx = Db | DbTx;
/** Where a postgres.js statement runs: the client or an open transaction of it. */
export type Queryable = Sql | Tx;

export interface Store {
  /** postgres.js client with its own type handling: batched hot-path statements. */
  sql: Sql;
  /** drizzle, for typed queries off the hot path (its own small pool: drizzle reconfigures its client's type parsers). */
  readonly db: Db;
  close(): Promise<void>;
  /** Readiness probe: one round trip. */
  ping(): Promise<void>;
}

/** The one place that builds database clients. */
export function createStore(url: string, opts: { max?: number; applicationName?: string } = {}): Store {
  const options = {
    idle_timeout: 60,
    connect_timeout: 10,
    prepare: true,
    onnotice: () => {},
    connection: { application_name: opts.applicationName ?? 'aijob' },
  };
  const sql = postgres(url, { ...options, max: opts.max ?? 10 });
  let drizzleClient: Sql | undefined;
  let db: Db | undefined;
  return {
    sql,
    get db() {
      if (!db) {
        drizzleClient = postgres(url, { ...options, max: 2 });
        db = drizzle(drizzleClient, { schema });
      }
      return db;
    },
    close: async () => {
      await Promise.all([sql.end({ timeout: 5 }), drizzleClient?.end({ timeout: 5 })]);
    },
    ping: async () => { await sql`SELECT 1`; },
  };
}
