import type { Duration } from './gen/google/protobuf/duration.js';

/** Milliseconds of a google.protobuf.Duration (nanos rounded down to whole ms). */
export function durationToMs(d: Duration): number {
  return d.seconds * 1000 + Math.trunc(d.nanos / 1e6);
}

/** A google.protobuf.Duration of `ms` milliseconds. */
export function msToDuration(ms: number): Duration {
  const seconds = Math.trunc(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
