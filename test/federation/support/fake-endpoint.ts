import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * A bundle endpoint under the test's control: what it answers, with which TLS identity, and
 * whether it is up at all (stop/start keep the port, as a restarted peer would).
 */
export class FakeBundleEndpoint {
  status = 200;
  body = '';
  requests = 0;
  private server: Server | undefined;
  private port = 0;

  constructor(private identity: { cert: string; key: string }) {}

  get url(): string {
    return `https://localhost:${this.port}/bundle`;
  }

  setIdentity(identity: { cert: string; key: string }): void {
    this.identity = identity;
    this.server?.setSecureContext(identity);
  }

  async start(): Promise<this> {
    const server = createServer(this.identity, (_req, res) => {
      this.requests++;
      res.writeHead(this.status, { 'content-type': 'application/json' }).end(this.body);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, () => resolve()); // all interfaces: `localhost` may resolve to ::1 or 127.0.0.1
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}
