export * from './client-calls.js';
export * from './metrics.js';
export * from './spans.js';
export * from './trace-context.js';
