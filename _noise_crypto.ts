// Private: the crypto functions of Noise_NNpsk0_25519_AESGCM_SHA256 (Noise
// Protocol Framework revision 34, sections 4 and 12) on WebCrypto: SHA-256,
// the spec's HKDF, X25519 key pairs and DH. The cipher is _noise_cipher.ts.
import { concat } from "./_bytes.ts";

/** X25519 public key (DHLEN) and key lengths. */
export const DH_LENGTH = 32;
/** SHA-256 HASHLEN. */
export const HASH_LENGTH = 32;

/** HASH(): SHA-256. */
export async function hash(
  data: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

/**
 * HKDF as the spec defines it (section 4.3), with HMAC-SHA256:
 * temp_key = HMAC(ck, ikm); out1 = HMAC(temp_key, 0x01);
 * out2 = HMAC(temp_key, out1 || 0x02); out3 = HMAC(temp_key, out2 || 0x03).
 *
 * That is RFC 5869 HKDF with salt = ck, IKM = ikm, empty info and 64 or 96
 * bytes of output, so WebCrypto's HKDF computes it in one call instead of
 * seven or nine HMAC key imports and signatures (the tests check it against
 * the HMAC formulation).
 */
export async function hkdf(
  chainingKey: Uint8Array<ArrayBuffer>,
  inputKeyMaterial: Uint8Array<ArrayBuffer>,
  outputs: 2 | 3,
): Promise<Uint8Array<ArrayBuffer>[]> {
  const ikm = await crypto.subtle.importKey(
    "raw",
    inputKeyMaterial,
    "HKDF",
    false,
    ["deriveBits"],
  );
  const bits = new Uint8Array(
    await crypto.subtle.deriveBits(
      {
        name: "HKDF",
        hash: "SHA-256",
        salt: chainingKey,
        info: new Uint8Array(0),
      },
      ikm,
      outputs * HASH_LENGTH * 8,
    ),
  );
  const out: Uint8Array<ArrayBuffer>[] = [];
  for (let i = 0; i < outputs; i++) {
    out.push(bits.slice(i * HASH_LENGTH, (i + 1) * HASH_LENGTH));
  }
  return out;
}

/** An X25519 key pair: the private CryptoKey and the raw public key. */
export interface DhKeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: Uint8Array<ArrayBuffer>;
}

/** GENERATE_KEYPAIR(): a fresh X25519 key pair from WebCrypto. */
export async function generateKeyPair(): Promise<DhKeyPair> {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, [
    "deriveBits",
  ]) as CryptoKeyPair;
  const publicKey = new Uint8Array(
    await crypto.subtle.exportKey("raw", pair.publicKey),
  );
  return { privateKey: pair.privateKey, publicKey };
}

// PKCS#8 PrivateKeyInfo header for an X25519 key (RFC 8410): version 0,
// algorithm 1.3.101.110, then the 32-byte scalar as an OCTET STRING.
const PKCS8_X25519_PREFIX = new Uint8Array([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/**
 * Builds a key pair from a raw 32-byte X25519 private key. WebCrypto does
 * not import raw private keys, so the scalar is wrapped in PKCS#8; the public
 * key is X25519(private, 9), the base point. For test vectors only.
 */
export async function keyPairFromPrivateKey(
  raw: Uint8Array,
): Promise<DhKeyPair> {
  if (raw.byteLength !== DH_LENGTH) {
    throw new RangeError(
      `Cannot use the X25519 private key: expected ${DH_LENGTH} bytes, got ${raw.byteLength}`,
    );
  }
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    concat(PKCS8_X25519_PREFIX, raw),
    { name: "X25519" },
    false,
    ["deriveBits"],
  );
  const basePoint = new Uint8Array(DH_LENGTH);
  basePoint[0] = 9;
  const publicKey = await dh(privateKey, basePoint);
  return { privateKey, publicKey };
}

/**
 * DH(key_pair, public_key): X25519. WebCrypto refuses an all-zero result (a
 * low-order public key); that surfaces as a {@linkcode DecryptError}-free
 * `Error` the caller reports as malformed input.
 */
export async function dh(
  privateKey: CryptoKey,
  publicKey: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const peer = await crypto.subtle.importKey(
    "raw",
    publicKey,
    { name: "X25519" },
    false,
    [],
  );
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "X25519", public: peer },
      privateKey,
      DH_LENGTH * 8,
    ),
  );
}
