// The public contracts: messages, enums, gRPC service definitions and clients generated
// from proto/ by `npm run proto`, plus the descriptor set used for server reflection.
export * from './gen/aijob/v1/job.js';
export * from './gen/aijob/v1/auth_service.js';
export * from './gen/aijob/v1/job_service.js';
export * from './gen/aijob/v1/queue_service.js';
export * from './gen/aijob/v1/worker_service.js';
export * from './gen/aijob/v1/worker_gateway_service.js';
export * from './gen/aijob/v1/events.js';
export { Struct, Value, ListValue } from './gen/google/protobuf/struct.js';
export { Duration } from './gen/google/protobuf/duration.js';
export { Timestamp } from './gen/google/protobuf/timestamp.js';
export { Any } from './gen/google/protobuf/any.js';
export { Status as RpcStatus } from './gen/google/rpc/status.js';
export { RetryInfo, BadRequest, BadRequest_FieldViolation, ErrorInfo } from './gen/google/rpc/error_details.js';
// Every generated file declares these; name one to settle the ambiguity.
export { type MessageFns, type DeepPartial, protobufPackage, protobufFileName } from './gen/aijob/v1/job.js';
export * from './descriptors.js';
export * from './durations.js';
