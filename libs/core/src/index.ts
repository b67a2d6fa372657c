export * from './batcher.js';
export * from './config.js';
export * from './delay.js';
export * from './errors.js';
export * from './log.js';
export * from './scopes.js';
