// Private: the Noise Protocol Framework (revision 34) state machines for
// Noise_NNpsk0_25519_AESGCM_SHA256, on WebCrypto only.
//
//   NNpsk0:
//     -> psk, e
//     <- e, ee
//
// Written from the specification (https://noiseprotocol.org/noise.html):
// section 4 (crypto functions), 5.1 CipherState, 5.2 SymmetricState,
// 5.3 HandshakeState, 9 (pre-shared symmetric keys), 12 (AESGCM, SHA256,
// 25519 definitions).
import { concat, utf8 } from "./_bytes.ts";

/** The full protocol name; its bytes start the handshake hash. */
export const PROTOCOL_NAME = "Noise_NNpsk0_25519_AESGCM_SHA256";
/** Every Noise message, handshake or transport, is at most this long. */
export const MAX_MESSAGE_LENGTH = 65535;
/** AESGCM tag length. */
export const TAG_LENGTH = 16;
/** Largest plaintext in one transport message. */
export const MAX_PAYLOAD_LENGTH = MAX_MESSAGE_LENGTH - TAG_LENGTH;
/** X25519 public key (DHLEN) and key lengths. */
export const DH_LENGTH = 32;
/** SHA-256 HASHLEN. */
export const HASH_LENGTH = 32;
/** The pre-shared key is exactly 32 bytes (spec section 9). */
export const PSK_LENGTH = 32;

/** Nonce 2^64-1 is reserved (spec 5.1): never used to encrypt. */
const MAX_NONCE = (1n << 64n) - 1n;

/** A cipher call failed: a wrong key, a modified or misordered message. */
export class DecryptError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DecryptError";
  }
}

/** The nonce space is used up (2^64-1 reached); the session must end. */
export class NonceExhaustedError extends RangeError {
  constructor() {
    super(
      "Cannot encrypt or decrypt: the Noise nonce counter is exhausted (2^64-1 is reserved); open a new connection",
    );
    this.name = "NonceExhaustedError";
  }
}

// ---------------------------------------------------------------------------
// Crypto functions (spec section 4 and 12)

/** SHA-256. */
async function hash(
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

// ---------------------------------------------------------------------------
// CipherState (spec 5.1)

/** AESGCM nonce: 32 bits of zeros, then the 64-bit big-endian counter. */
function aesGcmNonce(n: bigint): Uint8Array<ArrayBuffer> {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, n, false);
  return nonce;
}

/** A key (or none) and a 64-bit nonce counter. */
export class CipherState {
  // The raw key until first use: during the handshake most MixKey() keys
  // are replaced before they encrypt anything, so importing them is waste.
  #rawKey: Uint8Array<ArrayBuffer> | undefined;
  #key: Promise<CryptoKey> | undefined;
  #n = 0n;

  /** InitializeKey(key): a 32-byte key, or `undefined` for empty. */
  static async create(
    key: Uint8Array<ArrayBuffer> | undefined,
  ): Promise<CipherState> {
    const state = new CipherState();
    await state.initializeKey(key);
    return state;
  }

  /** InitializeKey(key): sets k (imported for AES-256-GCM on first use), n = 0. */
  initializeKey(key: Uint8Array<ArrayBuffer> | undefined): Promise<void> {
    this.#rawKey = key;
    this.#key = undefined;
    this.#n = 0n;
    return Promise.resolve();
  }

