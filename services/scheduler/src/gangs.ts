import type { PendingJob } from './scheduler-state.js';

interface Assembly {
  size: number;
  members: Map<string, PendingJob>;
  firstSeen: number;
}

/**
 * Gathers the members of gang jobs as they are announced (together at submit, one by
 * one when they come back from RETRY_WAIT) and hands out the gang as a single pending
 * entry once all N are present.
 */
export class GangAssembly {
  private readonly assemblies = new Map<string, Assembly>();

  /** Adds a member; returns the whole gang when this was the last one missing. */
  add(gangId: string, size: number, member: PendingJob, now: number): PendingJob | undefined {
    let a = this.assemblies.get(gangId);
    if (!a) this.assemblies.set(gangId, (a = { size, members: new Map(), firstSeen: now }));
    a.members.set(member.id, member);
    if (a.members.size < a.size) return undefined;
    this.assemblies.delete(gangId);
    const members = [...a.members.values()];
    const ids = members.map((m) => m.id).sort();
    return {
      id: ids[0]!, workspaceId: member.workspaceId, queue: member.queue,
      priority: Math.max(...members.map((m) => m.priority)),
      notBefore: Math.max(...members.map((m) => m.notBefore)),
      members: ids,
      gangId,
    };
  }

  has(memberId: string): boolean {
    for (const a of this.assemblies.values()) if (a.members.has(memberId)) return true;
    return false;
  }

  /** Drops gangs still incomplete after `maxAgeMs`; returns their ids. */
  expire(now: number, maxAgeMs: number): string[] {
    const out: string[] = [];
    for (const [id, a] of this.assemblies) {
      if (now - a.firstSeen > maxAgeMs) { this.assemblies.delete(id); out.push(id); }
    }
    return out;
  }

  clear(): void {
    this.assemblies.clear();
  }
}
