import { delay } from '@aijob/core';
import { NonRetryableError, RetryableError, type Handler } from '@aijob/worker';

/** `echo`: the output is the input. */
export const echo: Handler = async (job) => job.input;

/** `sleep`: waits `{"ms": N}` (at most 24 h), giving up at once when aborted. */
export const sleep: Handler = async (job, ctx) => {
  const ms = Number(job.input['ms'] ?? 0);
  if (!Number.isFinite(ms) || ms < 0 || ms > 86_400_000) {
    throw new NonRetryableError('INVALID_INPUT', 'input.ms must be a number of milliseconds between 0 and 86400000');
  }
  await delay(ms, ctx.signal);
  return { slept_ms: ms };
};

/**
 * `fail`: fails with `{"code": "...", "retryable": bool, "message": "..."}` (for
 * diagnostics and tests). With `"only_rank": N` only gang member N fails (the others
 * succeed), and with `"attempts": N` only the first N attempts fail.
 */
export const fail: Handler = async (job, ctx) => {
  const onlyRank = job.input['only_rank'];
  if (onlyRank !== undefined && String(onlyRank) !== job.labels['aijob.gang_rank']) return { passed: true };
  const attempts = job.input['attempts'];
  if (typeof attempts === 'number' && ctx.attempt > attempts) return { passed: true, attempt: ctx.attempt };
  const code = typeof job.input['code'] === 'string' && job.input['code'] ? job.input['code'] : 'REQUESTED_FAILURE';
  const message = typeof job.input['message'] === 'string' ? job.input['message'] : 'failed on request';
  if (job.input['retryable'] === true) throw new RetryableError(code, message);
  throw new NonRetryableError(code, message);
};
