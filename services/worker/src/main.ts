// Entry point: tracing first (it must hook gRPC before gRPC loads), then the service.
import { startTelemetry } from '@aijob/server/telemetry';

await startTelemetry('worker');
await import('./app.js');
