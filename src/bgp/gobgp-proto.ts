// Loads GoBGP's API protos (proto/, copied from the installed gobgpd's Debian package by `make protos`).
// The same loader serves the client and the tests, from dist/, .build/<x>/ or the source tree.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

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

/**
 * How a message is read into a plain object, as @grpc/proto-loader reads it with the options GoBGP's API needs:
 * field names as in the proto (GoBGP's are snake_case; camel-casing silently drops some of them), 64-bit integers
 * and enums as strings, unset fields with their defaults, the set member of a oneof named, and Any as
 * {'@type', ...fields}.
 */
const READ_OPTIONS: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true, oneofs: true, json: true };

/** A method of apipb.GobgpApi as grpc-js calls it. */
export type GobgpMethod = grpc.MethodDefinition<object, object>;

let cached: Record<string, GobgpMethod> | undefined;

/**
 * apipb.GobgpApi's methods by name (all three proto files), made once per process with protobufjs, the library
 * @grpc/proto-loader is built on, and its serializers. proto-loader also builds a descriptor of every message type
 * for reflection, for nothing this client uses: loading took 0.42 s of CPU that way and 0.31 s this way (farm-bench,
 * whole processes), on the way to a node's first BGP configuration.
 */
export function gobgpMethods(): Record<string, GobgpMethod> {
  if (cached === undefined) {
    const dir = gobgpProtoDir();
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(dir, target));
    root.loadSync([...GOBGP_PROTO_FILES], { keepCase: true });
    root.resolveAll();
    const service = root.lookupService('apipb.GobgpApi');
    const methods: Record<string, GobgpMethod> = {};
    for (const method of service.methodsArray) {
      const request = method.resolvedRequestType;
      const response = method.resolvedResponseType;
      if (request === null || response === null) throw new GobgpProtoError(`apipb.GobgpApi.${method.name}: unresolved message type`);
      methods[method.name] = {
        path: `/apipb.GobgpApi/${method.name}`,
        requestStream: method.requestStream === true,
        responseStream: method.responseStream === true,
        requestSerialize: serializer(request),
        requestDeserialize: deserializer(request),
        responseSerialize: serializer(response),
        responseDeserialize: deserializer(response),
      };
    }
    cached = methods;
  }
  return cached;
}

/** The package as grpc.loadPackageDefinition takes it: the service alone (the bench's and tests' raw clients). */
export function loadGobgpPackage(): Parameters<typeof grpc.loadPackageDefinition>[0] {
  return { 'apipb.GobgpApi': gobgpMethods() };
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    const bytes = type.encode(type.fromObject(value)).finish();
    // protobufjs writes into a Buffer under Node: handed on as it is, not copied.
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), READ_OPTIONS);
}
