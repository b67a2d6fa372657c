import { trace } from '@opentelemetry/api';
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** Keys whose values never reach a log line, wherever they appear in the first levels. */
const secretKeys = [
  'authorization', 'apiKey', 'api_key', 'token', 'secret', 'password', 'providerKey',
  'privateKey', 'private_key', 'key',
];
const redactPaths = secretKeys.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

/**
 * One JSON line per event: time, level, service, and the active trace and span ids;
 * callers add job_id and request_id as bindings. Secrets are redacted by key name.
 */
export function createLogger(service: string, level: LevelWithSilent = 'info'): Logger {
  return pino({
    level,
    base: { service },
    messageKey: 'msg',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: redactPaths, censor: '[redacted]' },
    mixin() {
      const ctx = trace.getActiveSpan()?.spanContext();
      return ctx && ctx.traceFlags !== undefined && ctx.traceId !== '00000000000000000000000000000000'
        ? { trace_id: ctx.traceId, span_id: ctx.spanId }
        : {};
    },
  });
}

/** The message of an unknown thrown value, without its stack. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
