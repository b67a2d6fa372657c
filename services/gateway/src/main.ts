// Entry point: tracing first (it must hook gRPC before gRPC loads), then the service.
import { startTelemetry } from '@aijob/server/telemetry';

await startTelemetry('gateway');
await import('./app.js');
