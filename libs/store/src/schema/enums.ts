/** Job states as stored (text column), in the order of the state machine. */
export const jobStates = [
  'QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT', 'SUCCEEDED', 'FAILED', 'CANCELLED',
] as const;
export type JobStateName = (typeof jobStates)[number];

export const terminalStates: readonly JobStateName[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];
export const activeStates: readonly JobStateName[] = ['QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT'];

export const auditOutcomes = ['allowed', 'denied', 'failed'] as const;
export type AuditOutcome = (typeof auditOutcomes)[number];
