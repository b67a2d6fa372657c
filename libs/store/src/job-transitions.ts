/**
 * The one owner of job state: every change of jobs.state is a named transition here,
 * guarded by a WHERE that lets it apply only from its source states (taken from the
 * table in jobs/state-machine.ts) and, where marked, only for the job's current attempt
 * or under the scheduler's lease. Each returns what it changed. Batched transitions are
 * one statement for the whole batch (group commit): the hot path.
 *
 * The main path (every edge is in the list below, which is the whole diagram):
 *
 *   (new)
 *     │ submit
 *     ▼
 *   QUEUED ◄──────────────────── retryFromFailed, retryDeadLetter ───┐
 *     │ dispatch                                                     │
 *     ▼                                                              │
 *   DISPATCHED ◄───── dispatch ───── RETRY_WAIT                      │
 *     │      ▲                           ▲                           │
 *     │start │handBack                   │ scheduleRetry             │
 *     ▼      │                           │ (retryable, attempts left)│
 *   RUNNING ─────────────────────────────┘                           │
 *     │ succeed, fail                                                │
 *     ▼                                                              │
 *   SUCCEEDED   FAILED ──────────────────────────────────────────────┘
 *
 *   Off it: cancel (any unfinished state) and clearQueue (QUEUED, RETRY_WAIT) → CANCELLED;
 *   abort → CANCELLED and succeed/fail/scheduleRetry also straight from DISPATCHED (a
 *   quick attempt reports only its end); a gang member's failure moves its siblings of
 *   the same attempt (gangRetry, even from SUCCEEDED; gangFail); lost dispatch messages
 *   requeue DISPATCHED → QUEUED; a gang that cannot be placed fails while waiting.
 *
 * Exact edges (test/unit/job-transitions.test.ts checks this list against the table
 * and the table against what the statements do):
 *
 *   from         to           transition            file
 *   (new)        QUEUED       submit                jobs/submit.ts
 *   QUEUED       DISPATCHED   dispatch              jobs/scheduler-transitions.ts
 *   RETRY_WAIT   DISPATCHED   dispatch
 *   DISPATCHED   RUNNING      start                 jobs/attempt-reports.ts
 *   RUNNING      RUNNING      report
 *   RUNNING      DISPATCHED   handBack
 *   DISPATCHED   SUCCEEDED    succeed
 *   RUNNING      SUCCEEDED    succeed
 *   DISPATCHED   FAILED       fail
 *   RUNNING      FAILED       fail
 *   DISPATCHED   RETRY_WAIT   scheduleRetry
 *   RUNNING      RETRY_WAIT   scheduleRetry
 *   DISPATCHED   CANCELLED    abort
 *   RUNNING      CANCELLED    abort
 *   QUEUED       RETRY_WAIT   gangRetry
 *   DISPATCHED   RETRY_WAIT   gangRetry
 *   RUNNING      RETRY_WAIT   gangRetry
 *   SUCCEEDED    RETRY_WAIT   gangRetry
 *   QUEUED       FAILED       gangFail
 *   DISPATCHED   FAILED       gangFail
 *   RUNNING      FAILED       gangFail
 *   QUEUED       CANCELLED    cancel                jobs/operator-transitions.ts
 *   DISPATCHED   CANCELLED    cancel
 *   RUNNING      CANCELLED    cancel
 *   RETRY_WAIT   CANCELLED    cancel
 *   QUEUED       CANCELLED    clearQueue
 *   RETRY_WAIT   CANCELLED    clearQueue
 *   FAILED       QUEUED       retryFromFailed
 *   CANCELLED    QUEUED       retryFromFailed
 *   FAILED       QUEUED       retryDeadLetter       jobs/dead-letter-queries.ts
 *   SUCCEEDED    QUEUED       reopenGangMember      (with retryFromFailed, retryDeadLetter)
 *   FAILED       QUEUED       reopenGangMember
 *   CANCELLED    QUEUED       reopenGangMember
 *   DISPATCHED   QUEUED       requeueLostDispatch   jobs/scheduler-transitions.ts
 *   DISPATCHED   QUEUED       requeueAfterStreamLoss
 *   QUEUED       FAILED       failUnplaceableGang
 *   RETRY_WAIT   FAILED       failUnplaceableGang
 *   FAILED       (deleted)    purgeDeadLetter       jobs/dead-letter-queries.ts
 *
 * Fencing: the attempt reports (start ... abort) and gangRetry/gangFail apply only at
 * the job's current attempt, requeueLostDispatch only at the attempt found lost;
 * dispatch only while the scheduler holds its lease at its epoch (and it starts the
 * next attempt); cancel, retryFromFailed and retryDeadLetter lock the rows they check.
 * Timeouts and lost workers are not transitions of their own: the scheduler's
 * reconciler reports them as retryable FAILED attempts (TIMEOUT, WORKER_LOST), applied
 * as fail or scheduleRetry. RETRY_WAIT waits for next_attempt_at, then is dispatched.
 */
export * from './jobs/state-machine.js';
export * from './jobs/job-row.js';
export * from './jobs/history.js';
export * from './jobs/submit.js';
export * from './jobs/attempt-reports.js';
export * from './jobs/operator-transitions.js';
export * from './jobs/scheduler-transitions.js';
export * from './jobs/dead-letter-queries.js';
export * from './jobs/job-reads.js';
export * from './jobs/usage-queries.js';
