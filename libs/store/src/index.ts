export * from './client.js';
export * from './migrate.js';
export * from './locks.js';
export * from './schema/index.js';
export * from './repositories/index.js';
export * from './audit-writer.js';
export * from './audit-denied.js';
export * from './job-transitions.js';