  #cryptoKey(): Promise<CryptoKey> {
    // One import even when calls overlap.
    this.#key ??= crypto.subtle.importKey(
      "raw",
      this.#rawKey!,
      { name: "AES-GCM" },
      false,
      ["encrypt", "decrypt"],
    );
    return this.#key;
  }

  /** HasKey(). */
  hasKey(): boolean {
    return this.#key !== undefined || this.#rawKey !== undefined;
  }

  /** SetNonce(n): the spec's own hook, used by tests for exhaustion. */
  setNonce(n: bigint): void {
    if (n < 0n || n > MAX_NONCE) throw new RangeError("nonce out of range");
    this.#n = n;
  }

  /** The next nonce to use. */
  get nonce(): bigint {
    return this.#n;
  }

  #checkNonce(): void {
    if (this.#n >= MAX_NONCE) throw new NonceExhaustedError();
  }

  /** EncryptWithAd(ad, plaintext); plaintext as is when there is no key. */
  async encryptWithAd(
    ad: Uint8Array<ArrayBuffer>,
    plaintext: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    if (!this.hasKey()) return plaintext;
    this.#checkNonce();
    const n = this.#n;
    // Claim the nonce before awaiting so that two calls never share one.
    this.#n = n + 1n;
    const key = await this.#cryptoKey();
    return new Uint8Array(
      await crypto.subtle.encrypt(
        {
          name: "AES-GCM",
          iv: aesGcmNonce(n),
          additionalData: ad,
          tagLength: TAG_LENGTH * 8,
        },
        key,
        plaintext,
      ),
    );
  }

  /**
   * DecryptWithAd(ad, ciphertext). On a bad tag throws
   * {@linkcode DecryptError} and leaves n unchanged (spec 5.1).
   */
  async decryptWithAd(
    ad: Uint8Array<ArrayBuffer>,
    ciphertext: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    if (!this.hasKey()) return ciphertext;
    this.#checkNonce();
    if (ciphertext.byteLength < TAG_LENGTH) {
      throw new DecryptError("the message is shorter than its tag");
    }
    const n = this.#n;
    const key = await this.#cryptoKey();
    let plaintext: ArrayBuffer;
    try {
      plaintext = await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: aesGcmNonce(n),
          additionalData: ad,
          tagLength: TAG_LENGTH * 8,
        },
        key,
        ciphertext,
      );
    } catch (cause) {
      throw new DecryptError("the authentication tag does not verify", {
        cause,
      });
    }
    this.#n = n + 1n;
    return new Uint8Array(plaintext);
  }
}

// ---------------------------------------------------------------------------
// SymmetricState (spec 5.2)

/** ck, h and a CipherState. */
export class SymmetricState {
  #ck: Uint8Array<ArrayBuffer>;
  #h: Uint8Array<ArrayBuffer>;
  #cipher: CipherState;

  private constructor(
    ck: Uint8Array<ArrayBuffer>,
    h: Uint8Array<ArrayBuffer>,
    cipher: CipherState,
  ) {
    this.#ck = ck;
    this.#h = h;
    this.#cipher = cipher;
  }

  /**
   * InitializeSymmetric(protocol_name): h = the name padded with zeros to
   * HASHLEN if it fits, else HASH(name); ck = h; no key.
   */
  static async initialize(protocolName: string): Promise<SymmetricState> {
    const name = utf8(protocolName);
    let h: Uint8Array<ArrayBuffer>;
    if (name.byteLength <= HASH_LENGTH) {
      h = new Uint8Array(HASH_LENGTH);
      h.set(name);
    } else {
      h = await hash(name);
    }
    return new SymmetricState(
      h.slice(),
      h,
      await CipherState.create(undefined),
    );
  }

  /** The handshake hash h (a copy). */
  get handshakeHash(): Uint8Array<ArrayBuffer> {
    return this.#h.slice();
  }

