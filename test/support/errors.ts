/**
 * Runs `fn` and returns the catalogue code of what it threw (docs/errors.md), or undefined when it
 * did not throw. An error without a string code is rethrown: a crash is not a refusal.
 */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string') throw err;
    return code;
  }
}
