import { AijobApiError } from '@aijob/sdk';
import { status } from '@grpc/grpc-js';

/** Exit codes: documented in `aijob --help` and the README. */
export const exitCodes = {
  ok: 0,
  error: 1,
  usage: 2,
  notFound: 3,
  denied: 4,
  exhausted: 5,
  unavailable: 6,
  precondition: 7,
  jobFailed: 8,
} as const;

/** A mistake in the command line; printed with a hint to --help. */
export class UsageError extends Error {}

/** The exit code and message for anything a command threw. */
export function describe(err: unknown): { code: number; message: string } {
  if (err instanceof UsageError) return { code: exitCodes.usage, message: `${err.message}\n(see --help)` };
  if (err instanceof AijobApiError) {
    const detail = err.fieldViolations.length
      ? `\n${err.fieldViolations.map((v) => `  ${v.field}: ${v.description}`).join('\n')}`
      : err.retryDelayMs !== undefined ? ` (retry in ${Math.ceil(err.retryDelayMs / 1000)} s)` : '';
    const code = {
      [status.NOT_FOUND]: exitCodes.notFound, [status.UNAUTHENTICATED]: exitCodes.denied,
      [status.PERMISSION_DENIED]: exitCodes.denied, [status.RESOURCE_EXHAUSTED]: exitCodes.exhausted,
      [status.UNAVAILABLE]: exitCodes.unavailable, [status.DEADLINE_EXCEEDED]: exitCodes.unavailable,
      [status.FAILED_PRECONDITION]: exitCodes.precondition, [status.INVALID_ARGUMENT]: exitCodes.usage,
    }[err.code as number] ?? exitCodes.error;
    return { code, message: `${status[err.code] ?? err.code}: ${err.details}${detail}` };
  }
  return { code: exitCodes.error, message: err instanceof Error ? err.message : String(err) };
}
