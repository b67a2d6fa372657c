export * from './enums.js';
export * from './workspaces.js';
export * from './api-keys.js';
export * from './signing-keys.js';
export * from './jobs.js';
export * from './control.js';
export * from './audit.js';
