// Private: the rules of xmlrpc.ts that its encoder, decoder, handler and
// client share: the `<int>` and `<i8>` ranges, the characters XML 1.0 can carry, method
// names, the default limits and the check of `maxDepth`, and how a text is
// quoted in a message.

import { checkLimit } from "./_options.ts";

/** Smallest `<int>`. */
export const INT_MIN = -2147483648;
/** Largest `<int>`. */
export const INT_MAX = 2147483647;

/** Smallest `<i8>`: -2^63. */
export const I8_MIN = -(2n ** 63n);
/** Largest `<i8>`: 2^63 - 1. */
export const I8_MAX = 2n ** 63n - 1n;
/** `<int>`'s range as bigints, for checking a bigint or decoded text. */
export const INT_RANGE: readonly [bigint, bigint] = [
  BigInt(INT_MIN),
  BigInt(INT_MAX),
];
/** `<i8>`'s range. */
export const I8_RANGE: readonly [bigint, bigint] = [I8_MIN, I8_MAX];

/**
 * Characters XML 1.0 cannot carry, even as a character reference. Lone
 * surrogates never come from a fatal TextDecoder; strings we encode are
 * checked with isWellFormed().
 */
export const FORBIDDEN_CHARS =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/** A method name we send or accept: 1 to 256 of A-Z a-z 0-9 _ . : / */
export const METHOD_NAME = /^[A-Za-z0-9_.:/]{1,256}$/;

/** Default maximum body size, in bytes: 1 MiB. */
export const DEFAULT_MAX_BODY_SIZE = 1024 * 1024;

/** Default maximum nesting of arrays and structs. */
export const DEFAULT_MAX_DEPTH = 64;

// The encoder and the decoder recurse once per level: keep far below the
// engine's stack.
const MAX_MAX_DEPTH = 1000;

/**
 * Checks a `maxDepth` option: a limit (see _options.ts) of at most 1000,
 * so `Infinity` is refused; `DEFAULT_MAX_DEPTH` when unset.
 */
export function checkMaxDepth(value: number | undefined): number {
  const depth = checkLimit(value, DEFAULT_MAX_DEPTH, "maxDepth");
  if (depth > MAX_MAX_DEPTH) {
    throw new RangeError(
      `Cannot use maxDepth: expected at most ${MAX_MAX_DEPTH} (the encoder and decoder recurse once per level), got ${depth}`,
    );
  }
  return depth;
}

/** `text` quoted for a message, cut after 40 characters. */
export function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}
