import {
  cancelJob, getJob, getJobs, insertAuditIn, jobOwnerElsewhere, listAuditLog, listJobs, retryJob, usageOfJob,
  type AuditLogQuery, type AuditLogRow, type AuditRecord, type JobListQuery, type JobRow, type Store, type Tx,
} from '@aijob/store';

/** An audit row of a job-service call (its trace and request always known). */
export type AuditEntry = AuditRecord & { traceId: string; requestId: string };

export type ListFilter = JobListQuery;

/** ListAuditEvents' request: a filter and a page. */
export type AuditQuery = Omit<AuditLogQuery, 'beforeId' | 'limit'> & { pageSize: number; pageToken: string };

/** Reads and single-job writes of the job record, always scoped to a workspace. */
export class JobRepository {
  constructor(private readonly store: Store) {}

  get(workspaceId: string, id: string): Promise<JobRow | undefined> {
    return getJob(this.store.sql, workspaceId, id);
  }

  /** Several jobs of one workspace by id (in no particular order). */
  getMany(workspaceId: string, ids: string[]): Promise<JobRow[]> {
    return getJobs(this.store.sql, workspaceId, ids);
  }

  list(f: ListFilter): Promise<JobRow[]> {
    return listJobs(this.store.sql, f);
  }

  /**
   * Cancels a job that has not finished, and with it every unfinished member of its
   * gang. Returns the job's row first, each with the state it left; nothing when the
   * job is missing (`exists: false`) or already finished (`previous` says how).
   */
  cancel(workspaceId: string, id: string, reason: string, audit: AuditEntry) {
    return cancelJob(this.store.sql, { workspaceId, id, reason, actor: audit.actor, audit: (tx) => this.audit(tx, audit) });
  }

  /**
   * Reopens a FAILED or CANCELLED job with a fresh set of attempts — and, for a gang,
   * every member, so the gang runs again as a whole. The job's row comes first.
   */
  retry(workspaceId: string, id: string, audit: AuditEntry) {
    return retryJob(this.store.sql, { workspaceId, id, actor: audit.actor, audit: (tx) => this.audit(tx, audit) });
  }

  usage(jobId: string) {
    return usageOfJob(this.store.sql, jobId);
  }

  /** The workspace a job belongs to when it is not `workspaceId`'s, or undefined. */
  ownerElsewhere(workspaceId: string, id: string): Promise<string | undefined> {
    return jobOwnerElsewhere(this.store.sql, workspaceId, id);
  }

  auditEvents(q: AuditLogQuery): Promise<AuditLogRow[]> {
    return listAuditLog(this.store.db, q);
  }

  async audit(tx: Tx | Store['sql'], e: AuditEntry): Promise<void> {
    await insertAuditIn(tx, e);
  }
}
