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
 * @example Both sides over loopback
 * ```ts
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
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import { checkTimeout } from "./_options.ts";
import { type Deadline, deadline, DEFAULT_TIMEOUT } from "./_deadline.ts";
import { readExact, writeAll } from "./_conn_io.ts";
import { utf8 } from "./_bytes.ts";
import { AuthenticationError } from "./errors.ts";
import type { Duplex } from "./types.ts";

export type { Duplex } from "./types.ts";

/**
 * A hash for the HMAC. `"MD5"` is legacy: only for Python peers that call
 * `hmac.new(key, msg)` without `digestmod` (Python 3.7 and older default to
 * MD5), and only when named explicitly.
 */
export type HashName = "SHA-256" | "SHA-1" | "SHA-384" | "SHA-512" | "MD5";

/** What a key may be given as: UTF-8 text, raw bytes or an HMAC CryptoKey. */
export type SecretInput = string | Uint8Array | CryptoKey;

/** Digest length in bytes of each supported hash. */
export const DIGEST_LENGTH: Readonly<Record<HashName, number>> = Object.freeze(
  { "SHA-256": 32, "SHA-1": 20, "SHA-384": 48, "SHA-512": 64, "MD5": 16 },
);

/** Default challenge length in bytes (the recipe's `os.urandom(32)`). */
export const DEFAULT_CHALLENGE_LENGTH = 32;
/** Smallest challenge length allowed. */
export const MIN_CHALLENGE_LENGTH = 16;
/** Largest challenge length allowed. */
export const MAX_CHALLENGE_LENGTH = 1024;

/**
 * Turns a hash name into its canonical form. Accepts the canonical names and
 * the same names in any case with or without the hyphen (`"sha256"`).
 *
 * @param name A hash name such as `"SHA-256"` or `"sha256"`.
 * @returns The canonical {@linkcode HashName}.
 * @throws {TypeError} When the name is not a supported hash.
 *
 * @example
 * ```ts
 * import { parseHashName } from "./handshake.ts";
 *
 * console.log(parseHashName("sha512")); // "SHA-512"
 * ```
 */
export function parseHashName(name: string): HashName {
  if (typeof name !== "string") {
    throw new TypeError(
      `Cannot use hash: expected a string, got ${typeof name}`,
    );
  }
  const compact = name.toUpperCase().replace("-", "");
  for (const hash of Object.keys(DIGEST_LENGTH) as HashName[]) {
    if (hash.replace("-", "") === compact) return hash;
  }
  throw new TypeError(
    `Cannot use hash "${name}": expected one of SHA-256, SHA-1, SHA-384, SHA-512 or MD5`,
  );
}

/** Options for {@linkcode HmacKey.import}. */
export interface HmacKeyOptions {
  /**
   * The HMAC hash. With a `CryptoKey` the key's own hash is used and this,
   * if given, must match it.
   *
   * @default {"SHA-256"}
   */
  hash?: HashName;
}

/**
 * A shared key imported once and reused for every handshake.
 *
 * Importing a raw key costs a WebCrypto call; a server that authenticates many
 * clients imports it once with {@linkcode HmacKey.import} and passes the
 * result to {@linkcode serverAuthenticate}. The raw key bytes are not kept
 * (except for the legacy MD5 hash, which WebCrypto lacks) and never appear in
 * `toString`, `JSON.stringify` or `Deno.inspect`.
 *
 * @example
 * ```ts
 * import { HmacKey } from "./handshake.ts";
 *
 * const key = await HmacKey.import("peanut butter", { hash: "SHA-256" });
 * const digest = await key.sign(new TextEncoder().encode("challenge"));
 * console.log(key.hash, digest.length); // SHA-256 32
 * ```
 */
export class HmacKey {
  /** The HMAC hash this key signs with. */
  readonly hash: HashName;
  #cryptoKey: CryptoKey | undefined;
  #md5Key: Uint8Array | undefined;

  private constructor(
    hash: HashName,
    cryptoKey: CryptoKey | undefined,
    md5Key: Uint8Array | undefined,
  ) {
    this.hash = hash;
    this.#cryptoKey = cryptoKey;
    this.#md5Key = md5Key;
  }

  /** Length in bytes of this key's digests. */
  get digestLength(): number {
    return DIGEST_LENGTH[this.hash];
  }

  /**
   * Imports a key for HMAC with the given hash.
   *
   * @param key UTF-8 text, raw bytes (copied) or an HMAC `CryptoKey` whose
   * usages include `sign` and `verify`.
   * @param options The hash.
   * @returns The imported key.
   * @throws {TypeError} When the key is empty, of the wrong type, a
   * `CryptoKey` that is not HMAC, or its hash differs from `options.hash`.
   *
   * @example
   * ```ts
   * import { HmacKey } from "./handshake.ts";
   *
   * const key = await HmacKey.import(new Uint8Array([1, 2, 3, 4]));
   * console.log(key.hash); // SHA-256
   * ```
   */
  static async import(
    key: SecretInput | HmacKey,
    options: HmacKeyOptions = {},
  ): Promise<HmacKey> {
    const wanted = options.hash === undefined
      ? undefined
      : parseHashName(options.hash);
    if (key instanceof HmacKey) {
      if (wanted !== undefined && wanted !== key.hash) {
        throw new TypeError(
          `Cannot use the key: it was imported for ${key.hash} but ${wanted} was asked for`,
        );
      }
      return key;
    }
    if (typeof CryptoKey !== "undefined" && key instanceof CryptoKey) {
      const algorithm = key.algorithm as HmacKeyAlgorithm;
      if (algorithm.name !== "HMAC") {
        throw new TypeError(
          `Cannot use the key: expected an HMAC CryptoKey, got ${algorithm.name}`,
        );
      }
      const hash = parseHashName(algorithm.hash.name);
      if (wanted !== undefined && wanted !== hash) {
        throw new TypeError(
          `Cannot use the key: the CryptoKey is for ${hash} but ${wanted} was asked for`,
        );
      }
      return new HmacKey(hash, key, undefined);
    }
    let raw: Uint8Array<ArrayBuffer>;
    if (typeof key === "string") {
      raw = utf8(key);
    } else if (key instanceof Uint8Array) {
      raw = new Uint8Array(key);
    } else {
      throw new TypeError(
        `Cannot use the key: expected a string, Uint8Array or CryptoKey, got ${
          key === null ? "null" : typeof key
        }`,
      );
    }
    if (raw.byteLength === 0) {
      throw new TypeError(
        "Cannot use the key: it is empty; give a non-empty shared secret",
      );
    }
    const hash = wanted ?? "SHA-256";
    if (hash === "MD5") return new HmacKey(hash, undefined, raw);
    const cryptoKey = await crypto.subtle.importKey(
      "raw",
      raw,
      { name: "HMAC", hash },
      false,
      ["sign", "verify"],
    );
    raw.fill(0);
    return new HmacKey(hash, cryptoKey, undefined);
  }

  /**
   * Computes the HMAC of a message.
   *
   * @param message The bytes to sign.
   * @returns The raw digest ({@linkcode HmacKey.digestLength} bytes).
   *
   * @example
   * ```ts
   * import { HmacKey } from "./handshake.ts";
   *
   * const key = await HmacKey.import("k", { hash: "SHA-1" });
   * console.log((await key.sign(new Uint8Array(32))).length); // 20
   * ```
   */
  async sign(
    message: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#md5Key) {
      const digest = createHmac("md5", this.#md5Key).update(message).digest();
      return new Uint8Array(digest);
    }
    return new Uint8Array(
      await crypto.subtle.sign("HMAC", this.#cryptoKey!, message),
    );
  }

  /**
   * Checks a digest against a message in constant time
   * (`crypto.subtle.verify`; `timingSafeEqual` for MD5).
   *
   * @param digest The digest the peer sent.
   * @param message The message it should be the HMAC of.
   * @returns Whether the digest is right.
   *
   * @example
   * ```ts
   * import { HmacKey } from "./handshake.ts";
   *
   * const key = await HmacKey.import("k");
   * const message = new Uint8Array([1, 2, 3]);
   * console.log(await key.verify(await key.sign(message), message)); // true
   * ```
   */
  async verify(
    digest: Uint8Array<ArrayBuffer>,
    message: Uint8Array<ArrayBuffer>,
  ): Promise<boolean> {
    if (this.#md5Key) {
      if (digest.byteLength !== 16) return false;
      const expected = createHmac("md5", this.#md5Key).update(message).digest();
      return timingSafeEqual(expected, digest);
    }
    return await crypto.subtle.verify(
      "HMAC",
      this.#cryptoKey!,
      digest,
      message,
    );
  }

  /** Never shows key material. */
  toJSON(): { hash: HashName } {
    return { hash: this.hash };
  }

  /** Never shows key material. */
  [Symbol.for("Deno.customInspect")](): string {
    return `HmacKey { hash: "${this.hash}" }`;
  }
}

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

function checkChallengeLength(length: number): number {
  if (!Number.isInteger(length)) {
    throw new TypeError(
      `Cannot use challengeLength: expected an integer, got ${length}`,
    );
  }
  if (length < MIN_CHALLENGE_LENGTH || length > MAX_CHALLENGE_LENGTH) {
    throw new RangeError(
      `Cannot use challengeLength ${length}: expected ${MIN_CHALLENGE_LENGTH} to ${MAX_CHALLENGE_LENGTH} bytes`,
    );
  }
  return length;
}

/** Checks the options, imports the key and starts the handshake deadline. */
async function prepare(
  key: SecretInput | HmacKey,
  options: AuthenticateOptions,
  action: string,
): Promise<{ challengeLength: number; hmac: HmacKey; limit: Deadline }> {
  const challengeLength = checkChallengeLength(
    options.challengeLength ?? DEFAULT_CHALLENGE_LENGTH,
  );
  const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
  const hmac = await HmacKey.import(key, { hash: options.hash });
  return {
    challengeLength,
    hmac,
    limit: deadline(timeout, options.signal, action),
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
 * | outcome | result |
 * | --- | --- |
 * | right key | resolves |
 * | wrong key, or a hash with a digest at least as long as ours | {@linkcode AuthenticationError}, reason `"wrong-key"` |
 * | a hash with a shorter digest (MD5 or SHA-1 against SHA-256) | `TimeoutError`: we wait for the rest of our digest length |
 * | peer closes before a whole digest (short reply) | {@linkcode ProtocolError}, reason `"closed"` |
 * | peer stalls past `timeout` | `DOMException` `TimeoutError` |
 * | `signal` aborts | the signal's reason (`AbortError` by default) |
 * | socket error (reset) | the runtime's error, e.g. `Deno.errors.ConnectionReset` |
 *
 * No error message contains the key, the challenge or a digest.
 *
 * @param conn The connection, a `Deno.Conn` or any {@linkcode Duplex}.
 * @param secret The shared secret; an {@linkcode HmacKey} avoids re-importing it.
 * @param options Hash, challenge length, deadline and signal.
 * @throws {AuthenticationError} When the client's digest is wrong.
 * @throws {ProtocolError} When the client closes before sending a digest.
 * @throws {TypeError} When the key is empty or of the wrong type.
 * @throws {RangeError} When `challengeLength` or `timeout` is out of range.
 *
 * @example
 * ```ts
 * import { AuthenticationError, HmacKey, serverAuthenticate } from "./mod.ts";
 *
 * const key = await HmacKey.import("peanut butter");
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ port: listener.addr.port });
 * const conn = await listener.accept();
 * // This client sends garbage instead of the digest.
 * await client.write(new Uint8Array(32));
 * try {
 *   await serverAuthenticate(conn, key, { timeout: 5000 });
 * } catch (error) {
 *   if (!(error instanceof AuthenticationError)) throw error;
 *   console.log("rejected:", error.reason); // rejected: wrong-key
 * }
 * conn.close();
 * client.close();
 * ```
 */
export async function serverAuthenticate(
  conn: Duplex,
  secret: SecretInput | HmacKey,
  options: AuthenticateOptions = {},
): Promise<void> {
  const { challengeLength, hmac, limit } = await prepare(
    secret,
    options,
    "authenticate the client",
  );
  using _ = limit;
  const challenge = crypto.getRandomValues(new Uint8Array(challengeLength));
  await writeAll(conn, challenge, limit.signal);
  const reply = await readExact(
    conn,
    hmac.digestLength,
    limit.signal,
    "the client's reply",
  );
  if (!(await hmac.verify(reply, challenge))) {
    throw new AuthenticationError(
      `Cannot authenticate the client: its reply does not match the challenge under our key (wrong key, or a hash other than ${hmac.hash})`,
      "wrong-key",
    );
  }
}

/**
 * Proves to the server that we know the key (the client side).
 *
 * Reads exactly one challenge, answers with its HMAC under the key and
 * resolves. As in the recipe the server sends no verdict: a server that
 * rejected us closes the connection, which the next read shows as end of
 * stream (or a reset). Bytes the server sent after its challenge stay unread.
 *
 * @param conn The connection, a `Deno.Conn` or any {@linkcode Duplex}.
 * @param secret The shared secret; an {@linkcode HmacKey} avoids re-importing it.
 * @param options Hash, challenge length, deadline and signal.
 * @throws {ProtocolError} When the server closes before a whole challenge.
 * @throws {TypeError} When the key is empty or of the wrong type.
 * @throws {RangeError} When `challengeLength` or `timeout` is out of range.
 *
 * @example
 * ```ts
 * import { clientAuthenticate, serverAuthenticate } from "./mod.ts";
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
 * console.log(new TextDecoder().decode(buffer)); // Hello
 * client.close();
 * server.close();
 * ```
 */
export async function clientAuthenticate(
  conn: Duplex,
  secret: SecretInput | HmacKey,
  options: AuthenticateOptions = {},
): Promise<void> {
  const { challengeLength, hmac, limit } = await prepare(
    secret,
    options,
    "authenticate to the server",
  );
  using _ = limit;
  const challenge = await readExact(
    conn,
    challengeLength,
    limit.signal,
    "the server's challenge",
  );
  const digest = await hmac.sign(challenge);
  await writeAll(conn, digest, limit.signal);
}
