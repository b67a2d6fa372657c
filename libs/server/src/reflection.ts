import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { descriptorSetPath } from '@aijob/contracts';

interface FileEntry {
  name: string;
  bytes: Uint8Array;
  dependencies: string[];
  /** Fully qualified symbols defined in the file (messages, enums, services, methods). */
  symbols: string[];
  extensions: { extendee: string; number: number }[];
}

/** Reads the parts of FileDescriptorProtos that reflection needs, keeping each file's exact bytes. */
function indexDescriptorSet(set: Uint8Array): FileEntry[] {
  const files: FileEntry[] = [];
  const r = new BinaryReader(set);
  while (r.pos < r.len) {
    const [field] = r.tag();
    if (field !== 1) { r.skip(2); continue; }
    const bytes = r.bytes();
    files.push(parseFile(bytes));
  }
  return files;
}

function parseFile(bytes: Uint8Array): FileEntry {
  const entry: FileEntry = { name: '', bytes, dependencies: [], symbols: [], extensions: [] };
  let pkg = '';
  const messages: Uint8Array[] = [];
  const enums: Uint8Array[] = [];
  const services: Uint8Array[] = [];
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [field, wt] = r.tag();
    if (field === 1) entry.name = r.string();
    else if (field === 2) pkg = r.string();
    else if (field === 3) entry.dependencies.push(r.string());
    else if (field === 4) messages.push(r.bytes());
    else if (field === 5) enums.push(r.bytes());
    else if (field === 6) services.push(r.bytes());
    else if (field === 7) entry.extensions.push(parseExtension(r.bytes()));
    else r.skip(wt);
  }
  const prefix = pkg ? `${pkg}.` : '';
  for (const m of messages) walkMessage(m, prefix, entry);
  for (const e of enums) entry.symbols.push(prefix + nameOf(e));
  for (const s of services) {
    const sr = new BinaryReader(s);
    let name = '';
    const methods: string[] = [];
    while (sr.pos < sr.len) {
      const [f, w] = sr.tag();
      if (f === 1) name = sr.string();
      else if (f === 2) methods.push(nameOf(sr.bytes()));
      else sr.skip(w);
    }
    entry.symbols.push(prefix + name, ...methods.map((m) => `${prefix}${name}.${m}`));
  }
  return entry;
}

function walkMessage(bytes: Uint8Array, prefix: string, entry: FileEntry): void {
  const r = new BinaryReader(bytes);
  let name = '';
  const nested: Uint8Array[] = [];
  const enums: Uint8Array[] = [];
  while (r.pos < r.len) {
    const [f, w] = r.tag();
    if (f === 1) name = r.string();
    else if (f === 3) nested.push(r.bytes());
    else if (f === 4) enums.push(r.bytes());
    else if (f === 6) entry.extensions.push(parseExtension(r.bytes()));
    else r.skip(w);
  }
  const full = prefix + name;
  entry.symbols.push(full);
  for (const n of nested) walkMessage(n, `${full}.`, entry);
  for (const e of enums) entry.symbols.push(`${full}.${nameOf(e)}`);
}

function nameOf(bytes: Uint8Array): string {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [f, w] = r.tag();
    if (f === 1) return r.string();
    r.skip(w);
  }
  return '';
}

function parseExtension(bytes: Uint8Array): { extendee: string; number: number } {
  const r = new BinaryReader(bytes);
  let extendee = '';
  let number = 0;
  while (r.pos < r.len) {
    const [f, w] = r.tag();
    if (f === 2) extendee = r.string().replace(/^\./, '');
    else if (f === 3) number = r.int32();
    else r.skip(w);
  }
  return { extendee, number };
}

interface ReflectionRequest {
  host?: string;
  file_by_filename?: string;
  file_containing_symbol?: string;
  file_containing_extension?: { containing_type: string; extension_number: number };
  all_extension_numbers_of_type?: string;
  list_services?: string;
  message_request?: string;
}

/**
 * gRPC server reflection (v1 and v1alpha) served from the `buf build` image: exact
 * descriptors with their imports, so grpcurl and other tools can list, describe and
 * call every method with no .proto files at hand.
 */
export function addReflection(server: grpc.Server, services: string[]): void {
  const files = indexDescriptorSet(readFileSync(descriptorSetPath));
  const byName = new Map(files.map((f) => [f.name, f]));
  const bySymbol = new Map<string, FileEntry>();
  for (const f of files) for (const s of f.symbols) bySymbol.set(s, f);
  const listed = [...services, 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

  /** The file and everything it imports, each once. */
  const withDeps = (root: FileEntry): Uint8Array[] => {
    const out: FileEntry[] = [];
    const seen = new Set<string>();
    const visit = (f: FileEntry) => {
      if (seen.has(f.name)) return;
      seen.add(f.name);
      out.push(f);
      for (const d of f.dependencies) { const dep = byName.get(d); if (dep) visit(dep); }
    };
    visit(root);
    return out.map((f) => f.bytes);
  };

  const answer = (req: ReflectionRequest) => {
    const base = { valid_host: req.host ?? '', original_request: req };
    const notFound = (what: string) => ({ ...base, error_response: { error_code: grpc.status.NOT_FOUND, error_message: `${what} not found` } });
    switch (req.message_request) {
      case 'list_services':
        return { ...base, list_services_response: { service: listed.map((name) => ({ name })) } };
      case 'file_by_filename': {
        const f = byName.get(req.file_by_filename ?? '');
        return f ? { ...base, file_descriptor_response: { file_descriptor_proto: withDeps(f) } } : notFound(`file ${req.file_by_filename}`);
      }
      case 'file_containing_symbol': {
        const f = bySymbol.get((req.file_containing_symbol ?? '').replace(/^\./, ''));
        return f ? { ...base, file_descriptor_response: { file_descriptor_proto: withDeps(f) } } : notFound(`symbol ${req.file_containing_symbol}`);
      }
      case 'file_containing_extension': {
        const x = req.file_containing_extension!;
        const f = files.find((e) => e.extensions.some((ext) => ext.extendee === x.containing_type && ext.number === x.extension_number));
        return f ? { ...base, file_descriptor_response: { file_descriptor_proto: withDeps(f) } } : notFound('extension');
      }
      case 'all_extension_numbers_of_type': {
        const type = req.all_extension_numbers_of_type ?? '';
        if (!bySymbol.has(type)) return notFound(`type ${type}`);
        const numbers = files.flatMap((f) => f.extensions.filter((e) => e.extendee === type).map((e) => e.number));
        return { ...base, all_extension_numbers_response: { base_type_name: type, extension_number: numbers } };
      }
      default:
        return { ...base, error_response: { error_code: grpc.status.UNIMPLEMENTED, error_message: 'unknown request' } };
    }
  };

  const require = createRequire(import.meta.url);
  for (const version of ['v1', 'v1alpha']) {
    const path = require.resolve(`@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`);
    const def = loadSync(path, { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true });
    const service = def[`grpc.reflection.${version}.ServerReflection`] as grpc.ServiceDefinition;
    server.addService(service, {
      ServerReflectionInfo: (call: grpc.ServerDuplexStream<ReflectionRequest, unknown>) => {
        call.on('data', (req: ReflectionRequest) => call.write(answer(req)));
        call.on('end', () => call.end());
        call.on('error', () => undefined);
      },
    });
  }
}
