import { createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import { writeFileAtomic } from '../../../common/fs/atomic.js';

export type KeyKind = 'x509' | 'jwt';
export type KeyPhase = 'prepared' | 'active' | 'old';

/** One signing key of the server: an X.509 CA (with its certificate chain) or a JWT key. */
export interface KeySlot {
  readonly id: string;
  readonly kind: KeyKind;
  phase: KeyPhase;
  readonly notBefore: number; // ms since epoch
  readonly notAfter: number;
  /** X.509 CA only: the CA certificate then its chain up to (not including) the bundle root, DER base64. */
  readonly chain?: string[];
  /** JWT only: the public key, SPKI DER base64. */
  readonly publicKeySpki?: string;
  /**
   * Withheld from the trust bundle by an operator (game days: a "bad rotation"). The key keeps its
   * phase and, when active, keeps signing; only its publication stops. Absent = published.
   * Persisted in the journal, so it survives restarts until published again.
   */
  withheld?: boolean;
  /**
   * Marked compromised by an operator: agents replace every SVID it signed at once, and it may
   * then be revoked (removed from the journal and the bundle). Absent = not tainted.
   */
  tainted?: boolean;
  /** Revoked after taint: out of the bundle for good; dropped with the journal entry at expiry. */
  revoked?: boolean;
  /** When it was tainted / revoked (ms since epoch): the start of the response the exporter times. */
  taintedAt?: number;
  revokedAt?: number;
  readonly privateKey: KeyObject;
}

/**
 * An upstream X.509 authority (a root or intermediate in the bundle that this server's CAs are,
 * or were, signed under) an operator tainted or revoked by its subject key identifier. The server
 * holds no key for it, so the record keeps the certificate: agents match chains against it, and
 * the publisher takes its CA key record out of the bundle once revoked.
 */
export interface UpstreamRecord {
  /** subjectKeyIdentifier, lower-case hex. */
  readonly subjectKeyId: string;
  /** DER, base64. */
  readonly certificate: string;
  readonly notAfter: number;
  tainted: boolean;
  taintedAt: number;
  revoked?: boolean;
  revokedAt?: number;
}

interface JournalFile {
  version: 1;
  slots: Omit<KeySlot, 'privateKey'>[];
  /** Absent in journals written before upstream authorities could be tainted. */
  upstream?: UpstreamRecord[];
}

/**
 * The CA journal: which keys this server holds and their phases, on disk under `<dir>`:
 * `journal.json` plus one `keys/<id>.pem` per private key, every file 0600 and written
 * atomically. A key file is written before the journal entry that names it, so a crash in
 * between leaves at worst an orphan key file (removed at the next load), never a journal that
 * points at a missing key.
 */
export class KeyJournal {
  constructor(private readonly dir: string) {}

  private get journalFile(): string {
    return path.join(this.dir, 'journal.json');
  }
  private keyFile(id: string): string {
    return path.join(this.dir, 'keys', `${id}.pem`);
  }

  /** The slots with their keys, and the upstream authorities an operator marked. */
  load(): { slots: KeySlot[]; upstream: UpstreamRecord[] } {
    if (!existsSync(this.journalFile)) return { slots: [], upstream: [] };
    let doc: JournalFile;
    try {
      doc = JSON.parse(readFileSync(this.journalFile, 'utf8')) as JournalFile;
    } catch (err) {
      throw new SvidscopeError('internal', `ca: journal ${this.journalFile} is unreadable; restore it from backup`, { cause: err });
    }
    const slots = doc.slots.map((s) => ({ ...s, privateKey: this.readKey(s.id) }));
    this.removeOrphanKeys(new Set(slots.map((s) => s.id)));
    return { slots, upstream: doc.upstream ?? [] };
  }

  /** Persists a new key, then the journal that names it. */
  addKey(id: string, privateKey: KeyObject): void {
    writeFileAtomic(this.keyFile(id), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  }

  save(slots: readonly KeySlot[], upstream: readonly UpstreamRecord[] = []): void {
    const doc: JournalFile = { version: 1, slots: slots.map(({ privateKey: _k, ...rest }) => rest), ...(upstream.length ? { upstream: [...upstream] } : {}) };
    writeFileAtomic(this.journalFile, JSON.stringify(doc, null, 2));
    this.removeOrphanKeys(new Set(slots.map((s) => s.id)));
  }

  private readKey(id: string): KeyObject {
    try {
      return createPrivateKey(readFileSync(this.keyFile(id)));
    } catch (err) {
      throw new SvidscopeError('internal', `ca: key file for ${id} is missing or unreadable; restore ${this.keyFile(id)} from backup`, { cause: err });
    }
  }

  private removeOrphanKeys(keep: Set<string>): void {
    const keysDir = path.join(this.dir, 'keys');
    if (!existsSync(keysDir)) return;
    for (const name of readdirSync(keysDir)) {
      const id = name.replace(/\.pem$/, '');
      if (name.endsWith('.pem') && !keep.has(id)) unlinkSync(path.join(keysDir, name));
    }
  }
}
