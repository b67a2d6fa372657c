export * from './topology.js';
export * from './connection.js';
export * from './setup.js';
export * from './codec.js';
export * from './batch-consumer.js';
export * from './headers.js';
export * from './event-publisher.js';
