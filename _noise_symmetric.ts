// Private: the Noise SymmetricState (Noise Protocol Framework revision 34,
// section 5.2): the chaining key, the handshake hash and the CipherState
// they key, as NNpsk0 mixes its tokens into them.
import { concat, utf8 } from "./_bytes.ts";
import { CipherState } from "./_noise_cipher.ts";
import { hash, HASH_LENGTH, hkdf } from "./_noise_crypto.ts";

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
  encryptAndHash(
    plaintext: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    return this.#withHash(true, plaintext);
  }

  /** DecryptAndHash(ciphertext): plaintext with h as AD, then MixHash. */
  decryptAndHash(
    ciphertext: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    return this.#withHash(false, ciphertext);
  }

  /** Both of the above: the cipher call under h, then h mixes the ciphertext. */
  async #withHash(
    encrypt: boolean,
    input: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const output = encrypt
      ? await this.#cipher.encryptWithAd(this.#h, input)
      : await this.#cipher.decryptWithAd(this.#h, input);
    await this.mixHash(encrypt ? output : input);
    return output;
  }

  /** Split(): two CipherStates from HKDF(ck, zero-length, 2). */
  async split(): Promise<[CipherState, CipherState]> {
    const [k1, k2] = await hkdf(this.#ck, new Uint8Array(0), 2);
    return [await CipherState.create(k1), await CipherState.create(k2)];
  }
}
