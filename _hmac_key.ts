// Private: the shared secret of the Cookbook handshake and what it becomes:
// the hash names, the secret's check, and HmacKey (a secret imported once,
// then signing and verifying in constant time). handshake.ts is their
// public home; serve() and connect() check the secret here before anything
// waits on a peer.
import { createHmac, timingSafeEqual } from "node:crypto";
import { utf8 } from "./_bytes.ts";

/**
 * A hash for the HMAC. `"MD5"` is legacy: only for Python peers that call
 * `hmac.new(key, msg)` without `digestmod` (Python 3.7 and older default to
 * MD5), and only when named explicitly.
 */
export type HashName = "SHA-256" | "SHA-1" | "SHA-384" | "SHA-512" | "MD5";

/** What a secret may be given as: UTF-8 text, raw bytes or an HMAC CryptoKey. */
export type SecretInput = string | Uint8Array | CryptoKey;

/** Digest length in bytes of each supported hash. */
export const DIGEST_LENGTH: Readonly<Record<HashName, number>> = Object.freeze(
  { "SHA-256": 32, "SHA-1": 20, "SHA-384": 48, "SHA-512": 64, "MD5": 16 },
);

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
 * import assert from "node:assert/strict";
 * import { parseHashName } from "./handshake.ts";
 *
 * assert.equal(parseHashName("sha512"), "SHA-512");
 * assert.throws(() => parseHashName("sha3-256"), TypeError);
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

/**
 * Checks a shared secret's type, synchronously (serve() and connect() call
 * it before they listen or connect): non-empty text or bytes, a
 * `CryptoKey`, or an {@linkcode HmacKey}. Whether a `CryptoKey` is an HMAC
 * key for the right hash is checked by {@linkcode HmacKey.import}. `name`
 * is what messages call it (`"secret[1]"` in a server's list of secrets).
 */
export function checkSecret(secret: unknown, name = "the secret"): void {
  if (secret instanceof HmacKey) return;
  if (typeof CryptoKey !== "undefined" && secret instanceof CryptoKey) return;
  if (typeof secret === "string" || secret instanceof Uint8Array) {
    if (secret.length > 0) return;
    throw new TypeError(
      `Cannot use ${name}: it is empty; give a non-empty shared secret`,
    );
  }
  if (Array.isArray(secret)) {
    throw new TypeError(
      `Cannot use ${name}: a list of secrets is for a server (key rotation); a client proves one key, so pass one secret`,
    );
  }
  throw new TypeError(
    `Cannot use ${name}: expected a string, Uint8Array, CryptoKey or HmacKey, got ${
      secret === null ? "null" : typeof secret
    }`,
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
 * The keys over a `CryptoKey` without the `verify` usage: a client can
 * sign with one, a server cannot check a reply with it.
 */
const SIGN_ONLY = new WeakSet<HmacKey>();

/**
 * Whether `key` can verify a digest (a server needs that). Only a
 * `CryptoKey` imported without the `verify` usage cannot.
 */
export function canVerify(key: HmacKey): boolean {
  return !SIGN_ONLY.has(key);
}

/**
 * A shared secret imported once and reused for every handshake.
 *
 * Importing a raw secret costs a WebCrypto call; a server that authenticates
 * many clients imports it once with {@linkcode HmacKey.import} and passes
 * the result to `serverAuthenticate`. The raw secret's bytes are not kept
 * (except for the legacy MD5 hash, which WebCrypto lacks) and never appear
 * in `toString`, `JSON.stringify` or `Deno.inspect`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HmacKey } from "./handshake.ts";
 *
 * const key = await HmacKey.import("peanut butter", { hash: "SHA-256" });
 * const digest = await key.sign(new TextEncoder().encode("challenge"));
 * assert.equal(key.hash, "SHA-256");
 * assert.equal(digest.length, 32);
 * assert.equal(JSON.stringify(key), '{"hash":"SHA-256"}');
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
   * Imports a secret for HMAC with the given hash.
   *
   * @param key UTF-8 text, raw bytes (copied) or an HMAC `CryptoKey` whose
   * usages include `sign` and `verify`; an `HmacKey` is returned as it is.
   * @param options The hash.
   * @returns The imported key.
   * @throws {TypeError} When the secret is empty, of the wrong type, a
   * `CryptoKey` that is not HMAC, or its hash differs from `options.hash`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HmacKey } from "./handshake.ts";
   *
   * const key = await HmacKey.import(new Uint8Array([1, 2, 3, 4]));
   * assert.equal(key.hash, "SHA-256");
   * await assert.rejects(HmacKey.import(""), TypeError);
   * ```
   */
  static async import(
    key: SecretInput | HmacKey,
    options?: HmacKeyOptions,
  ): Promise<HmacKey> {
    options ??= {};
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
    checkSecret(key);
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
      const imported = new HmacKey(hash, key, undefined);
      if (!key.usages.includes("verify")) SIGN_ONLY.add(imported);
      return imported;
    }
    const raw = typeof key === "string"
      ? utf8(key)
      : new Uint8Array(key as Uint8Array);
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
   * import assert from "node:assert/strict";
   * import { HmacKey } from "./handshake.ts";
   *
   * const key = await HmacKey.import("k", { hash: "SHA-1" });
   * assert.equal((await key.sign(new Uint8Array(32))).length, 20);
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
   * import assert from "node:assert/strict";
   * import { HmacKey } from "./handshake.ts";
   *
   * const key = await HmacKey.import("k");
   * const message = new Uint8Array([1, 2, 3]);
   * assert.equal(await key.verify(await key.sign(message), message), true);
   * assert.equal(await key.verify(new Uint8Array(32), message), false);
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