  /** MixKey(ikm): ck, temp_k = HKDF(ck, ikm, 2); InitializeKey(temp_k). */
  async mixKey(inputKeyMaterial: Uint8Array<ArrayBuffer>): Promise<void> {
    const [ck, tempK] = await hkdf(this.#ck, inputKeyMaterial, 2);
    this.#ck = ck;
    // HASHLEN is 32 for SHA-256: temp_k needs no truncation.
    await this.#cipher.initializeKey(tempK);
  }

  /** MixHash(data): h = HASH(h || data). */
  async mixHash(data: Uint8Array<ArrayBuffer>): Promise<void> {
    this.#h = await hash(concat(this.#h, data));
  }

  /**
   * MixKeyAndHash(ikm): ck, temp_h, temp_k = HKDF(ck, ikm, 3);
   * MixHash(temp_h); InitializeKey(temp_k). Used for the psk token.
   */
  async mixKeyAndHash(
    inputKeyMaterial: Uint8Array<ArrayBuffer>,
  ): Promise<void> {
    const [ck, tempH, tempK] = await hkdf(this.#ck, inputKeyMaterial, 3);
    this.#ck = ck;
    await this.mixHash(tempH);
    await this.#cipher.initializeKey(tempK);
  }

  /** EncryptAndHash(plaintext): ciphertext with h as AD, then MixHash. */
  async encryptAndHash(
    plaintext: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const ciphertext = await this.#cipher.encryptWithAd(this.#h, plaintext);
    await this.mixHash(ciphertext);
    return ciphertext;
  }

  /** DecryptAndHash(ciphertext): plaintext with h as AD, then MixHash. */
  async decryptAndHash(
    ciphertext: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const plaintext = await this.#cipher.decryptWithAd(this.#h, ciphertext);
    await this.mixHash(ciphertext);
    return plaintext;
  }

  /** Split(): two CipherStates from HKDF(ck, zero-length, 2). */
  async split(): Promise<[CipherState, CipherState]> {
    const [k1, k2] = await hkdf(this.#ck, new Uint8Array(0), 2);
    return [await CipherState.create(k1), await CipherState.create(k2)];
  }
}

// ---------------------------------------------------------------------------
// HandshakeState for NNpsk0 (spec 5.3, 7.5, 9)

/**
 * Hooks for tests/noise_test.ts only. This module is private: neither
 * mod.ts nor noise.ts exports it or anything that reaches these hooks.
 */
export const testHooks: {
  /**
   * Called with each session's transport ciphers right after Split(), so a
   * test can move a nonce next to its limit.
   */
  afterSplit?: (result: HandshakeResult, initiator: boolean) => void;
  /** Called with each handshake's own copy of the PSK, to check it is wiped. */
  pskCopy?: (copy: Uint8Array) => void;
} = {};

/** Options for a {@linkcode HandshakeState}. */
export interface HandshakeStateOptions {
  /** Both sides must use the same prologue. */
  prologue?: Uint8Array;
  /**
   * Our ephemeral private key instead of a fresh one. ONLY for test vectors:
   * reusing an ephemeral key destroys forward secrecy.
   */
  testingEphemeralPrivateKey?: Uint8Array;
}

/** The transport ciphers after the handshake, and the handshake hash. */
export interface HandshakeResult {
  /** Encrypts what we send. */
  readonly send: CipherState;
  /** Decrypts what we receive. */
  readonly receive: CipherState;
  /** h after the last handshake message (channel binding value). */
  readonly handshakeHash: Uint8Array<ArrayBuffer>;
}

/**
 * The NNpsk0 handshake, one side. The initiator calls `writeMessage` then
 * `readMessage`; the responder `readMessage` then `writeMessage`. After the
 * second message {@linkcode HandshakeState.result} holds the ciphers.
 *
 * The state keeps its own copy of the PSK and wipes it after the psk token
 * (its only use), whether that message succeeds or fails; dispose the state
 * to wipe it when the handshake stops before that.
 */
export class HandshakeState implements Disposable {
  readonly initiator: boolean;
  #symmetric: SymmetricState;
  #psk: Uint8Array<ArrayBuffer>;
  #testingEphemeral: Uint8Array | undefined;
  #e: DhKeyPair | undefined;
  #re: Uint8Array<ArrayBuffer> | undefined;
  #step = 0;
  #result: HandshakeResult | undefined;

  private constructor(
    initiator: boolean,
    symmetric: SymmetricState,
    psk: Uint8Array<ArrayBuffer>,
    testingEphemeral: Uint8Array | undefined,
  ) {
    this.initiator = initiator;
    this.#symmetric = symmetric;
    this.#psk = psk;
    this.#testingEphemeral = testingEphemeral;
  }

  /** Initialize(): protocol name, then MixHash(prologue); NN has no pre-messages. */
  static async initialize(
    initiator: boolean,
    psk: Uint8Array,
    options: HandshakeStateOptions = {},
  ): Promise<HandshakeState> {
    if (psk.byteLength !== PSK_LENGTH) {
      throw new RangeError(
        `Cannot use the pre-shared key: expected ${PSK_LENGTH} bytes, got ${psk.byteLength}`,
      );
    }
    const symmetric = await SymmetricState.initialize(PROTOCOL_NAME);
    await symmetric.mixHash(new Uint8Array(options.prologue ?? []));
    const copy = new Uint8Array(psk);
    testHooks.pskCopy?.(copy);
    return new HandshakeState(
      initiator,
      symmetric,
      copy,
      options.testingEphemeralPrivateKey,
    );
  }

  /** Wipes the PSK copy (a no-op once the psk token has used it). */
  [Symbol.dispose](): void {
    this.#psk.fill(0);
  }

  /** The psk token: MixKeyAndHash(psk), then the copy is wiped either way. */
  async #mixPsk(): Promise<void> {
    try {
      await this.#symmetric.mixKeyAndHash(this.#psk);
    } finally {
      this.#psk.fill(0);
    }
  }

  /** Whether the handshake is complete. */
  get done(): boolean {
    return this.#result !== undefined;
  }

  /** The transport ciphers; throws before the handshake completes. */
  get result(): HandshakeResult {
    if (!this.#result) throw new Error("the handshake is not complete");
    return this.#result;
  }

  async #writeE(): Promise<Uint8Array<ArrayBuffer>> {
    this.#e = this.#testingEphemeral
      ? await keyPairFromPrivateKey(this.#testingEphemeral)
      : await generateKeyPair();
    await this.#symmetric.mixHash(this.#e.publicKey);
    // psk mode: the e token also mixes e.public_key into the key (spec 9.2).
    await this.#symmetric.mixKey(this.#e.publicKey);
    return this.#e.publicKey;
  }

  async #readE(message: Uint8Array<ArrayBuffer>): Promise<void> {
    this.#re = message.slice(0, DH_LENGTH);
    await this.#symmetric.mixHash(this.#re);
    await this.#symmetric.mixKey(this.#re);
  }

  async #ee(): Promise<void> {
    await this.#symmetric.mixKey(await dh(this.#e!.privateKey, this.#re!));
  }

  async #finish(): Promise<void> {
    const [c1, c2] = await this.#symmetric.split();
    this.#result = {
      send: this.initiator ? c1 : c2,
      receive: this.initiator ? c2 : c1,
      handshakeHash: this.#symmetric.handshakeHash,
    };
    testHooks.afterSplit?.(this.#result, this.initiator);
  }

