/**
 * A value as a problem quotes it: JSON for strings and structures, plain text for numbers (JSON
 * would print NaN as null), cut short so a long value does not swamp the message.
 */
export function shown(v: unknown): string {
  const text = typeof v === 'number' || v === undefined ? String(v) : (JSON.stringify(v) ?? String(v));
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}
