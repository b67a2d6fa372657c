export { AijobClient, isTerminal, stateName, type AijobClientOptions, type CallOptions, type ListOptions, type SubmitOptions } from './client.js';
export * from './errors.js';
export { JobState, type Job, type Queue } from '@aijob/contracts';
