// Private: the Noise CipherState (Noise Protocol Framework revision 34,
// section 5.1) with AESGCM (section 12.3): a key, a 64-bit nonce counter,
// and the errors a cipher call ends with.

/** AESGCM tag length. */
export const TAG_LENGTH = 16;

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

/**
 * The AES-GCM parameters for nonce `n` and associated data `ad`: the IV is
 * 32 bits of zeros, then the 64-bit big-endian counter (spec 12.3).
 */
function aesGcm(n: bigint, ad: Uint8Array<ArrayBuffer>): AesGcmParams {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setBigUint64(4, n, false);
  return {
    name: "AES-GCM",
    iv,
    additionalData: ad,
    tagLength: TAG_LENGTH * 8,
  };
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

  /** The next nonce, now used. */
  #claimNonce(): bigint {
    this.#checkNonce();
    return this.#n++;
  }

  /** EncryptWithAd(ad, plaintext); plaintext as is when there is no key. */
  async encryptWithAd(
    ad: Uint8Array<ArrayBuffer>,
    plaintext: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    if (!this.hasKey()) return plaintext;
    // Claim the nonce before awaiting so that two calls never share one.
    const n = this.#claimNonce();
    return new Uint8Array(
      await crypto.subtle.encrypt(
        aesGcm(n, ad),
        await this.#cryptoKey(),
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
      plaintext = await crypto.subtle.decrypt(aesGcm(n, ad), key, ciphertext);
    } catch (cause) {
      throw new DecryptError("the authentication tag does not verify", {
        cause,
      });
    }
    this.#n = n + 1n;
    return new Uint8Array(plaintext);
  }
}
