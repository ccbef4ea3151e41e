import { createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { encodePem, parseCertificates } from '../spiffe/x509/index.js';

export interface StoredAgentSvid {
  chainDer: Buffer[];
  privateKey: KeyObject;
  /** The last SPIFFE bundle document of the agent's trust domain (trust anchors for the next start). */
  bundleDocument: Buffer;
}

/**
 * The agent's own SVID, key and last bundle on disk (each file 0600, written atomically), so a
 * restart needs no new join token and trusts the server it knew. The key is written first: a crash
 * between files leaves a key without its certificate (ignored) rather than the reverse.
 */
export class AgentSvidStore {
  constructor(private readonly dir: string) {}

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  load(): StoredAgentSvid | undefined {
    const [svid, key, bundle] = ['agent_svid.pem', 'agent_svid.key', 'bundle.json'].map((n) => this.file(n));
    if (![svid, key, bundle].every((f) => existsSync(f))) return undefined;
    try {
      return {
        chainDer: parseCertificates(readFileSync(svid)).map((c) => c.raw),
        privateKey: createPrivateKey(readFileSync(key)),
        bundleDocument: readFileSync(bundle),
      };
    } catch {
      return undefined; // unreadable state is treated as none: the agent attests again
    }
  }

  save(svid: { chainDer: Buffer[]; privateKey: KeyObject }): void {
    writeFileAtomic(this.file('agent_svid.key'), svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    writeFileAtomic(this.file('agent_svid.pem'), svid.chainDer.map((d) => encodePem('CERTIFICATE', d)).join(''));
  }

  saveBundle(document: Buffer): void {
    writeFileAtomic(this.file('bundle.json'), document);
  }

  /** Forgets the SVID (after eviction); the bundle stays as the trust anchor for re-attestation. */
  clear(): void {
    for (const n of ['agent_svid.pem', 'agent_svid.key']) rmSync(this.file(n), { force: true });
  }
}
