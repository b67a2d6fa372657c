// The gRPC API as the repository defines it: RPCs from proto/aijob/v1, and which proto
// services each service registers (services/<name>/src/app.ts), for route and policy checks.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/processes.js';
import { readText } from './manifest-files.js';

export interface Rpc {
  /** `JobService` */
  service: string;
  method: string;
  /** `/aijob.v1.JobService/GetJob`, the HTTP/2 path of the call. */
  path: string;
  streaming: boolean;
}

/** The .proto files of proto/aijob/v1, comments dropped. */
const protoFiles = () => readdirSync(join(repoRoot, 'proto/aijob/v1')).filter((f) => f.endsWith('.proto')).sort()
  .map((f) => readText(join('proto/aijob/v1', f)).replace(/\/\/.*$/gm, ''));

/** Every RPC declared in proto/aijob/v1. */
export function protoRpcs(): Rpc[] {
  const out: Rpc[] = [];
  for (const text of protoFiles()) {
    const pkg = /^package ([\w.]+);/m.exec(text)?.[1];
    for (const svc of text.matchAll(/service (\w+)\s*\{([\s\S]*?)\n\}/g)) {
      for (const m of svc[2]!.matchAll(/rpc (\w+)\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*returns\s*\(\s*(stream\s+)?[\w.]+\s*\)/g)) {
        out.push({ service: svc[1]!, method: m[1]!, path: `/${pkg}.${svc[1]}/${m[1]}`, streaming: Boolean(m[2] || m[3]) });
      }
    }
  }
  return out;
}

/** The proto services a service's gRPC server registers (`grpc.add(XServiceService, …)`, or `addUnwrapped(f(XServiceService), …)`). */
export function servedBy(service: string): string[] {
  const src = readText(`services/${service}/src/app.ts`);
  return [...src.matchAll(/\.add(?:Unwrapped)?\(\s*(?:\w+\()?(\w+Service)Service\b/g)].map((m) => m[1]!);
}

/** The field names of a top-level message of proto/aijob/v1 (empty when there is none). */
export function messageFields(message: string): Set<string> {
  const body = new RegExp(`^message ${message} \\{([\\s\\S]*?)^\\}`, 'm').exec(protoFiles().join('\n'))?.[1] ?? '';
  return new Set([...body.matchAll(/^\s*(?:optional |repeated )?[\w.<>, ]+?\s(\w+)\s*=\s*\d+;/gm)].map((m) => m[1]!));
}
