export { Worker } from './worker.js';
export { SchedulerLink } from './scheduler-link.js';
export { NonRetryableError, RetryableError, failureOf, type JobFailure } from './errors.js';
export { AbortReason, type Handler, type JobContext, type JobInfo, type UsageReport, type WorkerOptions } from './types.js';
