import { delay } from '@aijob/platform';

/**
 * Requests- and tokens-per-minute limits of one provider, within this worker process:
 * a call waits (abortably) until it fits in the last 60 seconds, rather than failing.
 */
export class MinuteLimiter {
  private calls: { at: number; tokens: number }[] = [];

  constructor(private readonly rpm: number, private readonly tpm: number, private readonly now: () => number = Date.now) {}

  /** Waits until a call of `tokens` fits; returns a handle to correct its tokens later. */
  async acquire(tokens: number, signal: AbortSignal): Promise<{ settle: (actual: number) => void }> {
    for (;;) {
      const wait = this.waitMs(tokens);
      if (wait <= 0) break;
      await delay(wait, signal);
    }
    const entry = { at: this.now(), tokens };
    this.calls.push(entry);
    return { settle: (actual) => { entry.tokens = actual; } };
  }

  /** How long until a call of `tokens` fits (0: now). */
  waitMs(tokens: number): number {
    const now = this.now();
    this.calls = this.calls.filter((c) => now - c.at < 60_000);
    let wait = 0;
    if (this.rpm > 0 && this.calls.length >= this.rpm) {
      wait = Math.max(wait, this.calls[this.calls.length - this.rpm]!.at + 60_000 - now);
    }
    if (this.tpm > 0) {
      // A single call larger than the whole budget waits for an empty window, then goes.
      let used = this.calls.reduce((n, c) => n + c.tokens, 0);
      for (let i = 0; i < this.calls.length && used + tokens > this.tpm && used > 0; i++) {
        used -= this.calls[i]!.tokens;
        wait = Math.max(wait, this.calls[i]!.at + 60_000 - now);
      }
    }
    return Math.max(0, wait);
  }
}
