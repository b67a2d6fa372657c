// What Postgres does for a scenario: statements, rows written per table, WAL bytes.
//
// Statements come from pg_stat_statements when the server preloads it (it needs
// shared_preload_libraries and a restart; the shared server here has it off). Otherwise
// they are counted as transactions from pg_stat_database: a statement outside a
// transaction block is a transaction of its own, a BEGIN ... COMMIT block counts once,
// so that figure is a lower bound of statements. Rows written come from
// pg_stat_user_tables (n_tup_ins / n_tup_upd / n_tup_del). Those two views are fed by
// each backend at most once a second, and by an idle one within 10 s, so a reading
// waits that long after the scenario's last job ended. WAL bytes are from
// pg_current_wal_lsn(), which is the whole server's: other databases' writes in the same
// time are counted too (on a shared server, run when it is quiet, or take the lowest).
import postgres from 'postgres';

const SETTLE_MS = 10_500;
const TABLES = ['jobs', 'job_events', 'audit_log', 'usage'];

export class DbWork {
  /**
   * `sql` reaches the platform's database; `own()` counts the statements the benchmark
   * itself sent there (subtracted).
   */
  constructor(sql, own) {
    this.sql = sql;
    this.own = own;
  }

  async init() {
    const [{ preload }] = await this.sql`SELECT current_setting('shared_preload_libraries') AS preload`;
    this.statements = /\bpg_stat_statements\b/.test(preload);
    if (this.statements) await this.sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
    this.method = this.statements ? 'pg_stat_statements' : 'transactions (pg_stat_database; pg_stat_statements not preloaded)';
    return this;
  }

  /** Counters now (waits for the statistics of work just ended to arrive). */
  async read({ settle = true } = {}) {
    if (settle) await new Promise((r) => setTimeout(r, SETTLE_MS));
    const [db] = await this.sql`SELECT xact_commit + xact_rollback AS xacts, pg_current_wal_lsn() AS lsn,
      pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal FROM pg_stat_database WHERE datname = current_database()`;
    const tables = Object.fromEntries(TABLES.map((t) => [t, { ins: 0, upd: 0, hot: 0, del: 0 }]));
    for (const r of await this.sql`SELECT relname, n_tup_ins::float8 AS ins, n_tup_upd::float8 AS upd,
        n_tup_hot_upd::float8 AS hot, n_tup_del::float8 AS del FROM pg_stat_user_tables WHERE relname = ANY(${TABLES})`) {
      tables[r.relname] = { ins: r.ins, upd: r.upd, hot: r.hot, del: r.del };
    }
    let statements;
    if (this.statements) {
      [{ statements }] = await this.sql`SELECT coalesce(sum(calls), 0)::float8 AS statements FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`;
    }
    // Read last, so the benchmark's own reads above are counted in it.
    return { xacts: Number(db.xacts), wal: db.wal, statements, tables, own: this.own() };
  }

  /** Per-job figures between two readings. */
  perJob(a, b, jobs) {
    const own = b.own - a.own;
    const per = (x) => Number((x / jobs).toFixed(3));
    const rows = {};
    let written = 0;
    for (const t of TABLES) {
      const d = { ins: b.tables[t].ins - a.tables[t].ins, upd: b.tables[t].upd - a.tables[t].upd, del: b.tables[t].del - a.tables[t].del };
      written += d.ins + d.upd + d.del;
      rows[t] = { inserted: per(d.ins), updated: per(d.upd), hotUpdated: per(b.tables[t].hot - a.tables[t].hot), deleted: per(d.del) };
    }
    return {
      method: this.method,
      statements: this.statements ? per(b.statements - a.statements - own) : undefined,
      transactions: per(b.xacts - a.xacts - own),
      rowsWritten: per(written),
      rows,
      walBytes: Math.round((b.wal - a.wal) / jobs),
    };
  }
}

/** A postgres.js client that counts the statements it sends. */
export function countingClient(url, max = 4) {
  let n = 0;
  const sql = postgres(url, { max, onnotice: () => {}, debug: () => { n++; } });
  return { sql, count: () => n };
}
