/** Assertions the tests share beyond node:assert. */
import assert from 'node:assert/strict';

/**
 * Assert that `fn` throws an Error whose message matches `re`.
 * assert.throws with a RegExp tests it against `Error: message`; this tests
 * the message itself, so `^` and `$` (with `m`, each line's) mean what they say.
 */
export function throwsMessage(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, re);
    return true;
  });
}
