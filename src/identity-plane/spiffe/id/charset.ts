// Character classes of the SPIFFE-ID standard, as 128-entry lookup tables: the parser walks
// bytes against them instead of building a URL object (this is on every verification path).

function table(allowed: string): Uint8Array {
  const t = new Uint8Array(128);
  for (const c of allowed) t[c.charCodeAt(0)] = 1;
  return t;
}

const lower = 'abcdefghijklmnopqrstuvwxyz';
const digits = '0123456789';
const trustDomainChars = table(lower + digits + '.-_');
const pathChars = table(lower + lower.toUpperCase() + digits + '.-_');

export function isTrustDomainChar(code: number): boolean {
  return code < 128 && trustDomainChars[code] === 1;
}

export function isPathChar(code: number): boolean {
  return code < 128 && pathChars[code] === 1;
}
