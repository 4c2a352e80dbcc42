// Private: the rules of the Cookbook handshake that serverAuthenticate(),
// clientAuthenticate() and serve()'s own server side share: the challenge
// length (default and bounds, public through handshake.ts, and its check)
// and the server's verdict on a wrong reply.
import { checkInteger } from "./_options.ts";
import { AuthenticationError } from "./errors.ts";
import type { HashName } from "./_hmac_key.ts";

/** Default challenge length in bytes (the recipe's `os.urandom(32)`). */
export const DEFAULT_CHALLENGE_LENGTH = 32;
/** Smallest challenge length allowed. */
export const MIN_CHALLENGE_LENGTH = 16;
/** Largest challenge length allowed. */
export const MAX_CHALLENGE_LENGTH = 1024;

/**
 * Checks a `challengeLength` option: a whole number of bytes from 16 to
 * 1024; the default (32) when it is not set.
 */
export function checkChallengeLength(length: number | undefined): number {
  return checkInteger(
    length,
    DEFAULT_CHALLENGE_LENGTH,
    "challengeLength",
    [MIN_CHALLENGE_LENGTH, MAX_CHALLENGE_LENGTH],
    "a whole number of bytes",
  );
}

/**
 * The {@linkcode AuthenticationError} for a client whose reply did not
 * verify under our secret with `hash`. Built, not thrown, so that the hot
 * path pays no extra call frame or promise.
 */
export function wrongReply(hash: HashName): AuthenticationError {
  return new AuthenticationError(
    `Cannot authenticate the client: its reply does not match the challenge under our key (wrong key, or a hash other than ${hash})`,
    "wrong-key",
  );
}
