import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildServerConfig } from '../../src/identity-plane/server/config.js';
import { startServer, type RunningServer, type ServerDeps } from '../../src/identity-plane/server/server.js';
import { serverServices } from '../../src/identity-plane/server-api/services.js';
import { x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createCsr } from '../../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair, type KeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { connectAdmin, type AdminClient } from '../../src/cli/admin/client.js';

export interface TestServer {
  server: RunningServer;
  dir: string;
  admin: AdminClient;
  config: ReturnType<typeof buildServerConfig>;
  stop(): Promise<void>;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `svidscope-${prefix}-`));
}

/** Starts a real server on loopback with its own data dir; `doc` overrides config keys. */
export async function startTestServer(doc: Record<string, unknown> = {}, deps: ServerDeps = {}, dir = tempDir('server')): Promise<TestServer> {
  const config = buildServerConfig({ trust_domain: 'example.org', data_dir: dir, bind: '127.0.0.1:0', health_bind: '127.0.0.1:0', ...doc });
  const server = await startServer(config, deps);
  const admin = connectAdmin(server.adminSocket);
  return {
    server, dir, admin, config,
    stop: async () => {
      admin.close();
      await server.stop();
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface AgentIdentity {
  key: KeyPair;
  chainDer: Buffer[];
  spiffeId: string;
}

type Callback<Res> = (err: grpc.ServiceError | null, res: Res) => void;

/** A server API client as an agent would hold one: TLS to the server, its SVID as client certificate. */
export function nodeClient(address: string, bundlePem: string, identity?: AgentIdentity) {
  const Node = serverServices().nodeClient;
  const credentials = grpc.credentials.createSsl(
    Buffer.from(bundlePem),
    identity ? Buffer.from(identity.key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string) : null,
    identity ? Buffer.from(identity.chainDer.map((d) => encodePem('CERTIFICATE', d)).join('')) : null,
    {
      checkServerIdentity: (_host, cert) =>
        String(cert.subjectaltname ?? '').includes('URI:spiffe://example.org/spire/server') ? undefined : new Error(`unexpected server identity ${cert.subjectaltname}`),
    },
  );
  const client = new Node(address, credentials);
  return {
    call<Res>(method: string, request: object): Promise<Res> {
      return new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: Callback<Res>) => void>)[method];
        fn.call(client, request, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
      });
    },
    /** A unary call with the request's bytes as given (a hostile or broken agent), answering the response's bytes. */
    raw(method: string, request: Buffer): Promise<Buffer> {
      const path = (Node.service as Record<string, { path: string }>)[method]!.path;
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, request, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!)));
      });
    },
    /** A server-streaming call (WatchChanges), left to the caller to read and cancel. */
    stream<Res>(method: string, request: object): grpc.ClientReadableStream<Res> {
      const fn = (client as unknown as Record<string, (req: object) => grpc.ClientReadableStream<Res>>)[method];
      return fn.call(client, request);
    },
    close: () => client.close(),
  };
}

export function bundlePemOf(server: RunningServer): string {
  return x509BundleToPem(server.bundles.current);
}

/** Attests with a fresh join token and returns the agent's identity. */
export async function attestAgent(t: TestServer, token?: string): Promise<AgentIdentity> {
  const value = token ?? (await t.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value;
  return attestAgentAt(t.server.address, bundlePemOf(t.server), value);
}

/** Attests with `token` at a server known only by address and bundle (e.g. one running as a child process). */
export async function attestAgentAt(address: string, bundlePem: string, value: string): Promise<AgentIdentity> {
  const key = generateKeyPair('ec-p256');
  const client = nodeClient(address, bundlePem);
  try {
    const res = await client.call<{ svid: { cert_chain: Buffer[]; spiffe_id: string } }>('AttestAgent', { attestation_type: 'join_token', payload: Buffer.from(value), csr: createCsr(key.privateKey, key.publicKey) });
    return { key, chainDer: res.svid.cert_chain, spiffeId: res.svid.spiffe_id };
  } finally {
    client.close();
  }
}
