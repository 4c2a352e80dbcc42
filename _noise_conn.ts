// Private: an established Noise channel (the class behind the NoiseConn
// interface of noise.ts): transport messages encrypted and decrypted with
// the session's two CipherStates over a FrameIO, as messages (send(),
// receive()) or as byte streams (readable, writable). The interface
// documents every member. Longer than most files here (about 330 lines)
// because reads, writes and closing share one state (the failure that ended
// the channel, the write queue, the read turn) that must not be split.
import { type Deadline, optionalDeadline, raceSignal } from "./_deadline.ts";
import { ProtocolError } from "./errors.ts";
import { type CipherState, DecryptError, TAG_LENGTH } from "./_noise_cipher.ts";
import type { FrameIO } from "./_noise_frames.ts";
import { type HandshakeResult, MAX_PAYLOAD_LENGTH } from "./_noise_state.ts";
import type { NoiseConn, NoiseIoOptions } from "./noise.ts";

const EMPTY = new Uint8Array(0);

/**
 * The channel over `io` once the handshake is done. `first` is the data of
 * the initiator's first transport message, which the responder read during
 * the handshake.
 */
export function createNoiseConn(
  io: FrameIO,
  initiator: boolean,
  session: HandshakeResult,
  gracePeriod: number,
  first?: Uint8Array<ArrayBuffer>,
): NoiseConn {
  return new Channel(io, initiator, session, gracePeriod, first);
}

/** The deadline for one call, or none when it may wait for ever. */
function ioDeadline(
  options: NoiseIoOptions,
  action: string,
): Deadline | undefined {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot ${action}: expected an options object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  return optionalDeadline(options.timeout ?? Infinity, options.signal, action);
}

class Channel implements NoiseConn {
  readonly initiator: boolean;
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  readonly writable: WritableStream<Uint8Array>;
  #io: FrameIO;
  #send: CipherState;
  #receive: CipherState;
  #handshakeHash: Uint8Array<ArrayBuffer>;
  #mode: "stream" | "messages" | undefined;
  // Readers take turns; the message being read outlives a reader that stops
  // waiting, and the next one gets it.
  #readTurn: Promise<void> = Promise.resolve();
  #inFlight: Promise<Uint8Array<ArrayBuffer> | null> | undefined;
  #writeChain: Promise<unknown> = Promise.resolve();
  #failure: unknown;
  #writeClosed = false;
  #gracePeriod: number;
  // The data of the initiator's first transport message, which the
  // responder read during the handshake: the first read returns it.
  #first: Uint8Array<ArrayBuffer> | undefined;

