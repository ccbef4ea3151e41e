import * as grpc from '@grpc/grpc-js';
import { nullLogger, type Logger } from '../../../src/common/log.js';
import { createFederationHandlers } from '../../../src/identity-plane/server/api/federation-service.js';
import type { Federation } from '../../../src/identity-plane/server/federation/index.js';
import { bindAsync, prepareSocketPath, shutdown } from '../../../src/identity-plane/server/server.js';
import { serverServices } from '../../../src/identity-plane/server-api/services.js';

/**
 * Serves only the Admin service's federation methods, for a federation started alone in a test
 * (the real server merges them into its admin socket; the other Admin methods answer UNIMPLEMENTED here).
 */
export async function serveFederationAdmin(federation: Federation, socket: string, logger: Logger = nullLogger()): Promise<{ close(): Promise<void> }> {
  const server = new grpc.Server();
  server.addService(serverServices().admin, createFederationHandlers({ federation, logger }));
  prepareSocketPath(socket);
  await bindAsync(server, `unix://${socket}`, grpc.ServerCredentials.createInsecure());
  return { close: () => shutdown(server, 1000) };
}
