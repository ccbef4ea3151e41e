/**
 * SVIDs and bundles on disk, as SVID helpers write them (svid.pem, bundle.pem, SPIFFE JSON or JWKS
 * bundles): files, or directories read recursively. Polled on the Clock; a file is parsed again
 * only when its size or mtime changed, so a poll over many unchanged files costs one stat each.
 * A file whose first certificate is a SPIFFE leaf is an SVID (slot = its path); a file of CA
 * certificates, a SPIFFE bundle or a JWKS is a bundle (trust domain from the CA's SPIFFE URI, or
 * the source's `trust_domain`). Other files (keys, READMEs) are skipped.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isSvidscopeError, SvidscopeError } from '../../common/errors/catalog.js';
import { parseJwtBundle, parseSpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { parseTrustDomain, type TrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { isPem, parseCertificates } from '../../identity-plane/spiffe/x509/index.js';
import type { FilesSourceConfig } from '../config.js';
import type { ObservedBundle, ObservedSvid, ObservedX509Authority } from '../state.js';
import { authorityOf, bundleOf, reasonOf, spiffeIdOf, svidOf, trustDomainOf } from './convert.js';
import { polledSource } from './poller.js';
import type { Source, SourceContext } from './types.js';

const EXTENSIONS = new Set(['.pem', '.crt', '.cer', '.cert', '.der', '.json', '.jwks']);
const MAX_FILE_BYTES = 1 << 20;
const STAT_BATCH = 64;

interface Parsed {
  readonly svid?: ObservedSvid;
  readonly bundle?: ObservedBundle;
}

interface Cached {
  readonly mtimeMs: number;
  readonly size: number;
  readonly parsed: Parsed;
}

/** Parses one file's content; undefined when it holds nothing the exporter reads. */
export function parseCredentialFile(file: string, data: Buffer, fallbackTd: TrustDomain | undefined): Parsed {
  const text = data.subarray(0, 64).toString('utf8').trimStart();
  if (text.startsWith('{')) {
    const doc = JSON.parse(data.toString('utf8')) as { keys?: { use?: unknown; x5c?: unknown }[] };
    const spiffe = Array.isArray(doc.keys) && doc.keys.some((k) => k && typeof k === 'object' && 'use' in k);
    const x5c = doc.keys?.find((k) => Array.isArray(k?.x5c) && k.x5c.length > 0)?.x5c as string[] | undefined;
    const fromCert = x5c ? spiffeIdOf(parseCertificates(Buffer.from(x5c[0], 'base64'), { format: 'der' })[0]) : undefined;
    const td = fallbackTd ?? (fromCert ? parseTrustDomain(trustDomainOf(fromCert)) : undefined);
    if (!td) throw new SvidscopeError('usage', `${file}: cannot tell the bundle's trust domain: set trust_domain on the source`);
    if (spiffe) return { bundle: bundleOf(parseSpiffeBundle(td, data), { x509: true, jwt: true }) };
    return { bundle: { trustDomain: td.name, jwtKeyIds: [...parseJwtBundle(td, data).jwtAuthorities.keys()] } };
  }
  if (isPem(data) && !data.includes('-----BEGIN CERTIFICATE-----')) return {}; // a key, a CSR
  const certs = parseCertificates(data, { format: isPem(data) ? 'pem' : 'der' });
  if (certs.length === 0) return {};
  if (!certs[0].ca) {
    const svid = svidOf(file, certs[0]);
    return svid ? { svid } : {};
  }
  const uri = certs.map(spiffeIdOf).find((u) => u !== undefined);
  const td = uri ? trustDomainOf(uri) : fallbackTd?.name;
  if (!td) throw new SvidscopeError('usage', `${file}: CA certificates without a SPIFFE URI: set trust_domain on the source`);
  return { bundle: { trustDomain: td, x509: certs.map(authorityOf) } };
}

