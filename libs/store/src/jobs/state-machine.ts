import type { JobStateName } from '../schema/enums.js';

/** One named transition: the states it may start from, the state it ends in, what fences it. */
export interface TransitionRule {
  /** Source states; empty for `submit` (no row yet). */
  readonly from: readonly JobStateName[];
  /** Target state; null for `purgeDeadLetter` (the row is deleted). */
  readonly to: JobStateName | null;
  /**
   * What else the statement requires: `attempt` (the job's current attempt), `lease`
   * (the scheduler's leader lease at its epoch), `lock` (the job row locked and its state
   * checked first, in one transaction), or nothing more than the source state.
   */
  readonly fence: 'attempt' | 'lease' | 'lock' | 'none';
}

/**
 * Every change of jobs.state, by name. The statements in ./*.ts take their `WHERE state
 * IN (...)` guard from here (`fromStates`), the header of job-transitions.ts lists the
 * same edges, and test/unit/job-transitions.test.ts checks all three agree.
 */
export const jobTransitions = {
  submit: { from: [], to: 'QUEUED', fence: 'none' },
  dispatch: { from: ['QUEUED', 'RETRY_WAIT'], to: 'DISPATCHED', fence: 'lease' },
  start: { from: ['DISPATCHED'], to: 'RUNNING', fence: 'attempt' },
  report: { from: ['RUNNING'], to: 'RUNNING', fence: 'attempt' },
  handBack: { from: ['RUNNING'], to: 'DISPATCHED', fence: 'attempt' },
  succeed: { from: ['DISPATCHED', 'RUNNING'], to: 'SUCCEEDED', fence: 'attempt' },
  fail: { from: ['DISPATCHED', 'RUNNING'], to: 'FAILED', fence: 'attempt' },
  scheduleRetry: { from: ['DISPATCHED', 'RUNNING'], to: 'RETRY_WAIT', fence: 'attempt' },
  abort: { from: ['DISPATCHED', 'RUNNING'], to: 'CANCELLED', fence: 'attempt' },
  gangRetry: { from: ['QUEUED', 'DISPATCHED', 'RUNNING', 'SUCCEEDED'], to: 'RETRY_WAIT', fence: 'attempt' },
  gangFail: { from: ['QUEUED', 'DISPATCHED', 'RUNNING'], to: 'FAILED', fence: 'attempt' },
  cancel: { from: ['QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT'], to: 'CANCELLED', fence: 'lock' },
  clearQueue: { from: ['QUEUED', 'RETRY_WAIT'], to: 'CANCELLED', fence: 'none' },
  retryFromFailed: { from: ['FAILED', 'CANCELLED'], to: 'QUEUED', fence: 'lock' },
  retryDeadLetter: { from: ['FAILED'], to: 'QUEUED', fence: 'lock' },
  reopenGangMember: { from: ['SUCCEEDED', 'FAILED', 'CANCELLED'], to: 'QUEUED', fence: 'lock' },
  requeueLostDispatch: { from: ['DISPATCHED'], to: 'QUEUED', fence: 'attempt' },
  requeueAfterStreamLoss: { from: ['DISPATCHED'], to: 'QUEUED', fence: 'none' },
  failUnplaceableGang: { from: ['QUEUED', 'RETRY_WAIT'], to: 'FAILED', fence: 'none' },
  purgeDeadLetter: { from: ['FAILED'], to: null, fence: 'none' },
} as const satisfies Record<string, TransitionRule>;

export type JobTransition = keyof typeof jobTransitions;

/** One edge of the state diagram; `from` null is a new row, `to` null a deleted one. */
export interface JobEdge {
  from: JobStateName | null;
  to: JobStateName | null;
  transition: JobTransition;
}

/** Every edge the transitions permit, in table order. */
export function jobEdges(): JobEdge[] {
  return Object.entries(jobTransitions).flatMap(([transition, r]: [string, TransitionRule]) =>
    (r.from.length ? r.from : [null]).map((from) => ({ from, to: r.to, transition: transition as JobTransition })));
}

/** Whether `t` may start from `state`. */
export function allows(t: JobTransition, state: JobStateName): boolean {
  return (jobTransitions[t].from as readonly JobStateName[]).includes(state);
}

/** A list of states as SQL literals (`'QUEUED', 'RETRY_WAIT'`), for `IN (...)` guards. */
export function stateList(states: readonly JobStateName[]): string {
  return states.map((s) => `'${s}'`).join(', ');
}

/** The source states of `t` as SQL literals, for its `WHERE state IN (...)` guard. */
export function fromStates(t: JobTransition): string {
  return stateList(jobTransitions[t].from);
}
