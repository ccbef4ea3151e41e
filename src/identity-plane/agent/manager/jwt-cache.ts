/** One cached JWT-SVID; times are epoch milliseconds. */
export interface CachedJwt {
  readonly token: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** The `kid` of the key that signed the token ('' if none): a tainted key's tokens are dropped. */
  readonly keyId: string;
}

/**
 * The agent's JWT-SVID cache, bounded by entry count AND by bytes: the key holds the audiences and the
 * token repeats them, so a count cap alone lets a few requests with huge audiences hold hundreds of MB.
 * Insertion order is eviction order (oldest first); a hit does not refresh it, since tokens are
 * reused only within half their lifetime anyway.
 */
export class JwtSvidCache {
  private readonly items = new Map<string, CachedJwt>();
  private used = 0;

  constructor(private readonly limits: { readonly maxEntries: number; readonly maxBytes: number }, private readonly onEvict?: () => void) {}

  /** Bytes held (UTF-16 string sizes, the memory they occupy). */
  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.items.size;
  }

  get(key: string): CachedJwt | undefined {
    return this.items.get(key);
  }

  values(): IterableIterator<CachedJwt> {
    return this.items.values();
  }

  /** Drops every token `drop` selects; returns how many. */
  deleteWhere(drop: (value: CachedJwt) => boolean): number {
    let n = 0;
    for (const [key, value] of [...this.items]) {
      if (!drop(value)) continue;
      this.delete(key);
      n++;
    }
    return n;
  }

  /** Stores the token unless it alone exceeds the byte bound; evicts the oldest until both bounds hold. */
  set(key: string, value: CachedJwt): void {
    this.delete(key);
    const cost = sizeOf(key, value);
    if (cost > this.limits.maxBytes) return;
    this.items.set(key, value);
    this.used += cost;
    while (this.items.size > this.limits.maxEntries || this.used > this.limits.maxBytes) {
      this.delete(this.items.keys().next().value!);
      this.onEvict?.();
    }
  }

  private delete(key: string): void {
    const old = this.items.get(key);
    if (!old) return;
    this.items.delete(key);
    this.used -= sizeOf(key, old);
  }
}

function sizeOf(key: string, value: CachedJwt): number {
  return 2 * (key.length + value.token.length) + 64;
}
