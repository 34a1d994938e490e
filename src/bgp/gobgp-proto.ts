// Loads GoBGP's API protos (proto/, copied from the installed gobgpd's Debian package by `make protos`).
// The same loader serves the client and the tests, from dist/, .build/<x>/ or the source tree.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';

export const GOBGP_PROTO_FILES = ['gobgp.proto', 'attribute.proto', 'capability.proto'] as const;

export class GobgpProtoError extends Error {
  readonly code = 'PROTO_MISSING';
  constructor(message: string) {
    super(message);
    this.name = 'GobgpProtoError';
  }
}

/** The repository root: the nearest directory above this module holding a package.json. */
export function findProjectRoot(fromUrl: string = import.meta.url): string {
  let dir = path.dirname(fileURLToPath(fromUrl));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new GobgpProtoError(`no package.json above ${fileURLToPath(fromUrl)}`);
    dir = parent;
  }
}

export function gobgpProtoDir(): string {
  const dir = path.join(findProjectRoot(), 'proto');
  for (const f of GOBGP_PROTO_FILES) {
    if (!existsSync(path.join(dir, f))) {
      throw new GobgpProtoError(`${path.join(dir, f)} is missing: run \`make protos\` (copies GoBGP's API protos)`);
    }
  }
  return dir;
}

let cached: protoLoader.PackageDefinition | undefined;

/** The package definition of apipb (all three files), loaded once per process. */
export function loadGobgpPackage(): protoLoader.PackageDefinition {
  if (cached === undefined) {
    const dir = gobgpProtoDir();
    cached = protoLoader.loadSync(
      GOBGP_PROTO_FILES.map((f) => path.join(dir, f)),
      {
        // keepCase: GoBGP's fields are snake_case; camel-casing silently drops some of them.
        keepCase: true,
        longs: String,
        enums: String,
        defaults: true,
        oneofs: true,
        json: true,
        includeDirs: [dir],
      },
    );
  }
  return cached;
}
