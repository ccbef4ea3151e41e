import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeSyncRequest } from './sync-request-decoder.js';

/**
 * The server's protocol: node.proto (agent-facing) and admin.proto (local socket). Shared by the
 * server, the agent's server client and the CLI's admin client, the way SPIRE's api-sdk is, so
 * the agent never imports server internals.
 */
const protoDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'proto');

// int64/uint64 arrive as strings so uint64 bundle sequences keep every bit.
const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [protoDir] };

export interface ServerServices {
  /** The node service as the server serves it: SyncAuthorizedEntries requests through decodeSyncRequest. */
  node: grpc.ServiceDefinition;
  admin: grpc.ServiceDefinition;
  nodeClient: grpc.ServiceClientConstructor;
  adminClient: grpc.ServiceClientConstructor;
}

let cached: ServerServices | undefined;

export function serverServices(): ServerServices {
  if (!cached) {
    const nodeDef = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(protoDir, 'node.proto'), LOADER_OPTIONS)) as unknown as {
      svidscope: { server: { v1: { Node: grpc.ServiceClientConstructor } } };
    };
    const adminDef = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(protoDir, 'admin.proto'), LOADER_OPTIONS)) as unknown as {
      svidscope: { admin: { v1: { Admin: grpc.ServiceClientConstructor } } };
    };
    const nodeClient = nodeDef.svidscope.server.v1.Node;
    const adminClient = adminDef.svidscope.admin.v1.Admin;
    const sync = nodeClient.service.SyncAuthorizedEntries;
    const node = { ...nodeClient.service, SyncAuthorizedEntries: { ...sync, requestDeserialize: decodeSyncRequest } };
    cached = { node, admin: adminClient.service, nodeClient, adminClient };
  }
  return cached;
}

/**
 * Request metadata keys an admin client sets about itself (uid, pid, user name), for the server's
 * audit lines. Self-reported: the 0600 admin socket already limits callers to its owner and root.
 */
export const ADMIN_CALLER_METADATA = { uid: 'svidscope-caller-uid', pid: 'svidscope-caller-pid', user: 'svidscope-caller-user' } as const;

/** Trailer metadata key carrying the svidscope error code of a refused call (defined with the one status mapping). */
export { ERROR_CODE_METADATA } from '../../common/errors/grpc.js';

export function toNumber(v: string | number | undefined | null): number {
  return v === undefined || v === null || v === '' ? 0 : Number(v);
}
