/** Scopes an API key or token can carry. `admin` satisfies every scope, in any workspace. */
export const scopes = [
  'jobs:read', 'jobs:write', 'queues:admin', 'keys:admin', 'usage:read', 'audit:read', 'workers:run', 'admin',
] as const;
export type Scope = (typeof scopes)[number];

/**
 * Scopes that act on the whole platform rather than one workspace: `queues:admin`
 * changes the shared queues (settings, pause, resume) for every tenant; `workers:run`
 * (a worker over the gateway) receives every workspace's jobs on its queues. Only an
 * `admin` principal may grant them; a workspace's `keys:admin` cannot mint them.
 */
export const operatorScopes: readonly Scope[] = ['queues:admin', 'workers:run', 'admin'];

/**
 * What each RPC requires: a scope; `public` (no credential: token exchange); or
 * `internal` (service-to-service: mTLS in the mesh, plus INTERNAL_TOKEN when set).
 * Every RPC of every aijob service is listed; a test fails when one is missing.
 */
export const rpcAccess: Record<string, Scope | 'public' | 'internal'> = {
  'aijob.v1.AuthService/IssueToken': 'public',
  'aijob.v1.AuthService/Authenticate': 'internal',
  'aijob.v1.AuthService/CreateWorkspace': 'admin',
  'aijob.v1.AuthService/GetWorkspace': 'jobs:read',
  'aijob.v1.AuthService/ListWorkspaces': 'admin',
  'aijob.v1.AuthService/UpdateWorkspacePolicy': 'admin',
  'aijob.v1.AuthService/CreateApiKey': 'keys:admin',
  'aijob.v1.AuthService/ListApiKeys': 'keys:admin',
  'aijob.v1.AuthService/RevokeApiKey': 'keys:admin',
  'aijob.v1.AuthService/RotateSigningKey': 'admin',

  'aijob.v1.JobService/SubmitJob': 'jobs:write',
  'aijob.v1.JobService/SubmitJobs': 'jobs:write',
  'aijob.v1.JobService/GetJob': 'jobs:read',
  'aijob.v1.JobService/ListJobs': 'jobs:read',
  'aijob.v1.JobService/WatchJob': 'jobs:read',
  'aijob.v1.JobService/CancelJob': 'jobs:write',
  'aijob.v1.JobService/RetryJob': 'jobs:write',
  'aijob.v1.JobService/ListAuditEvents': 'audit:read',
  'aijob.v1.JobService/ListDeadLetters': 'jobs:read',
  'aijob.v1.JobService/GetDeadLetterStats': 'jobs:read',
  'aijob.v1.JobService/RetryDeadLetters': 'jobs:write',
  'aijob.v1.JobService/PurgeDeadLetters': 'jobs:write',
  'aijob.v1.JobService/GetUsageReport': 'usage:read',

  'aijob.v1.QueueService/PutQueue': 'queues:admin',
  'aijob.v1.QueueService/GetQueue': 'jobs:read',
  'aijob.v1.QueueService/ListQueues': 'jobs:read',
  'aijob.v1.QueueService/PauseQueue': 'queues:admin',
  'aijob.v1.QueueService/ResumeQueue': 'queues:admin',
  'aijob.v1.QueueService/ClearQueue': 'queues:admin',
  'aijob.v1.QueueService/GetClusterStats': 'jobs:read',

  'aijob.v1.WorkerService/Heartbeat': 'internal',
  'aijob.v1.WorkerService/ConfirmDispatch': 'internal',

  'aijob.v1.WorkerGatewayService/Connect': 'workers:run',
};

/** RPCs that change something: each call, allowed or refused, leaves an audit row. */
export const mutatingRpcs: ReadonlySet<string> = new Set([
  'aijob.v1.AuthService/CreateWorkspace',
  'aijob.v1.AuthService/UpdateWorkspacePolicy',
  'aijob.v1.AuthService/CreateApiKey',
  'aijob.v1.AuthService/RevokeApiKey',
  'aijob.v1.AuthService/RotateSigningKey',
  'aijob.v1.JobService/SubmitJob',
  'aijob.v1.JobService/SubmitJobs',
  'aijob.v1.JobService/CancelJob',
  'aijob.v1.JobService/RetryJob',
  'aijob.v1.JobService/RetryDeadLetters',
  'aijob.v1.JobService/PurgeDeadLetters',
  'aijob.v1.QueueService/PutQueue',
  'aijob.v1.QueueService/PauseQueue',
  'aijob.v1.QueueService/ResumeQueue',
  'aijob.v1.QueueService/ClearQueue',
]);

/** Whether `granted` scopes satisfy `required`. */
export function hasScope(granted: readonly string[], required: Scope): boolean {
  return granted.includes(required) || granted.includes('admin');
}