  /**
   * WriteMessage(payload): the next message of ours. Message 0 (initiator):
   * psk, e. Message 1 (responder): e, ee.
   */
  async writeMessage(
    payload: Uint8Array<ArrayBuffer> = new Uint8Array(0),
  ): Promise<Uint8Array<ArrayBuffer>> {
    const expected = this.initiator ? 0 : 1;
    if (this.#step !== expected) throw new Error("not our turn to write");
    if (payload.byteLength > MAX_MESSAGE_LENGTH - DH_LENGTH - TAG_LENGTH) {
      throw new RangeError("the handshake payload is too large");
    }
    let e: Uint8Array<ArrayBuffer>;
    if (this.initiator) {
      await this.#mixPsk();
      e = await this.#writeE();
    } else {
      e = await this.#writeE();
      await this.#ee();
    }
    const ciphertext = await this.#symmetric.encryptAndHash(payload);
    this.#step++;
    if (!this.initiator) await this.#finish();
    return concat(e, ciphertext);
  }

  /**
   * ReadMessage(message): the peer's next message; returns its payload.
   * Throws {@linkcode DecryptError} when it does not decrypt (wrong PSK,
   * prologue or a modified message) and plain `Error` when the message is
   * too short or the DH fails (a low-order public key).
   */
  async readMessage(
    message: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const expected = this.initiator ? 1 : 0;
    if (this.#step !== expected) throw new Error("not our turn to read");
    if (message.byteLength < DH_LENGTH + TAG_LENGTH) {
      throw new RangeError("the handshake message is too short");
    }
    if (this.initiator) {
      await this.#readE(message);
      await this.#ee();
    } else {
      await this.#mixPsk();
      await this.#readE(message);
    }
    const payload = await this.#symmetric.decryptAndHash(
      message.slice(DH_LENGTH),
    );
    this.#step++;
    if (this.initiator) await this.#finish();
    return payload;
  }
}
