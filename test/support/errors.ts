/** The catalogue code (docs/errors.md) of a thrown error; anything without a string code is rethrown: a crash is not a refusal. */
function codeFrom(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') throw err;
  return code;
}

/** Runs `fn` and returns the catalogue code of what it threw, or undefined when it did not throw. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return codeFrom(err);
  }
}

/** The catalogue code `p` rejects with, or undefined when it resolves. */
export async function codeOfAsync(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return codeFrom(err);
  }
}
