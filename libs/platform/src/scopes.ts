/** Scopes an API key or token can carry. `admin` satisfies every scope, in any workspace. */
export const scopes = [
  'jobs:read', 'jobs:write', 'queues:admin', 'keys:admin', 'usage:read', 'audit:read', 'admin',
] as const;
export type Scope = (typeof scopes)[number];

/**
 * What each RPC requires: a scope; `public` (no credential: token exchange); or
 * `internal` (service-to-service: mTLS in the mesh, plus INTERNAL_TOKEN when set).
 * Every RPC of every aijob service is listed; a test fails when one is missing.
 */
export const rpcAccess: Record<string, Scope | 'public' | 'internal'> = {
  'aijob.v1.AuthService/IssueToken': 'public',
  'aijob.v1.AuthService/Authenticate': 'internal',

  'aijob.v1.JobService/SubmitJob': 'jobs:write',
  'aijob.v1.JobService/SubmitJobs': 'jobs:write',
  'aijob.v1.JobService/GetJob': 'jobs:read',
  'aijob.v1.JobService/ListJobs': 'jobs:read',
  'aijob.v1.JobService/WatchJob': 'jobs:read',
  'aijob.v1.JobService/CancelJob': 'jobs:write',
  'aijob.v1.JobService/RetryJob': 'jobs:write',

  'aijob.v1.QueueService/ListQueues': 'jobs:read',
  'aijob.v1.QueueService/GetClusterStats': 'jobs:read',

  'aijob.v1.WorkerService/Heartbeat': 'internal',
  'aijob.v1.WorkerService/ConfirmDispatch': 'internal',
};

/** Whether `granted` scopes satisfy `required`. */
export function hasScope(granted: readonly string[], required: Scope): boolean {
  return granted.includes(required) || granted.includes('admin');
}
