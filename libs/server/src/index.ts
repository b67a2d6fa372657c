// The process-wide tracing setup is the separate entry `@aijob/server/telemetry`: it must
// be loaded before @grpc/grpc-js, which this barrel loads.
export * from './authorize.js';
export * from './grpc-server.js';
export * from './grpc-status.js';
export * from './lifecycle.js';
export * from './ops-server.js';
