/**
 * The Cookbook HMAC challenge-response, byte for byte.
 *
 * On connect the server sends a random challenge (32 bytes by default); the
 * client answers with the raw HMAC digest of the challenge under the shared
 * key; the server verifies it in constant time and then either goes on with
 * the connection or closes it. There is no framing, no version byte and no
 * verdict on the wire, exactly as in the recipe, so Python peers written from
 * it talk to these functions unchanged.
 *
 * This proves the client knows the key. It does not encrypt: everything after
 * the handshake is plaintext and can be read or hijacked on the path. Run it
 * inside TLS (`tls.ts`) or use the Noise channel (`noise.ts`) when that
 * matters.
 *
 * This module also exports what the secret becomes: {@linkcode HmacKey} (a
 * secret imported once and reused), {@linkcode parseHashName}, and the
 * {@linkcode HashName} and {@linkcode SecretInput} types.
 *
 * @example Both sides over loopback
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientAuthenticate, serverAuthenticate } from "./handshake.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
 *   listener.accept(),
 * ]);
 * await Promise.all([
 *   serverAuthenticate(server, "peanut butter"),
 *   clientAuthenticate(client, "peanut butter"),
 * ]);
 * // What the client sends next is the application's.
 * await client.write(new TextEncoder().encode("hi"));
 * const bytes = new Uint8Array(2);
 * assert.equal(await server.read(bytes), 2);
 * assert.equal(new TextDecoder().decode(bytes), "hi");
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import { checkTimeout } from "./_options.ts";
import { deadline, DEFAULT_TIMEOUT } from "./_deadline.ts";
import { raceSignal } from "./_deadline.ts";
import {
  closedEarly,
  isDenoConnLike,
  readExact,
  readExactOrEof,
  writeAll,
} from "./_conn_io.ts";
import {
  checkChallengeLength,
  noChallenge,
  readRestOfReply,
  wrongReply,
} from "./_cookbook.ts";
import { type HashName, HmacKey, type SecretInput } from "./_hmac_key.ts";
import { HmacKeyRing, type ServerSecret } from "./_hmac_keyring.ts";
import type { Duplex } from "./types.ts";

export {
  DIGEST_LENGTH,
  type HashName,
  HmacKey,
  type HmacKeyOptions,
  parseHashName,
  type SecretInput,
} from "./_hmac_key.ts";
export { MAX_SECRETS, type ServerSecret } from "./_hmac_keyring.ts";
export {
  DEFAULT_CHALLENGE_LENGTH,
  MAX_CHALLENGE_LENGTH,
  MIN_CHALLENGE_LENGTH,
} from "./_cookbook.ts";

/** Options shared by {@linkcode serverAuthenticate} and {@linkcode clientAuthenticate}. */
export interface AuthenticateOptions {
  /**
   * The HMAC hash; both sides must agree. Ignored when the key is a
   * `CryptoKey` or {@linkcode HmacKey} (their own hash is used) unless it
   * contradicts it, which is a `TypeError`. `"MD5"` is legacy, for old Python
   * peers only.
   *
   * @default {"SHA-256"}
   */
  hash?: HashName;
  /**
   * Challenge length in bytes; both sides must agree. From 16 to 1024.
   *
   * @default {32}
   */
  challengeLength?: number;
  /**
   * Deadline for the whole handshake, in milliseconds (`Infinity` for none).
   * A peer that stalls gets a `TimeoutError` `DOMException`.
   *
   * @default {10000}
   */
  timeout?: number;
  /** Aborts the handshake; it rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** What {@linkcode serverAuthenticate} resolves to. */
export interface ServerAuthenticateResult {
  /**
   * Which of the server's secrets the client proved, as an index into the
   * list given (0 for the first, and for a single secret).
   */
  readonly secretIndex: number;
}

/** What a side needs once the options are checked. */
interface Side<K> extends Disposable {
  /** The imported secret (or, for a server, secrets). */
  readonly key: K;
  /** Aborts at the deadline (`timeout`) or when the caller's signal does. */
  readonly signal: AbortSignal;
}

/**
 * Checks `timeout`, imports the secret with `load` and starts the deadline
 * (disposing of the side clears its timer). The caller checks
 * `challengeLength` first.
 */
async function start<K>(
  load: () => Promise<K>,
  options: AuthenticateOptions,
  action: string,
): Promise<Side<K>> {
  const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
  const key = await load();
  const limit = deadline(timeout, options.signal, action);
  return {
    key,
    signal: limit.signal,
    [Symbol.dispose]: () => limit[Symbol.dispose](),
  };
}

/**
 * Authenticates the client on a freshly accepted connection (the server side).
 *
 * Sends a challenge of fresh random bytes from `crypto.getRandomValues`, reads
 * exactly one digest back and verifies it with `crypto.subtle.verify`
 * (constant time). Bytes the client sent after its digest stay unread for
 * the application (`conn.read` or `conn.readable`; a `Deno.Conn` is read with
 * its own `read` into a sized buffer, other duplex streams with BYOB reads).
 * The connection is never closed here: on any failure the caller closes it,
 * as the recipe does (after a timeout a read may still be pending on it).
 *
 * Key rotation: give a list of secrets (the current one first, then the
 * ones clients may still use; at most {@linkcode MAX_SECRETS}, all for one
 * hash) and the reply is checked against every one of them, all of them
 * whichever matches, so the time taken does not tell which did; the result
 * says which one the client proved. Import them once with
 * {@linkcode HmacKey.import} when authenticating many clients.
 *
 * | outcome | result |
 * | --- | --- |
 * | right key (any of the list) | resolves to `{ secretIndex }` |
 * | wrong key, or a hash with a digest at least as long as ours | {@linkcode AuthenticationError}, reason `"wrong-key"` |
 * | a TLS ClientHello where the digest was expected | {@linkcode AuthenticationError}, reason `"tls-client"` |
 * | a reply that stops short at another hash's digest length (16 bytes: MD5, Python's `hmac.new` default before 3.8; 20: SHA-1) and then nothing for 1000 ms, or a close | {@linkcode AuthenticationError}, reason `"wrong-hash"`, naming the hash and the fix |
 * | peer closes before a whole digest (short reply) | {@linkcode ProtocolError}, reason `"closed"` |
 * | peer stalls past `timeout` | `DOMException` `TimeoutError` |
 * | `signal` aborts | the signal's reason (`AbortError` by default) |
 * | socket error (reset) | the runtime's error, e.g. `Deno.errors.ConnectionReset` |
 *
 * (A short reply is recognised on a `Deno.Conn`; on stream-only connections
 * it waits for the deadline.) No error message contains the key, the
 * challenge or a digest.
 *
 * @param conn The connection, a `Deno.Conn` or any {@linkcode Duplex}.
 * @param secret The shared secret, or a list of them for key rotation; an
 * {@linkcode HmacKey} avoids re-importing it.
 * @param options Hash, challenge length, deadline and signal.
 * @returns Which secret the client proved.
 * @throws {AuthenticationError} When the client's digest is wrong.
 * @throws {ProtocolError} When the client closes before sending a digest.
 * @throws {TypeError} When a key is empty or of the wrong type (a
 * `CryptoKey` must have the `verify` usage), the list is empty, or its keys
 * are for different hashes.
 * @throws {RangeError} When `challengeLength` or `timeout` is out of range,
 * or the list holds more than {@linkcode MAX_SECRETS} keys.
 *
 * @example A wrong digest
 * ```ts
 * import assert from "node:assert/strict";
 * import { AuthenticationError } from "./errors.ts";
 * import { HmacKey, serverAuthenticate } from "./handshake.ts";
 *
 * const key = await HmacKey.import("peanut butter");
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = await Deno.connect({ port: listener.addr.port });
 * using conn = await listener.accept();
 * // This client sends garbage instead of the digest.
 * await client.write(new Uint8Array(32));
 * await assert.rejects(
 *   serverAuthenticate(conn, key, { timeout: 5000 }),
 *   (error) => error instanceof AuthenticationError &&
 *     error.reason === "wrong-key",
 * );
 * ```
 *
 * @example Key rotation: the new key first, the old one still accepted
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientAuthenticate, serverAuthenticate } from "./handshake.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = await Deno.connect({ port: listener.addr.port });
 * using server = await listener.accept();
 * const [result] = await Promise.all([
 *   serverAuthenticate(server, ["new key", "old key"]),
 *   clientAuthenticate(client, "old key"),
 * ]);
 * assert.equal(result.secretIndex, 1);
 * ```
 */
export async function serverAuthenticate(
  conn: Duplex,
  secret: ServerSecret,
  options?: AuthenticateOptions,
): Promise<ServerAuthenticateResult> {
  options ??= {};
  const challenge = new Uint8Array(
    checkChallengeLength(options.challengeLength),
  );
  using side = await start(
    () => HmacKeyRing.import(secret, { hash: options.hash }),
    options,
    "authenticate the client",
  );
  const keys = side.key;
  await writeAll(conn, crypto.getRandomValues(challenge), side.signal);
  let reply: Uint8Array<ArrayBuffer>;
  if (isDenoConnLike(conn)) {
    // Read directly, to tell a digest of a shorter hash by where it stops.
    reply = new Uint8Array(keys.digestLength);
    await readRestOfReply(conn, reply, 0, keys.hash, side.signal);
  } else {
    reply = await readExact(
      conn,
      keys.digestLength,
      side.signal,
      "the client's reply",
    );
  }
  const secretIndex = await keys.verify(reply, challenge);
  if (secretIndex === -1) throw wrongReply(keys.hash, reply);
  return { secretIndex };
}

/** Reads the server's challenge; a wait that ends empty says why it may. */
async function readChallenge(
  conn: Duplex,
  length: number,
  signal: AbortSignal,
): Promise<Uint8Array<ArrayBuffer>> {
  const what = "the server's challenge";
  if (!isDenoConnLike(conn)) {
    const challenge = await readExactOrEof(conn, length, signal, what);
    if (challenge !== null) return challenge;
    throw noChallenge(closedEarly(what, 0, length), new Uint8Array(0));
  }
  const challenge = new Uint8Array(length);
  let got = 0;
  try {
    while (got < length) {
      const count = await raceSignal(
        conn.read(challenge.subarray(got)),
        signal,
      );
      if (count === null) throw closedEarly(what, got, length);
      got += count;
    }
  } catch (error) {
    throw noChallenge(error, challenge.subarray(0, got));
  }
  return challenge;
}

/**
 * Proves to the server that we know the key (the client side).
 *
 * Reads exactly one challenge, answers with its HMAC under the key and
 * resolves. As in the recipe the server sends no verdict: a server that
 * rejected us closes the connection, which the next read shows as end of
 * stream (or a reset). Bytes the server sent after its challenge stay unread.
 *
 * When no challenge arrives (the server closes first, or the deadline
 * passes with nothing read), or what arrives is a TLS record, the error
 * says so: the server may expect TLS (`connectTls` in `tls.ts`), or it
 * refused or holds back this address.
 *
 * @param conn The connection, a `Deno.Conn` or any {@linkcode Duplex}.
 * @param secret The shared secret (one: a list of secrets is for a
 * server); an {@linkcode HmacKey} avoids re-importing it.
 * @param options Hash, challenge length, deadline and signal.
 * @throws {ProtocolError} When the server closes before a whole challenge.
 * @throws {TypeError} When the key is empty or of the wrong type.
 * @throws {RangeError} When `challengeLength` or `timeout` is out of range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientAuthenticate, serverAuthenticate } from "./handshake.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ port: listener.addr.port });
 * const server = await listener.accept();
 * await Promise.all([
 *   serverAuthenticate(server, "secret", { hash: "SHA-512" }),
 *   clientAuthenticate(client, "secret", { hash: "SHA-512" }),
 * ]);
 * await client.write(new TextEncoder().encode("Hello"));
 * const buffer = new Uint8Array(5);
 * await server.read(buffer);
 * assert.equal(new TextDecoder().decode(buffer), "Hello");
 * client.close();
 * server.close();
 * ```
 */
export async function clientAuthenticate(
  conn: Duplex,
  secret: SecretInput | HmacKey,
  options?: AuthenticateOptions,
): Promise<void> {
  options ??= {};
  const length = checkChallengeLength(options.challengeLength);
  using side = await start(
    () => HmacKey.import(secret, { hash: options.hash }),
    options,
    "authenticate to the server",
  );
  const challenge = await readChallenge(conn, length, side.signal);
  await writeAll(conn, await side.key.sign(challenge), side.signal);
}
