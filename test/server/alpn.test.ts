import * as grpc from '@grpc/grpc-js';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withH2AlpnCallback } from '../../src/common/grpc-options.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/pem.js';
import { attestAgent, bundlePemOf, removeDir, startTestServer, type AgentIdentity, type TestServer } from '../support/server.js';

// The node API picks HTTP/2 through an ALPN callback (no per-connection copy of a protocol list;
// see withH2AlpnCallback). What a client sees must not change: h2 when offered, a refusal when not.
describe('node API ALPN', () => {
  let t: TestServer;
  let agent: AgentIdentity;
  beforeAll(async () => {
    t = await startTestServer();
    // Over gRPC, so over this very ALPN path: attestation working is the first check.
    agent = await attestAgent(t);
  });
  afterAll(async () => {
    await t.stop();
    removeDir(t.dir);
  });

  const handshake = (protocols: string[]): Promise<string | false | null> => {
    const colon = t.server.address.lastIndexOf(':');
    const [host, port] = [t.server.address.slice(0, colon), Number(t.server.address.slice(colon + 1))];
    return new Promise((resolve, reject) => {
      const cert = agent.chainDer.map((der) => encodePem('CERTIFICATE', der)).join('');
      const socket = tls.connect({ host, port, ca: bundlePemOf(t.server), key: agent.key.privateKey.export({ type: 'pkcs8', format: 'pem' }), cert, ALPNProtocols: protocols, checkServerIdentity: () => undefined }, () => {
        const chosen = socket.alpnProtocol;
        socket.destroy();
        resolve(chosen);
      });
      socket.once('error', reject);
    });
  };

  it('chooses h2 when the client offers it among others', async () => {
    expect(await handshake(['http/1.1', 'h2'])).toBe('h2');
  });

  it('refuses a client that offers only other protocols, naming the missing application protocol', async () => {
    await expect(handshake(['http/1.1'])).rejects.toMatchObject({ code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL' });
  });

  it('serves gRPC: an agent attested through it', () => {
    expect(agent.spiffeId).toMatch(/^spiffe:\/\/example\.org\/spire\/agent\/join_token\//);
  });
});

describe('withH2AlpnCallback', () => {
  it('replaces a protocol list with a callback that picks h2, and leaves plaintext credentials alone', () => {
    const secure = grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from('k'), cert_chain: Buffer.from('c') }]);
    const options = withH2AlpnCallback(secure)._getConstructorOptions()!;
    expect(options).not.toHaveProperty('ALPNProtocols');
    const pick = options.ALPNCallback as (arg: { servername: string; protocols: string[] }) => string | undefined;
    expect(pick({ servername: 'x', protocols: ['http/1.1', 'h2'] })).toBe('h2');
    expect(pick({ servername: 'x', protocols: ['http/1.1'] })).toBeUndefined();
    const insecure = grpc.ServerCredentials.createInsecure();
    expect(withH2AlpnCallback(insecure)._getConstructorOptions()).toBeNull();
  });
});