  constructor(
    io: FrameIO,
    initiator: boolean,
    { send, receive, handshakeHash }: HandshakeResult,
    gracePeriod: number,
    first: Uint8Array<ArrayBuffer> | undefined,
  ) {
    this.#io = io;
    if (first !== undefined && first.byteLength > 0) this.#first = first;
    this.#gracePeriod = gracePeriod;
    this.initiator = initiator;
    this.#send = send;
    this.#receive = receive;
    this.#handshakeHash = handshakeHash;
    this.readable = new ReadableStream({
      type: "bytes",
      pull: async (controller) => {
        if (this.#mode === "messages") {
          throw new TypeError(
            "Cannot read from readable: this NoiseConn is read with receive(); use one or the other",
          );
        }
        this.#mode = "stream";
        let message: Uint8Array<ArrayBuffer> | null;
        do {
          message = await this.#read();
        } while (message !== null && message.byteLength === 0);
        if (message === null) {
          controller.close();
          controller.byobRequest?.respond(0);
          return;
        }
        controller.enqueue(message);
      },
      cancel: () => this.close(),
    }) as ReadableStream<Uint8Array<ArrayBuffer>>;
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) => this.#write(chunk),
      close: () => this.closeWrite(),
      abort: () => this.close(),
    });
  }

  /** A copy: the caller cannot change ours. */
  get handshakeHash(): Uint8Array<ArrayBuffer> {
    return this.#handshakeHash.slice();
  }

  get remoteAddr(): Deno.Addr | undefined {
    return (this.#io.conn as Partial<{ remoteAddr: Deno.Addr }>).remoteAddr;
  }

  get localAddr(): Deno.Addr | undefined {
    return (this.#io.conn as Partial<{ localAddr: Deno.Addr }>).localAddr;
  }

  #fail(error: unknown): never {
    this.#failure ??= error;
    this.close();
    throw error;
  }

  /** One transport message, decrypted; `null` at a clean end of stream. */
  async #read(
    options: NoiseIoOptions = {},
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    using limit = ioDeadline(options, "receive a Noise message");
    const signal = limit?.signal;
    const previous = this.#readTurn;
    let release!: () => void;
    this.#readTurn = new Promise<void>((resolve) => release = resolve);
    try {
      await raceSignal(previous, signal);
      if (this.#inFlight === undefined) {
        this.#inFlight = this.#readMessage();
        this.#inFlight.catch(() => {});
      }
      const message = await raceSignal(this.#inFlight, signal);
      // The end of stream and failures stay for every later call.
      if (message !== null) this.#inFlight = undefined;
      return message;
    } finally {
      // The next reader goes after us and after whoever we queued behind.
      previous.then(release);
    }
  }

  async #readMessage(): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#io.closed) return null;
    if (this.#first !== undefined) {
      const first = this.#first;
      this.#first = undefined;
      return first;
    }
    const index = this.#receive.nonce;
    let length: number | null;
    let body: Uint8Array<ArrayBuffer>;
    try {
      length = await this.#io.readLength("a Noise message");
      if (length === null) return null;
      if (length < TAG_LENGTH) {
        throw new ProtocolError(
          `Cannot read Noise message ${index}: its length is ${length} bytes, less than the ${TAG_LENGTH}-byte tag; the peer does not speak Noise or the stream was damaged`,
          "malformed",
        );
      }
      body = await this.#io.readBody(length, `Noise message ${index}`);
    } catch (error) {
      // A local close() ends reads as an end of stream.
      if (this.#io.closed && this.#failure === undefined) return null;
      this.#fail(error);
    }
    try {
      return await this.#receive.decryptWithAd(EMPTY, body);
    } catch (error) {
      if (error instanceof DecryptError) {
        this.#fail(
          new ProtocolError(
            `Cannot decrypt Noise message ${index}: its authentication tag does not verify (it was modified, replayed, reordered or cut short on the way); the connection is closed`,
            "malformed",
            { cause: error },
          ),
        );
      }
      this.#fail(error);
    }
  }

  /** Encrypts and writes `data` as one or more messages, in call order. */
  async #write(data: Uint8Array, options: NoiseIoOptions = {}): Promise<void> {
    using limit = ioDeadline(options, "send a Noise message");
    const signal = limit?.signal;
    const task = this.#writeChain.then(() => this.#writeNow(data, signal));
    this.#writeChain = task.catch(() => {});
    await raceSignal(task, signal);
  }

  async #writeNow(
    data: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    // Stopped while queued: nothing is encrypted or written, so the message
    // is simply not sent (the caller has its rejection already).
    if (signal?.aborted) return;
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#io.closed || this.#writeClosed) {
      throw new TypeError(
        "Cannot send on the Noise connection: it is closed for writing",
      );
    }
    // From here the message is committed: its nonce is spent once it is
    // encrypted and its frame may be half written. The peer could not read
    // on in step after that, so stopping now closes the connection.
    const onAbort = () => this.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      let offset = 0;
      do {
        const end = Math.min(offset + MAX_PAYLOAD_LENGTH, data.byteLength);
        try {
          // Encryption fails only when the nonces are used up; like a write
          // error, that ends the connection.
          const ciphertext = await this.#send.encryptWithAd(
            EMPTY,
            new Uint8Array(data.subarray(offset, end)),
          );
          await this.#io.writeFrame(ciphertext);
        } catch (error) {
          if (this.#io.closed && this.#failure === undefined) {
            throw new TypeError(
              "Cannot send on the Noise connection: it was closed during the write",
              { cause: error },
            );
          }
          this.#fail(error);
        }
        offset = end;
      } while (offset < data.byteLength);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  send(data: Uint8Array, options: NoiseIoOptions = {}): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      return Promise.reject(
        new TypeError(
          `Cannot send on the Noise connection: expected a Uint8Array, got ${typeof data}`,
        ),
      );
    }
    if (data.byteLength > MAX_PAYLOAD_LENGTH) {
      return Promise.reject(
        new RangeError(
          `Cannot send a Noise message of ${data.byteLength} bytes: the most is ${MAX_PAYLOAD_LENGTH}; write through writable to split it`,
        ),
      );
    }
    return this.#write(data, options);
  }

  receive(
    options: NoiseIoOptions = {},
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.#mode === "stream") {
      return Promise.reject(
        new TypeError(
          "Cannot receive on the Noise connection: its readable stream is in use; use one or the other",
        ),
      );
    }
    this.#mode = "messages";
    return this.#read(options);
  }

  async closeWrite(options: NoiseIoOptions = {}): Promise<void> {
    using limit = ioDeadline(
      options,
      "close the Noise connection for writing",
    );
    const signal = limit?.signal;
    const task = this.#writeChain.then(async () => {
      // Stopped while queued: the sending side stays open.
      if (signal?.aborted) return;
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#io.closed) {
        throw new TypeError(
          "Cannot close the Noise connection for writing: it is closed",
        );
      }
      if (this.#writeClosed) return;
      this.#writeClosed = true;
      await this.#io.closeWrite();
    });
    this.#writeChain = task.catch(() => {});
    await raceSignal(task, signal);
  }

  close(): void {
    this.#io.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#writeChain,
        new Promise<void>((resolve) => {
          if (Number.isFinite(this.#gracePeriod)) {
            timer = setTimeout(resolve, this.#gracePeriod);
          }
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    this.close();
    // Closing settles a write still waiting on the peer.
    await this.#writeChain;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Never shows key material. */
  [Symbol.for("Deno.customInspect")](): string {
    return `NoiseConn { initiator: ${this.initiator}, closed: ${this.#io.closed} }`;
  }
}
