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

/** The nats-server processes listening on the port of `url` (other agents' test servers are not ours). */
export function natsPids(url) {
  const port = new URL(url).port || '4222';
  return pidsMatching(new RegExp(`nats-server.*(-p|--port)[ =]${port}( |$)`));
}

/**
 * The process groups the benchmark and the soak sample: each service of `platform`,
 * Postgres and NATS. Postgres is the backends serving the platform's database (as the
 * platform reports them), not the server's other databases; NATS is the server on its port.
 */
export function platformGroups(platform) {
  return {
    ...Object.fromEntries(['auth', 'job', 'scheduler', 'worker'].map((s) => [s, () => platform.pids(s)])),
    postgres: () => platform.postgresPids?.() ?? pidsMatching(/^postgres/),
    nats: () => platform.natsPids?.() ?? pidsMatching(/nats-server/),
  };
}

/**
 * Samples groups of processes every `everyMs`: peak RSS (summed per group, and of its
 * largest process) and CPU used since start. A process that exits keeps the CPU it was
 * last seen with; one that appears later counts from zero (it started after the sampler).
 */
export class Sampler {
  constructor(groups, everyMs = 250) {
    this.groups = groups; // name -> () => pids
    this.peak = {};
    this.peakProcess = {};
    this.base = {};
    this.last = {};
    for (const [name, pids] of Object.entries(groups)) {
      this.base[name] = new Map();
      this.last[name] = new Map();
      for (const p of pids()) {
        const cpu = stat(p)?.cpu;
        if (cpu !== undefined) { this.base[name].set(p, cpu); this.last[name].set(p, cpu); }
      }
      this.peak[name] = 0;
      this.peakProcess[name] = 0;
    }
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  sample() {
    for (const [name, pids] of Object.entries(this.groups)) {
      let sum = 0;
      for (const p of pids()) {
        const s = stat(p);
        if (!s) continue;
        if (!this.base[name].has(p)) this.base[name].set(p, 0);
        this.last[name].set(p, s.cpu);
        sum += s.rss;
        this.peakProcess[name] = Math.max(this.peakProcess[name], s.rss);
      }
      this.peak[name] = Math.max(this.peak[name], sum);
    }
  }

  /** CPU seconds each group has used since the sampler started. */
  cpu() {
    this.sample();
    const out = {};
    for (const name of Object.keys(this.groups)) {
      let s = 0;
      for (const [p, last] of this.last[name]) s += last - this.base[name].get(p);
      out[name] = s;
    }
    return out;
  }

  stop() {
    clearInterval(this.timer);
    const cpu = this.cpu();
    const out = {};
    for (const name of Object.keys(this.groups)) {
      out[name] = {
        peakRssMb: Math.round(this.peak[name] / 1024 / 1024), peakProcessRssMb: Math.round(this.peakProcess[name] / 1024 / 1024),
        cpuSeconds: Number(cpu[name].toFixed(1)),
      };
    }
    return out;
  }
}
