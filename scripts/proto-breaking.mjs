// `npm run proto:breaking`: buf breaking (FILE rules) of proto/ against what it was before
// the change under review:
//   - uncommitted changes under proto/: against HEAD;
//   - a branch off main: against the merge-base with main (or origin/main);
//   - on main itself (or with no main ref, as in a CI checkout of one commit): against
//     the parent of the last commit that changed proto/.
// PROTO_BREAKING_AGAINST=<git ref> picks the base by hand. Where there is no base to
// compare with (not a git checkout, a shallow clone without it, no earlier proto/), it
// says so and exits 0: a missing history is no contract break.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buf = join(root, 'node_modules', '.bin', 'buf');
const git = (...args) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
const tryGit = (...args) => { try { return git(...args); } catch { return undefined; } };
const exists = (spec) => tryGit('cat-file', '-e', spec) !== undefined;
const skip = (why) => { console.log(`proto:breaking: skipped, ${why}`); process.exit(0); };

if (tryGit('rev-parse', '--is-inside-work-tree') !== 'true') skip('not a git checkout');

function base() {
  const asked = process.env.PROTO_BREAKING_AGAINST;
  if (asked) return { ref: asked, why: 'PROTO_BREAKING_AGAINST' };
  if (tryGit('status', '--porcelain', '--', 'proto')) return { ref: 'HEAD', why: 'uncommitted changes under proto/' };
  const head = git('rev-parse', 'HEAD');
  for (const main of ['refs/heads/main', 'refs/remotes/origin/main']) {
    const mb = tryGit('rev-parse', '--verify', '--quiet', main) && tryGit('merge-base', 'HEAD', main);
    if (mb && mb !== head) return { ref: mb, why: `merge-base with ${main.replace(/^refs\/(heads|remotes)\//, '')}` };
  }
  const last = tryGit('log', '-1', '--format=%H', '--', 'proto');
  if (!last) skip('no commit has changed proto/');
  const parent = tryGit('rev-parse', '--verify', '--quiet', `${last}^`);
  if (!parent) skip(`no history before ${last.slice(0, 12)} in this checkout (a shallow clone, or the first commit)`);
  return { ref: parent, why: `before ${last.slice(0, 12)}, the last commit that changed proto/` };
}

const { ref, why } = base();
const sha = tryGit('rev-parse', '--verify', '--quiet', `${ref}^{commit}`);
if (!sha) skip(`${ref} is not a commit here`);
if (!exists(`${sha}:proto`)) skip(`${sha.slice(0, 12)} has no proto/`);

// The old tree, as files: buf reads it like the current one (buf.yaml, modules: proto).
const dir = mkdtempSync(join(tmpdir(), 'aijob-proto-breaking-'));
try {
  const withConfig = exists(`${sha}:buf.yaml`);
  execFileSync('sh', ['-c', `git archive "${sha}" proto${withConfig ? ' buf.yaml' : ''} | tar -x -C "${dir}"`], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  console.log(`proto:breaking: proto/ against ${sha.slice(0, 12)} (${why})`);
  execFileSync(buf, ['breaking', '--against', withConfig ? dir : join(dir, 'proto')], { cwd: root, stdio: 'inherit' });
} catch (err) {
  process.exitCode = typeof err.status === 'number' ? err.status : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
