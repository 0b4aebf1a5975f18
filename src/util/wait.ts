/** Waiting for a condition with a deadline, instead of sleeping. */

/**
 * Poll `cond` every `intervalMs` until it returns true.
 * @param what names the condition in the timeout error
 * @throws Error `timed out after N ms waiting for <what>` (with the last error cond threw, if any)
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await cond()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
