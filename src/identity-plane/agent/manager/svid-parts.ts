/**
 * The agent's per-SVID work on the rotation path, kept to a few microseconds each: a workload key
 * and its PKCS#8 encoding, and what the cache needs from a minted chain. Node's PKCS#8 export and
 * X509Certificate + ASN.1 decoding cost 0.1–1.3 ms per SVID on Node 20 with OpenSSL 3 (encoder
 * and decoder lookups per call), which made rotating 10,000 SVIDs take seconds on the agent alone.
 */
import { readCertificateInfo } from '../../spiffe/mint/index.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';


/** What the cache keeps of a minted chain. */
export interface ChainFacts {
  /** The leaf in a buffer of its own, then the CA certificates shared with other SVIDs of the same chain. */
  chain: Buffer[];
  notBefore: number;
  notAfter: number;
  /** As chainAuthorityIds: the leaf's authority key id, then each CA's subject and authority key ids (hex). */
  authorityIds: readonly string[];
}

/**
 * Reads minted chains for the cache. Every SVID of a batch (and of most batches) has the same CA
 * chain after its leaf: it is decoded once and its buffers shared, so 10,000 cached SVIDs hold one
 * copy of it, not 10,000.
 */
export class ChainReader {
  private tail: { ders: Buffer[]; ids: string[] } | undefined;

  read(chainDer: readonly Buffer[]): ChainFacts {
    if (chainDer.length === 0) throw new SvidscopeError('empty-chain', 'agent: the server answered an X509-SVID with an empty certificate chain');
    const leaf = readCertificateInfo(chainDer[0]);
    const tail = this.tailOf(chainDer);
    return {
      chain: [Buffer.from(chainDer[0]), ...tail.ders],
      notBefore: leaf.notBefore.getTime(),
      notAfter: leaf.notAfter.getTime(),
      authorityIds: [leaf.authorityKeyId?.toString('hex') ?? '', ...tail.ids],
    };
  }

  private tailOf(chainDer: readonly Buffer[]): { ders: Buffer[]; ids: string[] } {
    const rest = chainDer.slice(1);
    const known = this.tail;
    if (known && known.ders.length === rest.length && known.ders.every((d, i) => d.equals(rest[i]))) return known;
    const ids: string[] = [];
    for (const der of rest) {
      const info = readCertificateInfo(der);
      if (info.subjectKeyId) ids.push(info.subjectKeyId.toString('hex'));
      if (info.authorityKeyId) ids.push(info.authorityKeyId.toString('hex'));
    }
    this.tail = { ders: rest.map((d) => Buffer.from(d)), ids };
    return this.tail;
  }
}
