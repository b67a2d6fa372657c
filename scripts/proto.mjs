// Regenerates everything derived from proto/: lint, TypeScript (ts-proto), and the
// descriptor set that servers load for reflection. Generated files are not committed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buf = join(root, 'node_modules', '.bin', 'buf');
const run = (...args) => execFileSync(buf, args, { cwd: root, stdio: 'inherit' });

run('lint');
rmSync(join(root, 'libs/contracts/src/gen'), { recursive: true, force: true });
run('generate');
mkdirSync(join(root, 'libs/contracts/descriptors'), { recursive: true });
run('build', '-o', 'libs/contracts/descriptors/aijob.binpb');
