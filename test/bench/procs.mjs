// Resource sampling from /proc: peak RSS and CPU seconds of processes, by name.
import { readFileSync, readdirSync } from 'node:fs';

const TICK = 100; // clock ticks per second on Linux

function stat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    return { cpu: (Number(fields[11]) + Number(fields[12])) / TICK, rss: rssKb * 1024 };
  } catch {
    return undefined;
  }
}

/** Pids of processes whose command line matches. */
export function pidsMatching(re) {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((pid) => {
    try { return re.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')); } catch { return false; }
  }).map(Number);
}

/** The process groups the benchmark and the soak sample: each service of `platform`, Postgres and NATS. */
export function platformGroups(platform) {
  return {
    ...Object.fromEntries(['auth', 'job', 'scheduler', 'worker'].map((s) => [s, () => platform.pids(s)])),
    postgres: () => pidsMatching(/^postgres/), nats: () => pidsMatching(/nats-server/),
  };
}

/** Samples groups of processes every `everyMs`: peak RSS (summed per group, and of its largest process) and CPU used since start. */
export class Sampler {
  constructor(groups, everyMs = 250) {
    this.groups = groups; // name -> () => pids
    this.peak = {};
    this.peakProcess = {};
    this.start = {};
    for (const [name, pids] of Object.entries(groups)) {
      this.start[name] = pids().reduce((n, p) => n + (stat(p)?.cpu ?? 0), 0);
      this.peak[name] = 0;
      this.peakProcess[name] = 0;
    }
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  sample() {
    for (const [name, pids] of Object.entries(this.groups)) {
      const each = pids().map((p) => stat(p)?.rss ?? 0);
      this.peak[name] = Math.max(this.peak[name], each.reduce((a, b) => a + b, 0));
      this.peakProcess[name] = Math.max(this.peakProcess[name], ...each);
    }
  }

  stop() {
    clearInterval(this.timer);
    this.sample();
    const out = {};
    for (const [name, pids] of Object.entries(this.groups)) {
      const cpu = pids().reduce((n, p) => n + (stat(p)?.cpu ?? 0), 0) - this.start[name];
      out[name] = {
        peakRssMb: Math.round(this.peak[name] / 1024 / 1024), peakProcessRssMb: Math.round(this.peakProcess[name] / 1024 / 1024),
        cpuSeconds: Number(cpu.toFixed(1)),
      };
    }
    return out;
  }
}
