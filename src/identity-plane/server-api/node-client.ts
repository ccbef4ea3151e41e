import * as grpc from '@grpc/grpc-js';
import { GRPC_BASE_OPTIONS } from '../../common/grpc-options.js';
import { injectInto } from '../../common/telemetry/tracing.js';
import type { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { peerCertificateChain } from '../../common/tls/peer-chain.js';
import { SvidscopeError, type ErrorCode } from '../../common/errors/catalog.js';
import { codeOfServiceError } from '../../common/errors/grpc.js';
import type { Logger } from '../../common/log.js';
import type { TrustDomain } from '../spiffe/id/index.js';
import type { BundleMsg, ChangeNotificationMsg, SyncRequestMsg, SyncResponseMsg, TaintedAuthoritiesMsg, X509SvidMsg } from './messages.js';
import { serverServices } from './services.js';
import { serverSpiffeId } from './server-id.js';
import { scanPem } from '../spiffe/x509/index.js';

export interface JwtSvidMsg {
  token: string;
  spiffe_id: string;
  expires_at: string;
  issued_at: string;
  hint: string;
  entry_id: string;
}

export interface BatchResult {
  status_code: number;
  status_message: string;
  svid?: X509SvidMsg;
}

/** A failed server call: its catalogue code (from the server's trailer) tells eviction apart; the gRPC status is kept for failover on an outage. */
export class ServerCallError extends SvidscopeError {
  constructor(
    readonly status: grpc.status,
    code: ErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}

const RPC_TIMEOUT_MS = 30_000; // SPIRE's agent → server timeout

/**
 * The agent's only way to the server: the server API over TLS. The server must present
 * `spiffe://<td>/spire/server` under the bundle's authorities; the agent presents its own SVID once
 * it has one. Identity and trust anchors change on rotation, so the channel is rebuilt then.
 */
export interface ServerClientOptions {
  /** The trust domain's servers in order of preference (servers sharing one datastore). */
  addresses: string[];
  trustDomain: TrustDomain;
  logger: Logger;
  insecureBootstrap?: boolean;
  /** Called when the client leaves an unreachable server for the next one. */
  onFailover?: (from: string, to: string) => void;
}

export class ServerClient {
  private client: grpc.Client | undefined;
  /** Open WatchChanges streams: cancelled when the connection is rebuilt (new identity or trust). */
  private readonly watches = new Set<grpc.ClientReadableStream<ChangeNotificationMsg>>();
  private trustPem: string | undefined;
  /** Trust anchors were added since the channel was built: rebuild it once its connection is not up. */
  private trustStale = false;
  private identity: { chainPem: string; keyPem: string } | undefined;
  /** Index into `addresses` of the server in use; it stays there until that server fails. */
  private current = 0;

  constructor(private readonly opts: ServerClientOptions) {
    if (opts.addresses.length === 0) throw new SvidscopeError('config-invalid', 'agent: no server address');
  }

  /** The server the agent talks to now. */
  get address(): string {
    return this.opts.addresses[this.current];
  }

  /** The certificate chain (leaf first) the server presented on the last TLS handshake. */
  get serverChain(): X509Certificate[] | undefined {
    return this.lastServerChain;
  }
  private lastServerChain: X509Certificate[] | undefined;

  /**
   * The trust anchors for the server's certificate. Anchors only added (a CA being prepared) leave
   * the connection up: its server was verified against anchors still trusted, and the next
   * handshake uses the new set. A fleet rebuilding every connection at once on each new CA was a
   * burst of TLS handshakes at the server and dropped change streams. An anchor removed (a revoked
   * CA) may have verified this very connection, so that rebuilds it at once.
   */
  setTrust(bundlePem: string): void {
    if (bundlePem === this.trustPem) return;
    const widened = this.trustPem !== undefined && onlyAdds(this.trustPem, bundlePem);
    this.trustPem = bundlePem;
    if (!widened) this.reset();
    // The channel keeps its credentials for its whole life, reconnections included: once its
    // connection is gone it must be rebuilt with the new anchors (see connect), or an agent cut
    // off while the server moved to the new CA could never connect again.
    else if (this.client) this.trustStale = true;
  }

  setIdentity(chainPem: string, keyPem: string): void {
    this.identity = { chainPem, keyPem };
    this.reset();
  }

  clearIdentity(): void {
    this.identity = undefined;
    this.reset();
  }

  close(): void {
    this.reset();
  }

  /** Drops the connection; the next call handshakes again (and sees the server's current SVID). */
  reconnect(): void {
    this.reset();
  }

  attest(token: string, csr: Buffer): Promise<{ svid: X509SvidMsg; bundle: BundleMsg }> {
    return this.call('AttestAgent', { attestation_type: 'join_token', payload: Buffer.from(token), csr });
  }
  renew(csr: Buffer): Promise<{ svid: X509SvidMsg }> {
    return this.call('RenewAgent', { csr });
  }
  /** SyncAuthorizedEntries: a string is the first protocol's known revision; an object may carry the incremental fields. */
  sync(request: string | SyncRequestMsg): Promise<SyncResponseMsg> {
    return this.call('SyncAuthorizedEntries', typeof request === 'string' ? { known_revision: request } : request);
  }

  /**
   * Opens the WatchChanges stream on the current connection. `onEnd` runs once, with the failure
   * (UNIMPLEMENTED from a server without push, the refusal's code for a banned agent, UNAVAILABLE
   * or CANCELLED when the connection went or was rebuilt), or undefined when the server ended it.
   */
  watch(onMessage: (m: ChangeNotificationMsg) => void, onEnd: (err: ServerCallError | undefined) => void): { cancel(): void } {
    let ended = false;
    const end = (err: ServerCallError | undefined) => {
      if (ended) return;
      ended = true;
      this.watches.delete(call);
      onEnd(err);
    };
    let call: grpc.ClientReadableStream<ChangeNotificationMsg>;
    try {
      const client = this.connect() as unknown as Record<string, (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<ChangeNotificationMsg>>;
      call = client.WatchChanges.call(this.client, {}, new grpc.Metadata());
    } catch (err) {
      queueMicrotask(() => onEnd(new ServerCallError(grpc.status.UNAVAILABLE, 'unavailable', `server WatchChanges: ${(err as Error).message}`)));
      return { cancel: () => undefined };
    }
    this.watches.add(call);
    call.on('data', (m: ChangeNotificationMsg) => onMessage(m));
    call.on('error', (err: grpc.ServiceError) => end(new ServerCallError(err.code, codeOfServiceError(err), `server WatchChanges: ${err.details || err.message}`)));
    call.on('end', () => end(undefined));
    return { cancel: () => call.cancel() };
  }
  batchNewX509Svid(params: { entry_id: string; csr: Buffer }[]): Promise<{ results: BatchResult[] }> {
    return this.call('BatchNewX509SVID', { params });
  }
  newJwtSvid(entryId: string, audience: string[]): Promise<{ svid: JwtSvidMsg }> {
    return this.call('NewJWTSVID', { entry_id: entryId, audience });
  }
  getBundles(federated: string[]): Promise<{ bundle: BundleMsg; federated_bundles: BundleMsg[]; tainted?: TaintedAuthoritiesMsg | null }> {
    return this.call('GetBundles', { federated_trust_domains: federated });
  }

  private reset(): void {
    this.trustStale = false;
    for (const w of this.watches) w.cancel();
    this.watches.clear();
    this.client?.close();
    this.client = undefined;
  }

  private connect(): grpc.Client {
    if (this.client && this.trustStale && this.client.getChannel().getConnectivityState(false) !== grpc.connectivityState.READY) this.reset();
    if (this.client) return this.client;
    if (!this.trustPem && !this.opts.insecureBootstrap) {
      throw new SvidscopeError('config-invalid', 'agent: no trust bundle for the server: set trust_bundle_path or insecure_bootstrap');
    }
    const expected = `URI:${serverSpiffeId(this.opts.trustDomain).toString()}`;
    const credentials = grpc.credentials.createSsl(
      this.trustPem ? Buffer.from(this.trustPem) : null,
      this.identity ? Buffer.from(this.identity.keyPem) : null,
      this.identity ? Buffer.from(this.identity.chainPem) : null,
      {
        // Server SVIDs carry a SPIFFE ID, not a DNS name: check the URI SAN instead of the hostname.
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          if (!String(cert.subjectaltname ?? '').split(', ').includes(expected)) return new Error(`server presented ${cert.subjectaltname ?? 'no SAN'}, expected ${expected}`);
          this.lastServerChain = peerCertificateChain(cert);
          return undefined;
        },
        rejectUnauthorized: this.trustPem !== undefined,
      },
    );
    const Node = serverServices().nodeClient;
    // SNI carries the trust domain name rather than an IP address (which TLS forbids as SNI).
    // Keepalive: the long-lived WatchChanges stream must notice a server that vanished without a FIN.
    // Lenient on purpose: a saturated server answers pings late, and dropping its connections then
    // (every call on them fails, every agent handshakes again) would make the overload worse.
    this.client = new Node(this.address, credentials, { ...GRPC_BASE_OPTIONS, 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.ssl_target_name_override': this.opts.trustDomain.name,
      'grpc.keepalive_time_ms': 300_000, 'grpc.keepalive_timeout_ms': 60_000 });
    return this.client;
  }

  /**
   * One RPC. A server that cannot be reached (UNAVAILABLE: refused, reset, TLS failure) is left for
   * the next address and the call is made there, each address tried once; every server of the
   * trust domain shares the datastore and trusts the agent's SVID, so nothing is re-attested.
   * Other failures (including deadlines: the server may have done the work) are returned as is.
   */
  private async call<Res>(method: string, request: object): Promise<Res> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.callOnce<Res>(method, request);
      } catch (err) {
        // A connection the server did not authenticate stays so for its whole life (the client
        // certificate is checked once, at the handshake): one opened while the server's trust
        // bundle lacked this agent's CA (a withheld authority, a bundle not yet loaded) would
        // refuse every call after the bundle is fixed. The next call handshakes again.
        if (err instanceof ServerCallError && err.status === grpc.status.UNAUTHENTICATED) this.reset();
        const unreachable = err instanceof ServerCallError && err.status === grpc.status.UNAVAILABLE;
        if (!unreachable || this.opts.addresses.length < 2) throw err;
        const from = this.address;
        this.current = (this.current + 1) % this.opts.addresses.length;
        this.reset();
        this.opts.logger.warn({ from, to: this.address, method, err: (err as Error).message }, 'server unreachable: moving to the next server');
        this.opts.onFailover?.(from, this.address);
        if (attempt >= this.opts.addresses.length) throw err;
      }
    }
  }

  private callOnce<Res>(method: string, request: object): Promise<Res> {
    return new Promise((resolve, reject) => {
      let client: grpc.Client;
      try {
        client = this.connect();
      } catch (err) {
        return reject(err);
      }
      const fn = (client as unknown as Record<string, (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => void>)[method];
      // Carry the caller's trace context, so a workload's fetch and the server's signing are one trace.
      const metadata = new grpc.Metadata();
      injectInto((k, v) => metadata.set(k, v));
      fn.call(client, request, metadata, { deadline: Date.now() + RPC_TIMEOUT_MS }, (err, res) => {
        if (!err) return resolve(res);
        reject(new ServerCallError(err.code, codeOfServiceError(err), `server ${method}: ${err.details || err.message}`));
      });
    });
  }
}

/** Whether every certificate of `before` is also in `after` (compared as DER, however the PEM is wrapped). */
function onlyAdds(before: string, after: string): boolean {
  const kept = new Set(scanPem(after).map((b) => b.der.toString('base64')));
  return scanPem(before).every((b) => kept.has(b.der.toString('base64')));
}
