import { UsageError } from './errors.js';

/** Milliseconds of "1500ms", "30s", "5m", "2h", "7d" (or plain milliseconds). */
export function duration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--${flag}: "${text}" is not a duration like 30s, 5m, 2h, 7d`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms']!;
  return Math.round(Number(m[1]) * unit);
}

/** A time: ISO 8601, or relative to now: "+10m" (ahead) or "24h" / "-24h" (ago). */
export function time(text: string, flag: string): Date {
  const rel = /^([+-]?)(\d+(?:\.\d+)?(?:ms|s|m|h|d))$/.exec(text.trim());
  if (rel) return new Date(Date.now() + (rel[1] === '+' ? 1 : -1) * duration(rel[2]!, flag));
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${flag}: "${text}" is not a time (ISO 8601, or +10m / 24h)`);
  return d;
}

export function integer(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^-?\d+$/.test(text)) throw new UsageError(`--${flag}: "${text}" is not a whole number`);
  return Number(text);
}

export function number(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n)) throw new UsageError(`--${flag}: "${text}" is not a number`);
  return n;
}

export function json(text: string, flag: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--${flag}: not valid JSON (${(err as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new UsageError(`--${flag}: must be a JSON object`);
  return v as Record<string, unknown>;
}

/** `k=v` pairs into an object; values are parsed as JSON when they can be. */
export function pairs(items: string[], flag: string, parseValues = false): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of items) {
    const i = item.indexOf('=');
    if (i <= 0) throw new UsageError(`--${flag}: "${item}" is not key=value`);
    const k = item.slice(0, i);
    const v = item.slice(i + 1);
    out[k] = parseValues ? (() => { try { return JSON.parse(v) as unknown; } catch { return v; } })() : v;
  }
  return out;
}

export function required(args: string[], i: number, what: string): string {
  const v = args[i];
  if (!v) throw new UsageError(`missing ${what}`);
  return v;
}
