export * from './api-keys.js';
export * from './audit-log.js';
export * from './leases.js';
export * from './queues.js';
export * from './rate-windows.js';
export * from './signing-keys.js';
export * from './table-stats.js';
export * from './workspaces.js';
