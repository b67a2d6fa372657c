export { AijobClient, isTerminal, stateName, type AijobClientOptions, type CallOptions, type ListOptions, type SubmitOptions, type Submitted } from './client.js';
export { QueuesApi } from './queues.js';
export { DeadLettersApi, UsageApi, type DeadLetterQuery, type UsageDimension } from './dead-letters.js';
export * from './errors.js';
export { AdminApi, type AuditQuery, type PolicyUpdate } from './admin.js';
export { JobState, type ApiKey, type AuditEvent, type Job, type Queue, type Workspace, type WorkspacePolicy } from '@aijob/contracts';
