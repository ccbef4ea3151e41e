import { chmodSync } from 'node:fs';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import { readPeerCredentials, type PeerCredentials } from '../../../common/peercred.js';

/** The admin socket as served: who is on the other end of a call's connection, and shutdown. */
export interface AdminSocket {
  /** The kernel's record of the caller (SO_PEERCRED at connect time); undefined where it cannot be read. */
  peerOf(call: { getPeer(): string }): PeerCredentials | undefined;
  close(): void;
}

/**
 * Serves the admin API on a Unix socket (mode 0600) through grpc-js's connection injector, so
 * each connection's caller is known from the kernel for the audit lines of sensitive steps. A
 * connection is tagged with a token as its remote address before gRPC sees it (grpc-js builds
 * `getPeer()` from it); the token is ours, so a client cannot pose as another connection.
 * Where SO_PEERCRED cannot be read (not Linux) the connection is still served, without a caller.
 */
export async function listenAdminSocket(server: grpc.Server, socketPath: string, logger: Logger): Promise<AdminSocket> {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const peers = new Map<string, PeerCredentials>();
  const prefix = `admin-peercred:${randomBytes(8).toString('hex')}:`;
  let seq = 0;
  let ready = false; // connections before the chmod below passed a umask-derived mode: refused
  const netServer = net.createServer((socket) => {
    if (!ready) {
      socket.destroy();
      return;
    }
    const token = `${prefix}${++seq}`;
    try {
      peers.set(token, readPeerCredentials(socket));
    } catch (err) {
      logger.debug({ err }, 'admin connection without peer credentials');
    }
    Object.defineProperty(socket, 'remoteAddress', { value: token, configurable: true, enumerable: false });
    socket.once('close', () => peers.delete(token));
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    netServer.once('error', (err) => reject(new SvidscopeError('io-error', `cannot listen on ${socketPath}: ${err.message}`, { cause: err })));
    netServer.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  ready = true;
  netServer.on('error', (err) => logger.error({ err }, 'admin socket error'));
  return {
    peerOf: (call) => peers.get(call.getPeer()),
    close() {
      netServer.close();
      injector.destroy();
    },
  };
}