/** Several files of one trust domain make one bundle: the union of what they hold. */
function mergeBundles(parts: ObservedBundle[]): ObservedBundle[] {
  const byTd = new Map<string, { x509?: Map<string, ObservedX509Authority>; jwt?: Set<string>; sequence?: bigint; refreshHintSeconds?: number }>();
  for (const b of parts) {
    let m = byTd.get(b.trustDomain);
    if (!m) byTd.set(b.trustDomain, (m = {}));
    if (b.x509) {
      m.x509 ??= new Map();
      for (const a of b.x509) m.x509.set(a.fingerprint, a);
    }
    if (b.jwtKeyIds) {
      m.jwt ??= new Set();
      for (const k of b.jwtKeyIds) m.jwt.add(k);
    }
    if (b.sequence !== undefined && (m.sequence === undefined || b.sequence > m.sequence)) m.sequence = b.sequence;
    m.refreshHintSeconds ??= b.refreshHintSeconds;
  }
  return [...byTd].map(([trustDomain, m]) => ({
    trustDomain, sequence: m.sequence, refreshHintSeconds: m.refreshHintSeconds,
    x509: m.x509 ? [...m.x509.values()] : undefined, jwtKeyIds: m.jwt ? [...m.jwt] : undefined,
  }));
}

async function listFiles(roots: readonly string[], max: number): Promise<{ files: string[]; truncated: boolean }> {
  const files: string[] = [];
  const queue: string[] = [];
  for (const root of roots) {
    const st = await stat(root);
    if (st.isDirectory()) queue.push(root);
    else files.push(root);
  }
  while (queue.length > 0) {
    const dir = queue.shift()!;
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, d.name);
      if (d.isDirectory()) queue.push(full);
      else if (d.isFile() && EXTENSIONS.has(path.extname(d.name).toLowerCase())) {
        if (files.length >= max) return { files, truncated: true };
        files.push(full);
      }
    }
  }
  return { files, truncated: false };
}

export function createFilesSource(config: FilesSourceConfig, ctx: SourceContext): Source {
  let cache = new Map<string, Cached>();

  async function poll(): Promise<void> {
    let listing: { files: string[]; truncated: boolean };
    try {
      listing = await listFiles(config.paths, config.maxFiles);
    } catch (err) {
      ctx.fail(reasonOf(err), err);
      return;
    }
    if (listing.truncated) ctx.itemError('limit', new Error(`more than max_files (${config.maxFiles}) files; the rest are ignored`));
    const next = new Map<string, Cached>();
    for (let i = 0; i < listing.files.length; i += STAT_BATCH) {
      await Promise.all(listing.files.slice(i, i + STAT_BATCH).map(async (file) => {
        try {
          const st = await stat(file);
          const old = cache.get(file);
          if (old && old.mtimeMs === st.mtimeMs && old.size === st.size) return void next.set(file, old);
          if (st.size > MAX_FILE_BYTES) throw new SvidscopeError('input-too-large', `${file}: larger than ${MAX_FILE_BYTES} bytes`);
          const parsed = parseCredentialFile(file, await readFile(file), config.trustDomain);
          next.set(file, { mtimeMs: st.mtimeMs, size: st.size, parsed });
        } catch (err) {
          // Counted once per version of the file; it vanished between list and read: not an error.
          if ((err as { code?: unknown }).code === 'ENOENT') return;
          ctx.itemError(isSvidscopeError(err) && err.code === 'input-too-large' ? 'limit' : reasonOf(err), err);
          ctx.logger.debug({ source: config.name, file, err: (err as Error).message }, 'file skipped');
          const st = await stat(file).catch(() => undefined);
          if (st) next.set(file, { mtimeMs: st.mtimeMs, size: st.size, parsed: {} });
        }
      }));
    }
    cache = next;
    const svids: ObservedSvid[] = [];
    const bundles: ObservedBundle[] = [];
    for (const { parsed } of next.values()) {
      if (parsed.svid) svids.push(parsed.svid);
      if (parsed.bundle) bundles.push(parsed.bundle);
    }
    ctx.observe({ svids, bundles: mergeBundles(bundles) });
  }

  return polledSource(config.name, ctx.clock, config.intervalSeconds, poll);
}
