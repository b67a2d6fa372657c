import { ResourceExhaustedError } from '@aijob/core';
import { giveBackRateAllowance, pruneRateWindows, reserveRateAllowance, type Store } from '@aijob/store';

const WINDOW_MS = 60_000;
/** The window is counted in slots of this length (a tenth of it). */
export const SLOT_MS = 6_000;
const SLOTS = WINDOW_MS / SLOT_MS;

interface Allowance {
  /** Start of the slot the allowance was reserved in; it is only spent within that slot. */
  slot: number;
  left: number;
  /** How many to reserve next: doubles while a slot runs dry, halves when one ends with some left. */
  chunk: number;
  /** Refused until then without asking Postgres (unless the limit changes). */
  refusedUntil: number;
  limit: number;
  pending?: Promise<void>;
}

/**
 * Per-workspace request limits over a sliding 60-second window, shared by every
 * job-service replica through Postgres. Requests are counted per 6-second slot
 * (rate_windows rows); a replica reserves chunks of allowance in the current slot only
 * while the slot and the ten before it (66 s) hold fewer than the limit, so any 60
 * seconds, across minute edges too, admit at most the limit. An allowance is spent only
 * in the slot it was reserved in, and what is left when the slot ends is given back.
 * Chunks start at one request and grow to a twentieth of the limit, so a busy workspace
 * costs a few reservations a slot and no per-request round trip.
 */
export class RateLimiter {
  private readonly allowances = new Map<string, Allowance>();
  private sweptSlot = 0;

  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {}

  /** Admits one request of `workspaceId` under `perMinute` (0: unlimited) or throws RESOURCE_EXHAUSTED. */
  async take(workspaceId: string, perMinute: number): Promise<void> {
    if (perMinute <= 0) return;
    let a = this.allowances.get(workspaceId);
    if (!a) this.allowances.set(workspaceId, (a = { slot: 0, left: 0, chunk: 1, refusedUntil: 0, limit: perMinute }));
    if (a.limit !== perMinute) {
      a.limit = perMinute;
      a.refusedUntil = 0;
    }
    for (;;) {
      const now = this.now();
      const slot = Math.floor(now / SLOT_MS) * SLOT_MS;
      this.sweep(slot, workspaceId);
      if (a.slot !== slot) this.release(workspaceId, a, slot);
      if (a.left > 0) break;
      if (now < a.refusedUntil) {
        throw new ResourceExhaustedError(`workspace ${workspaceId} exceeded ${perMinute} requests per minute`,
          a.refusedUntil - now, 'RATE_LIMITED');
      }
      a.pending ??= this.reserve(workspaceId, slot, perMinute, a).finally(() => { a!.pending = undefined; });
      await a.pending;
    }
    a.left--;
  }

  /** Moves an allowance to a new slot, giving back what is left of the old one. */
  private release(workspaceId: string, a: Allowance, slot: number): void {
    if (a.left > 0) {
      a.chunk = Math.max(1, Math.floor(a.chunk / 2));
      this.giveBack(workspaceId, a.slot, a.left);
    }
    a.slot = slot;
    a.left = 0;
  }

  /** Uncounts allowance never spent (off the request path; a lost one only refuses a little early). */
  private giveBack(workspaceId: string, slot: number, n: number): void {
    giveBackRateAllowance(this.store.sql, workspaceId, new Date(slot), n).catch(() => undefined);
  }

  private async reserve(workspaceId: string, slot: number, perMinute: number, a: Allowance): Promise<void> {
    const cap = Math.max(1, Math.floor(perMinute / 20));
    const want = Math.min(cap, a.chunk);
    const { granted, oldest } = await reserveRateAllowance(this.store.sql, {
      workspaceId, slot: new Date(slot), since: new Date(slot - SLOTS * SLOT_MS), want, limit: perMinute,
    });
    if (a.slot !== slot) {
      // The slot ended while reserving: give it back rather than spend it late.
      if (granted > 0) this.giveBack(workspaceId, slot, granted);
      return;
    }
    a.left += granted;
    if (granted === 0) {
      // Allowance frees up when the oldest counted slot leaves the window.
      a.refusedUntil = Math.max(slot + SLOT_MS, (oldest?.getTime() ?? slot) + (SLOTS + 1) * SLOT_MS);
    } else if (granted === want) {
      a.chunk = Math.min(cap, a.chunk * 2);
    }
  }

  /** Once a slot: gives back what idle workspaces were left holding, and forgets them. */
  private sweep(slot: number, except: string): void {
    if (this.sweptSlot === slot) return;
    this.sweptSlot = slot;
    for (const [ws, a] of this.allowances) {
      if (ws !== except && a.slot < slot && !a.pending && a.refusedUntil <= slot) {
        this.release(ws, a, slot);
        this.allowances.delete(ws);
      }
    }
  }

  /** Drops slots older than an hour (called from a timer). */
  async prune(): Promise<void> {
    await pruneRateWindows(this.store.sql);
  }
}
