import net from 'node:net';
import { SvidscopeError } from '../common/errors/catalog.js';

/**
 * An in-process TCP fault proxy (toxiproxy's model, no binary needed): listens on 127.0.0.1,
 * forwards to `upstream`, and applies one mode at a time. `partition` holds connections open and
 * drops every byte (toxiproxy `timeout: 0`), `reset` destroys them at once, `latency` delays each
 * chunk in both directions. Changing the mode applies to live connections too. Loopback only.
 */
export type ProxyMode = { kind: 'pass' } | { kind: 'partition' } | { kind: 'reset' } | { kind: 'latency'; ms: number };

export class FaultProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  mode: ProxyMode = { kind: 'pass' };
  port = 0;

  constructor(readonly upstream: { host: string; port: number }) {
    if (!['127.0.0.1', 'localhost', '::1'].includes(upstream.host)) throw new SvidscopeError('config-invalid', `fault proxy: upstream ${upstream.host} is not loopback`);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<void> {
    this.server = net.createServer((client) => this.onConnection(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  setMode(mode: ProxyMode): void {
    const wasPartitioned = this.mode.kind === 'partition';
    this.mode = mode;
    // Connections that lost bytes in a partition are broken streams (TLS would fail on the next
    // record); a real network heals with those connections timed out, so drop them here too.
    if (mode.kind === 'reset' || (wasPartitioned && mode.kind !== 'partition')) for (const s of this.sockets) s.destroy();
  }

  private onConnection(client: net.Socket): void {
    if (this.mode.kind === 'reset') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.upstream.port, this.upstream.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
    }
    const pipe = (from: net.Socket, to: net.Socket) => {
      from.on('data', (chunk: Buffer) => {
        const m = this.mode;
        if (m.kind === 'partition') return; // bytes vanish
        if (m.kind === 'reset') {
          client.destroy();
          upstream.destroy();
          return;
        }
        if (m.kind === 'latency') {
          from.pause();
          setTimeout(() => {
            if (!to.destroyed) to.write(chunk);
            from.resume();
          }, m.ms);
          return;
        }
        if (!to.destroyed) to.write(chunk);
      });
      from.on('end', () => to.end());
      from.on('close', () => to.destroy());
    };
    pipe(client, upstream);
    pipe(upstream, client);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = undefined;
  }
}

export function parseHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}
