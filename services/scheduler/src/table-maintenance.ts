import { errorMessage, type Logger } from '@aijob/core';
import { counter, gauge, histogram } from '@aijob/telemetry';
import { maintainTable, tableStats, type Sql, type TableStats } from '@aijob/store';

export type MaintenanceMode = 'auto' | 'always' | 'off';
type Action = 'vacuum' | 'analyze';

export interface TableMaintenanceOptions {
  /** `auto`: only while the server's autovacuum is off or falling behind; `always`; `off`. */
  mode: MaintenanceMode;
  intervalMs: number;
  /** A table is vacuumed once it holds this many dead rows and `deadRatio` of its live ones (analyzed likewise for rows changed since its last analyze). */
  minDeadRows: number;
  deadRatio: number;
}

/**
 * Vacuums and analyzes this platform's tables when Postgres does not. Every job is
 * updated two or three times on its way to a terminal state, so the jobs table makes
 * dead rows as fast as jobs run; unvacuumed, they pile up in the table and its indexes
 * and every transition, count and lookup gets slower (a 10-minute soak at 500 jobs/s
 * against a server with autovacuum off drifted from a 156 ms to a 4.5 s submit p99).
 * Postgres's autovacuum is the first line; this leader-only duty covers servers where it
 * is off and tables it does not keep up with (dead rows past their live ones). VACUUM
 * runs beside normal traffic (no exclusive lock) on a connection of its own.
 */
export class TableMaintenance {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** The VACUUM or ANALYZE in progress, cancelled at stop: on a big table it can take minutes. */
  private current: { cancel(): void } | undefined;
  private stopping = false;
  private readonly metrics = {
    runs: counter('aijob_db_maintenance_total', 'VACUUM (ANALYZE) and ANALYZE runs by the scheduler leader.', ['table', 'action', 'outcome']),
    seconds: histogram('aijob_db_maintenance_duration_seconds', 'Time of each maintenance run by the leader.', ['table', 'action'],
      [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300]),
    dead: gauge('aijob_db_dead_rows', 'Dead rows in each platform table at the last maintenance check.', ['table']),
  };

  constructor(private readonly sql: Sql, private readonly log: Logger, private readonly o: TableMaintenanceOptions) {}

  /** Checks every `intervalMs` while `leading()` says this replica leads. */
  start(leading: () => boolean): void {
    if (this.o.mode === 'off' || this.o.intervalMs <= 0) return;
    this.timer = setInterval(() => {
      if (!leading() || this.running) return;
      this.running = this.check().then(() => undefined, (err: unknown) => {
        this.log.warn({ err: errorMessage(err) }, 'table maintenance check failed');
      }).finally(() => { this.running = undefined; });
    }, this.o.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    this.current?.cancel();
    await this.running;
  }

  /** One check: vacuums or analyzes the tables that need it; returns what it did. */
  async check(): Promise<{ table: string; action: Action }[]> {
    const tables = await tableStats(this.sql);
    const done: { table: string; action: Action }[] = [];
    for (const t of tables) {
      this.metrics.dead.set({ table: t.table }, t.dead);
      const action = this.due(t);
      if (action && !this.stopping) {
        await this.run(t, action);
        done.push({ table: t.table, action });
      }
    }
    return done;
  }

  private due(t: TableStats): Action | undefined {
    const past = (n: number, ratio: number) => n >= this.o.minDeadRows && n >= ratio * t.live;
    if (this.o.mode === 'always' || !t.autovacuum) {
      if (past(t.dead, this.o.deadRatio)) return 'vacuum';
      // Statistics for the planner (autoanalyze is off with autovacuum).
      if (past(t.modified, this.o.deadRatio)) return 'analyze';
      return undefined;
    }
    // autovacuum is on: step in only where it is falling behind.
    return past(t.dead, Math.max(1, this.o.deadRatio)) ? 'vacuum' : undefined;
  }

  private async run(t: TableStats, action: Action): Promise<void> {
    const started = performance.now();
    try {
      const query = maintainTable(this.sql, t.table, action);
      this.current = query;
      await query;
      const seconds = (performance.now() - started) / 1000;
      this.metrics.runs.inc({ table: t.table, action, outcome: 'ok' });
      this.metrics.seconds.observe({ table: t.table, action }, seconds);
      this.log.info({ table: t.table, action, dead_rows: t.dead, live_rows: t.live, modified_rows: t.modified,
        ms: Math.round(seconds * 1000) }, 'table maintained');
    } catch (err) {
      if (this.stopping) {
        this.log.info({ table: t.table, action }, 'table maintenance cancelled at shutdown');
        return;
      }
      this.metrics.runs.inc({ table: t.table, action, outcome: 'error' });
      this.log.warn({ table: t.table, action, err: errorMessage(err) }, 'table maintenance failed');
    } finally {
      this.current = undefined;
    }
  }
}
