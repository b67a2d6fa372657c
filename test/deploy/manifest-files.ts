import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../helpers/processes.js';

export interface Doc {
  file: string;
  obj: Record<string, any>;
}

/** Every YAML file under the given folders of the repository. */
export function yamlFiles(...dirs: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(name)) out.push(p);
    }
  };
  for (const d of dirs) walk(join(repoRoot, d));
  return out.sort();
}

/** Every document of every file (throws, naming the file, on a YAML error). */
export function documents(files: string[]): Doc[] {
  return files.flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${relative(repoRoot, f)}: ${d.errors[0]!.message}`);
    return { file: relative(repoRoot, f), obj: d.toJS() as Record<string, any> };
  })).filter((d) => d.obj !== null);
}

export const isKubernetes = (o: Record<string, any>) => typeof o['apiVersion'] === 'string' && typeof o['kind'] === 'string';
