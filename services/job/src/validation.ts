import { durationToMs, type SubmitJobRequest } from '@aijob/contracts';
import { InvalidArgumentError, type FieldViolation } from '@aijob/core';

export const QUEUE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const TYPE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const LABEL_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
const MAX_LABELS = 32;
const MAX_TIMEOUT_MS = 86_400_000;
const MAX_GANG = 256;
const YEAR_MS = 366 * 86_400_000;

/** A submission that passed validation, with defaults applied. */
export interface ValidSubmission {
  queue: string;
  type: string;
  input: Record<string, unknown>;
  /** The input as JSON text: what is stored, and what its size limit applies to. */
  inputJson: string;
  priority: number;
  idempotencyKey: string | null;
  maxAttempts: number;
  timeoutMs: number;
  labels: Record<string, string>;
  runAt: Date | null;
  gangSize: number;
  retryBaseMs: number | null;
}

export interface SubmissionLimits {
  maxInputBytes: number;
  defaultMaxAttempts: number;
  defaultTimeoutMs: number;
  allowedTypes: readonly string[];
}

const hasNul = (s: string) => s.includes('\u0000');

/**
 * Checks every field of a SubmitJobRequest and reports all violations at once, each
 * naming its field (prefixed, e.g. `jobs[3].`, for batch entries).
 */
export function validateSubmission(req: SubmitJobRequest, limits: SubmissionLimits, prefix = ''): ValidSubmission {
  const v: FieldViolation[] = [];
  const bad = (field: string, description: string) => v.push({ field: prefix + field, description });

  const queue = req.queue === '' ? 'default' : req.queue;
  if (!QUEUE_PATTERN.test(queue)) bad('queue', 'must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter or digit');

  if (req.type === '') bad('type', 'required');
  else if (!TYPE_PATTERN.test(req.type)) bad('type', 'must be 1-128 characters of A-Z, a-z, 0-9, ., _, : and -');
  else if (!limits.allowedTypes.includes(req.type)) bad('type', `job type "${req.type}" is not allowed here`);

  let inputJson = '{}';
  if (req.input !== undefined) {
    inputJson = JSON.stringify(req.input);
    const size = Buffer.byteLength(inputJson);
    if (size > limits.maxInputBytes) bad('input', `is ${size} bytes; the limit is ${limits.maxInputBytes}`);
    else if (/(^|[^\\])(\\\\)*\\u0000/.test(inputJson)) bad('input', 'strings must not contain NUL characters');
  }

  if (!Number.isInteger(req.priority) || req.priority < -1000 || req.priority > 1000) bad('priority', 'must be between -1000 and 1000');

  if (req.idempotencyKey.length > 256) bad('idempotency_key', 'must be at most 256 characters');
  else if (hasNul(req.idempotencyKey)) bad('idempotency_key', 'must not contain NUL characters');

  let maxAttempts = limits.defaultMaxAttempts;
  if (req.maxAttempts !== 0) {
    if (req.maxAttempts < 1 || req.maxAttempts > 100) bad('max_attempts', 'must be between 1 and 100 (0 for the default)');
    else maxAttempts = req.maxAttempts;
  }

  let timeoutMs = limits.defaultTimeoutMs;
  if (req.timeout !== undefined) {
    const { seconds, nanos } = req.timeout;
    if (seconds < 0 || nanos < 0 || (seconds === 0 && nanos === 0)) bad('timeout', 'must be positive');
    else if (nanos > 999_999_999) bad('timeout', 'nanos must be below 1e9');
    else {
      timeoutMs = Math.max(1, durationToMs(req.timeout));
      if (timeoutMs > MAX_TIMEOUT_MS) bad('timeout', 'must be at most 24h');
    }
  }

  const entries = Object.entries(req.labels);
  if (entries.length > MAX_LABELS) bad('labels', `at most ${MAX_LABELS} labels`);
  for (const [k, val] of entries.slice(0, MAX_LABELS + 1)) {
    if (!LABEL_KEY_PATTERN.test(k)) bad(`labels[${JSON.stringify(k.slice(0, 64))}]`, 'key must be 1-63 characters of A-Z, a-z, 0-9, ., _, / and -');
    else if (val.length > 256 || hasNul(val)) bad(`labels[${k}]`, 'value must be at most 256 characters without NUL');
  }

  let runAt: Date | null = null;
  if (req.runAt !== undefined) {
    const t = req.runAt.getTime();
    if (!Number.isFinite(t)) bad('run_at', 'is not a valid time');
    else if (t > Date.now() + YEAR_MS) bad('run_at', 'must be within a year from now');
    else runAt = req.runAt;
  }

  if (req.gangSize < 0 || req.gangSize > MAX_GANG) bad('gang_size', `must be between 0 and ${MAX_GANG}`);

  let retryBaseMs: number | null = null;
  if (req.retryBaseDelay !== undefined) {
    const { seconds, nanos } = req.retryBaseDelay;
    const ms = durationToMs(req.retryBaseDelay);
    if (seconds < 0 || nanos < 0 || nanos > 999_999_999 || ms < 1 || ms > 3_600_000) bad('retry_base_delay', 'must be between 1 ms and 1 h');
    else retryBaseMs = ms;
  }

  if (v.length > 0) throw new InvalidArgumentError(v);
  return {
    queue, type: req.type, input: req.input ?? {}, inputJson, priority: req.priority,
    idempotencyKey: req.idempotencyKey === '' ? null : req.idempotencyKey,
    maxAttempts, timeoutMs, labels: req.labels, runAt, gangSize: req.gangSize > 1 ? req.gangSize : 0, retryBaseMs,
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A job id from a request, or INVALID_ARGUMENT naming the field. */
export function parseJobId(id: string, field = 'job_id'): string {
  if (!UUID.test(id)) throw InvalidArgumentError.field(field, 'must be a job id (UUID)');
  return id.toLowerCase();
}
