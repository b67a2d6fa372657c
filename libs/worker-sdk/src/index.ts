export { Worker, type WorkerOptions } from './worker.js';
export { NonRetryableError, RetryableError, failureOf, type JobFailure } from './errors.js';
export { AbortReason, type Handler, type JobContext, type JobInfo, type UsageReport } from './types.js';
