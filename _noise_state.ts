// Private: the Noise HandshakeState for Noise_NNpsk0_25519_AESGCM_SHA256
// (Noise Protocol Framework revision 34, sections 5.3, 7.5 and 9), on
// WebCrypto only:
//
//   NNpsk0:
//     -> psk, e
//     <- e, ee
//
// Written from the specification (https://noiseprotocol.org/noise.html).
// The pieces below it: _noise_symmetric.ts (SymmetricState, 5.2),
// _noise_cipher.ts (CipherState, 5.1), _noise_crypto.ts (sections 4, 12).
import { concat } from "./_bytes.ts";
import { type CipherState, TAG_LENGTH } from "./_noise_cipher.ts";
import {
  dh,
  DH_LENGTH,
  type DhKeyPair,
  generateKeyPair,
  keyPairFromPrivateKey,
} from "./_noise_crypto.ts";
import { SymmetricState } from "./_noise_symmetric.ts";

/** The full protocol name; its bytes start the handshake hash. */
export const PROTOCOL_NAME = "Noise_NNpsk0_25519_AESGCM_SHA256";
/** Every Noise message, handshake or transport, is at most this long. */
export const MAX_MESSAGE_LENGTH = 65535;
/** Largest plaintext in one transport message. */
export const MAX_PAYLOAD_LENGTH = MAX_MESSAGE_LENGTH - TAG_LENGTH;
/** The pre-shared key is exactly 32 bytes (spec section 9). */
export const PSK_LENGTH = 32;

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
