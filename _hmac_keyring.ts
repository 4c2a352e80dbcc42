// Private: the keys a Cookbook server accepts, for key rotation: one shared
// secret or a short list of them (the current key and the ones still in
// use), checked, imported once, all for one hash (so one reply length),
// and a reply checked against every one of them in constant time.
// handshake.ts is the public home of ServerSecret and MAX_SECRETS.
import {
  canVerify,
  checkSecret,
  type HashName,
  HmacKey,
  type HmacKeyOptions,
  type SecretInput,
} from "./_hmac_key.ts";
import { checkKeyCount } from "./_options.ts";

/** Most keys a server accepts at once. */
export const MAX_SECRETS = 8;

/**
 * What a server accepts as its secret: one shared secret, or a list of
 * them (at most {@linkcode MAX_SECRETS}, the current first) so that a fleet
 * can change keys without downtime. Every key of the list uses one hash.
 */
export type ServerSecret =
  | SecretInput
  | HmacKey
  | readonly (SecretInput | HmacKey)[];

/**
 * Checks a server's secret or list of secrets, synchronously: a non-empty
 * list of at most {@linkcode MAX_SECRETS}, each checked like one secret.
 */
export function checkServerSecret(secret: unknown): void {
  if (!Array.isArray(secret)) return checkSecret(secret);
  checkKeyCount(secret.length, MAX_SECRETS, {
    plural: "secrets",
    one: "shared secret",
    current: "key",
  });
  for (let i = 0; i < secret.length; i++) {
    if (Array.isArray(secret[i])) {
      throw new TypeError(
        `Cannot use secret[${i}]: expected a string, Uint8Array, CryptoKey or HmacKey, got a list`,
      );
    }
    checkSecret(secret[i], `secret[${i}]`);
  }
}

/**
 * A server's keys, imported once: the first is the current one. A reply is
 * verified against every key, whichever matches, so the time taken does not
 * tell which one did.
 */
export class HmacKeyRing {
  /** The keys, in the order given. */
  readonly keys: readonly HmacKey[];
  /** The one hash of every key. */
  readonly hash: HashName;
  /** Length in bytes of a reply. */
  readonly digestLength: number;

  private constructor(keys: readonly HmacKey[]) {
    this.keys = keys;
    this.hash = keys[0].hash;
    this.digestLength = keys[0].digestLength;
  }

  /**
   * Checks and imports a secret or a list of secrets.
   *
   * @throws {TypeError} As {@linkcode checkServerSecret}, or when the keys
   * are for different hashes, or a `CryptoKey` lacks the `verify` usage.
   */
  static async import(
    secret: ServerSecret,
    options: HmacKeyOptions = {},
  ): Promise<HmacKeyRing> {
    // A copy, checked: a list the caller changes while the keys are
    // imported changes nothing here.
    const list: readonly (SecretInput | HmacKey)[] = Array.isArray(secret)
      ? [...secret]
      : [secret as SecretInput | HmacKey];
    checkServerSecret(Array.isArray(secret) ? list : secret);
    const keys: HmacKey[] = [];
    for (const item of list) {
      const key = await HmacKey.import(item, options);
      if (!canVerify(key)) {
        throw new TypeError(
          `Cannot use ${
            Array.isArray(secret) ? `secret[${keys.length}]` : "the secret"
          }: its CryptoKey cannot verify (its usages lack "verify"), and a server checks replies with it; import it with the usages ["sign", "verify"]`,
        );
      }
      keys.push(key);
    }
    const other = keys.findIndex((key) => key.hash !== keys[0].hash);
    if (other !== -1) {
      throw new TypeError(
        `Cannot use the secrets: secret[${other}] is for ${
          keys[other].hash
        } but secret[0] is for ${
          keys[0].hash
        }; every key of a server uses one hash`,
      );
    }
    return new HmacKeyRing(keys);
  }

  /**
   * Checks a reply against every key (`crypto.subtle.verify`, constant time
   * for each), all of them whatever matched.
   *
   * @returns The index of the first key it verifies under, or -1.
   */
  verify(
    digest: Uint8Array<ArrayBuffer>,
    message: Uint8Array<ArrayBuffer>,
  ): Promise<number> {
    return verifyEach(this.keys, digest, message);
  }
}

/**
 * Checks `digest` against every key of `keys` (each in constant time), all
 * of them whichever matches.
 *
 * @returns The index of the first key it verifies under, or -1.
 */
export async function verifyEach(
  keys: readonly HmacKey[],
  digest: Uint8Array<ArrayBuffer>,
  message: Uint8Array<ArrayBuffer>,
): Promise<number> {
  if (keys.length === 1) {
    return (await keys[0].verify(digest, message)) ? 0 : -1;
  }
  const results = await Promise.all(
    keys.map((key) => key.verify(digest, message)),
  );
  let index = -1;
  // Every result is looked at, from the last: no early exit.
  for (let i = results.length - 1; i >= 0; i--) {
    if (results[i]) index = i;
  }
  return index;
}
