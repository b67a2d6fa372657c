import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadFileDescriptorSetFromBuffer, loadSync, type PackageDefinition } from '@grpc/proto-loader';

/** Path of the `buf build` image holding aijob's protos and everything they import. */
export const descriptorSetPath = fileURLToPath(new URL('../descriptors/aijob.binpb', import.meta.url));

const loaderOptions = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/**
 * A proto-loader package definition of all aijob services, for server reflection.
 * `extraProtoPaths` adds other .proto files (the gRPC health service) to the same definition.
 */
export function loadReflectionDefinition(extraProtoPaths: string[] = []): PackageDefinition {
  const own = loadFileDescriptorSetFromBuffer(readFileSync(descriptorSetPath), loaderOptions);
  if (extraProtoPaths.length === 0) return own;
  return { ...own, ...loadSync(extraProtoPaths, loaderOptions) };
}
