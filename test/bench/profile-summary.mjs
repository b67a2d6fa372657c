// `node test/bench/profile-summary.mjs DIR [--top N]`: what a CPU profile (node --cpu-prof,
// see BENCH_PROFILE in launcher.mjs) spent its time on. DIR holds .cpuprofile files (one
// service's processes; their samples are added up). Prints self time by package (or
// node's own code), the top functions by self time, and the top of our own code (libs/,
// services/) by total time: the time spent in a function and everything it called.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
const top = Number(values.top);
const dir = positionals[0];
if (!dir) throw new Error('usage: profile-summary.mjs DIR [--top N]');

/** Where a frame's code lives: an npm package, our own lib or service, node itself, or V8 (GC, idle, program). */
function owner(url, fn) {
  if (!url) return fn === '(garbage collector)' ? '(gc)' : fn === '(idle)' ? '(idle)' : fn.startsWith('(') ? fn : '(native)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 13).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const ours = /\/(libs|services)\/([^/]+)\//.exec(url);
  if (ours) return `${ours[1]}/${ours[2]}`;
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  return url;
}

const bySelf = new Map();
const byPackage = new Map();
const totalOurs = new Map();
let total = 0;
for (const f of readdirSync(dir).filter((n) => n.endsWith('.cpuprofile'))) {
  const p = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const dt = new Map();
  // Sample i lasted timeDeltas[i + 1] (the delta before the next sample).
  for (let i = 0; i < p.samples.length; i++) {
    const d = (p.timeDeltas[i + 1] ?? 0) / 1000;
    dt.set(p.samples[i], (dt.get(p.samples[i]) ?? 0) + d);
  }
  for (const [id, ms] of dt) {
    const n = nodes.get(id);
    const cf = n.callFrame;
    const fn = cf.functionName || '(anonymous)';
    if (fn === '(idle)') continue;
    total += ms;
    const pkg = owner(cf.url, fn);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + ms);
    const key = `${fn}  ${pkg}${cf.url && !cf.url.includes('node_modules') ? `:${cf.url.split('/').slice(-1)[0]}` : ''}:${cf.lineNumber + 1}`;
    bySelf.set(key, (bySelf.get(key) ?? 0) + ms);
    // Total time of our own functions: each counted once per sample, however deep the recursion.
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const c = nodes.get(cur).callFrame;
      if (!/\/(libs|services)\//.test(c.url) || c.url.includes('node_modules')) continue;
      const k = `${c.functionName || '(anonymous)'}  ${c.url.split('/').slice(-3).join('/')}:${c.lineNumber + 1}`;
      if (seen.has(k)) continue;
      seen.add(k);
      totalOurs.set(k, (totalOurs.get(k) ?? 0) + ms);
    }
  }
}

const pct = (ms) => `${((ms / total) * 100).toFixed(1).padStart(5)} %`;
const show = (title, m, n) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, ms] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) process.stdout.write(`  ${pct(ms)}  ${(ms / 1000).toFixed(2).padStart(7)} s  ${k}\n`);
};
process.stdout.write(`${dir}: ${(total / 1000).toFixed(2)} s of CPU sampled (idle left out)\n`);
show('self time by package', byPackage, top);
show('top functions by self time', bySelf, top);
show('our code by total time (itself and what it calls)', totalOurs, top);
