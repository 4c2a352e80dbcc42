/**
 * Errors that connauth throws for conditions callers want to catch.
 *
 * - {@linkcode AuthenticationError}: the peer did not prove it holds the key
 *   (or refused our proof).
 * - {@linkcode ProtocolError}: the peer sent something the protocol does not
 *   allow: a short reply, an oversized length, garbage, an early close.
 *
 * Deadlines and cancellation reject with the `DOMException` that the signal
 * carries (`TimeoutError` or `AbortError`). Socket failures (reset, broken
 * pipe) propagate as the runtime's own errors. No message ever contains key
 * material, a digest or a challenge.
 *
 * @example Telling failures apart
 * ```ts
 * import assert from "node:assert/strict";
 * import { AuthenticationError, ProtocolError } from "./errors.ts";
 *
 * function describe(error: unknown): string {
 *   if (error instanceof AuthenticationError) return `rejected: ${error.reason}`;
 *   if (error instanceof ProtocolError) return `malformed: ${error.reason}`;
 *   if (error instanceof DOMException && error.name === "TimeoutError") {
 *     return "timed out";
 *   }
 *   return "other";
 * }
 * assert.equal(
 *   describe(new AuthenticationError("Cannot authenticate: wrong key")),
 *   "rejected: wrong-key",
 * );
 * assert.equal(
 *   describe(new ProtocolError("Cannot read: short", "closed")),
 *   "malformed: closed",
 * );
 * ```
 *
 * @module
 */

/**
 * Why an authentication failed.
 *
 * - `"wrong-key"`: the peer's proof did not verify under our key.
 * - `"rejected"`: the peer told us (or showed by closing) that it refused our
 *   proof.
 * - `"unsupported"`: the peer asked for an algorithm we do not allow.
 * - `"wrong-hash"`: the peer's proof is shorter than our digest and stops at
 *   the length of another hash's (16 bytes: MD5, Python's `hmac.new`
 *   default before 3.8): a hash mismatch, whatever the key.
 * - `"tls-client"`: the peer started a TLS handshake where the proof was
 *   expected: it speaks TLS to a server that does not.
 */
export type AuthenticationFailure =
  | "wrong-key"
  | "rejected"
  | "unsupported"
  | "wrong-hash"
  | "tls-client";

/**
 * Why a peer's input was refused.
 *
 * - `"closed"`: the peer closed the connection before sending all the bytes
 *   the protocol needs.
 * - `"too-large"`: a length or size over the configured limit.
 * - `"malformed"`: bytes that do not fit the protocol.
 */
export type ProtocolFailure = "closed" | "too-large" | "malformed";

/**
 * The peer did not prove it knows the shared key, or refused our proof.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AuthenticationError } from "./errors.ts";
 *
 * const error = new AuthenticationError(
 *   "Cannot authenticate: the digest does not match the key",
 *   "wrong-key",
 * );
 * assert.equal(error.name, "AuthenticationError");
 * assert.equal(error.reason, "wrong-key");
 * assert.ok(error instanceof Error);
 * ```
 */
export class AuthenticationError extends Error {
  /** Machine-readable cause, for logs and metrics. */
  readonly reason: AuthenticationFailure;

  /**
   * Creates an authentication error.
   *
   * @param message A sentence-case message with no secret in it.
   * @param reason The machine-readable cause.
   * @param options The standard error options (`cause`).
   */
  constructor(
    message: string,
    reason: AuthenticationFailure = "wrong-key",
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "AuthenticationError";
    this.reason = reason;
  }
}

/**
 * The peer sent input the protocol does not allow, or closed too early.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError } from "./errors.ts";
 *
 * const error = new ProtocolError(
 *   "Cannot read the reply: the peer closed the connection after 3 of 32 bytes",
 *   "closed",
 * );
 * assert.equal(error.name, "ProtocolError");
 * assert.equal(error.reason, "closed");
 * assert.equal(new ProtocolError("Cannot parse: garbage").reason, "malformed");
 * ```
 */
export class ProtocolError extends Error {
  /** Machine-readable cause, for logs and metrics. */
  readonly reason: ProtocolFailure;

  /**
   * Creates a protocol error.
   *
   * @param message A sentence-case message with no secret in it.
   * @param reason The machine-readable cause.
   * @param options The standard error options (`cause`).
   */
  constructor(
    message: string,
    reason: ProtocolFailure = "malformed",
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ProtocolError";
    this.reason = reason;
  }
}
