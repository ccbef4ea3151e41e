/**
 * SHA-256 of workload binaries for `unix:sha256` selectors, remembered per file version. Hashing is
 * the most expensive part of attestation (a 100 MB runtime takes ≈ 0.3 s), and a node runs few
 * distinct binaries many times over, so each version is hashed once.
 *
 * A version is identified by device, inode, size, mtime and ctime of the file the caller's
 * `/proc/<pid>/exe` resolves to. Rewriting the file in place changes mtime and ctime; `touch -d`
 * can set mtime back but not ctime, which only the kernel sets (to "now" on any change). Replacing
 * the file gives a new inode. So a digest is never reused for different contents.
 */
export interface FileVersion {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export const DEFAULT_DIGEST_CACHE_ENTRIES = 256;

export class BinaryDigestCache {
  /** Insertion order doubles as recency: a hit is moved to the end, the first key is the eldest. */
  private readonly digests = new Map<string, string>();

  constructor(private readonly maxEntries = DEFAULT_DIGEST_CACHE_ENTRIES) {}

  get size(): number {
    return this.digests.size;
  }

  get(version: FileVersion): string | undefined {
    const key = versionKey(version);
    const digest = this.digests.get(key);
    if (digest !== undefined) {
      this.digests.delete(key);
      this.digests.set(key, digest);
    }
    return digest;
  }

  set(version: FileVersion, digest: string): void {
    const key = versionKey(version);
    this.digests.delete(key);
    this.digests.set(key, digest);
    while (this.digests.size > this.maxEntries) this.digests.delete(this.digests.keys().next().value!);
  }
}

function versionKey(v: FileVersion): string {
  return `${v.dev}:${v.ino}:${v.size}:${v.mtimeNs}:${v.ctimeNs}`;
}
