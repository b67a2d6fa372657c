import { InvalidArgumentError, type FieldViolation } from '@aijob/core';
import type { WorkerHello } from '@aijob/contracts';

const NAME = /^[\w.:@-]{1,64}$/;
const QUEUE = /^[\w.-]{1,64}$/;
const TYPE = /^[\w.:-]{1,128}$/;

/** A checked hello: what a session serves. */
export interface SessionSpec {
  name: string;
  queues: string[];
  jobTypes: string[];
  slots: number;
  labels: Record<string, string>;
  version: string;
}

/** Validates the first message of a session; INVALID_ARGUMENT names every field at fault. */
export function parseHello(h: WorkerHello | undefined): SessionSpec {
  if (!h) throw InvalidArgumentError.field('hello', 'the first message of a session must be a WorkerHello');
  const v: FieldViolation[] = [];
  if (!NAME.test(h.name))
    v.push({ field: 'hello.name', description: 'must be 1-64 characters of letters, digits, and ._:@-' });
  if (h.queues.length < 1 || h.queues.length > 32)
    v.push({ field: 'hello.queues', description: 'must name 1-32 queues' });
  for (const q of h.queues)
    if (!QUEUE.test(q)) {
      v.push({
        field: 'hello.queues',
        description: `"${q.slice(0, 80)}" is not a queue name (1-64 of letters, digits, _ - .)`,
      });
      break;
    }
  if (h.jobTypes.length < 1 || h.jobTypes.length > 256)
    v.push({ field: 'hello.job_types', description: 'must name 1-256 job types' });
  for (const t of h.jobTypes)
    if (!TYPE.test(t)) {
      v.push({ field: 'hello.job_types', description: `"${t.slice(0, 80)}" is not a job type` });
      break;
    }
  if (!Number.isInteger(h.slots) || h.slots < 1 || h.slots > 1000)
    v.push({ field: 'hello.slots', description: 'must be between 1 and 1000' });
  const labels = Object.entries(h.labels);
  if (labels.length > 32 || labels.some(([k, val]) => k.length > 64 || val.length > 256)) {
    v.push({ field: 'hello.labels', description: 'at most 32 pairs, keys up to 64 and values up to 256 characters' });
  }
  if (h.version.length > 64) v.push({ field: 'hello.version', description: 'at most 64 characters' });
  if (v.length) throw new InvalidArgumentError(v);
  return {
    name: h.name,
    queues: [...new Set(h.queues)],
    jobTypes: [...new Set(h.jobTypes)],
    slots: h.slots,
    labels: h.labels,
    version: h.version || 'unknown',
  };
}

const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

/** The JSON object text of a worker's output, or the reason it is not acceptable. */
export function outputJsonOf(raw: Uint8Array): { json: string } | { invalid: string } {
  if (raw.length === 0) return { json: '{}' };
  if (raw.length > MAX_OUTPUT_BYTES) return { invalid: `output exceeds ${MAX_OUTPUT_BYTES} bytes` };
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { invalid: `output is not JSON: ${(err as Error).message}` };
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return { json: text };
  const wrapped = JSON.stringify({ result: value });
  return Buffer.byteLength(wrapped) > MAX_OUTPUT_BYTES
    ? { invalid: `output exceeds ${MAX_OUTPUT_BYTES} bytes` }
    : { json: wrapped };
}
