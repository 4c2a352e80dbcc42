/**
 * A pre-shared-key secure channel: the Noise protocol
 * `Noise_NNpsk0_25519_AESGCM_SHA256` (Noise Protocol Framework, revision 34)
 * over any duplex byte stream, on WebCrypto alone.
 *
 * Both ends hold the same 32-byte pre-shared key (PSK). The initiator
 * ({@linkcode connectNoise}) and the responder ({@linkcode acceptNoise})
 * exchange one handshake message each, then the initiator sends its first
 * transport message:
 *
 * ```text
 * -> psk, e        initiator: its ephemeral X25519 key, sealed under the PSK
 * <- e, ee         responder: its ephemeral key; both derive the session keys
 * -> (transport)   initiator: its first transport message (empty from connectNoise)
 * ```
 *
 * ## When the responder trusts the initiator
 *
 * The first handshake message proves that someone held the PSK, not that
 * this peer does: anyone who recorded it can replay it, and the responder
 * cannot tell a replay from a fresh one. Only a transport message from the
 * initiator, under keys that mix in the responder's fresh ephemeral key,
 * proves both the PSK and freshness. So the rule is: **the responder does
 * not report authentication before the initiator's first transport message
 * decrypts.** {@linkcode acceptNoise} (and `serve()` with
 * {@linkcode createNoiseAuthenticator}) waits for it within the handshake
 * deadline; a replayer, which cannot make it, gets an
 * {@linkcode AuthenticationError} (`serve()` counts it toward its
 * throttle). The data of that message, if any, is the application's first
 * read; an empty one is consumed.
 *
 * {@linkcode connectNoise} always sends that message, empty (a zero-length
 * payload encrypts to its 16-byte tag), right after the handshake. What it
 * means for protocols:
 *
 * - The client speaks first (a request, then the answer): nothing changes;
 *   the client's data follows the empty message at once.
 * - The server speaks first (a greeting): it works with
 *   {@linkcode connectNoise}; the greeting goes out once the empty message
 *   has arrived, half a round trip after the server's handshake reply.
 * - Another implementation as initiator must send a transport message (an
 *   empty one will do) before it waits to read; one that only listens is
 *   never authenticated and the handshake deadline ends it.
 *
 * A peer without the PSK cannot complete the handshake, and what follows is
 * encrypted and authenticated with AES-256-GCM under keys from an ephemeral
 * Diffie-Hellman exchange (forward secrecy: a PSK stolen later does not
 * decrypt recorded traffic). There are no certificates.
 *
 * On the wire every Noise message, handshake or transport, is a frame: a
 * 2-byte big-endian length, then the message (at most 65535 bytes, so at
 * most 65519 bytes of data each; longer writes are split). Handshake
 * messages carry no payload. Every frame is decrypted and its tag verified
 * before a byte of it reaches the application; a modified, replayed,
 * reordered or truncated frame ends the connection with a
 * {@linkcode ProtocolError}.
 *
 * What Noise does not do here: a peer (or an attacker on the path) that
 * closes the TCP connection at a frame boundary looks like a clean end of
 * stream; applications that need to tell the two apart send their own
 * end-of-data marker. There is no rekeying; a session refuses to go on after
 * 2^64-1 messages in one direction.
 *
 * @example A channel over loopback
 * ```ts
 * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
 *
 * const psk = generateNoisePsk();
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
 *     .then((conn) => connectNoise(conn, psk)),
 *   listener.accept().then((conn) => acceptNoise(conn, psk)),
 * ]);
 * await client.send(new TextEncoder().encode("hello"));
 * const message = await server.receive();
 * console.log(new TextDecoder().decode(message!)); // hello
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import {
  byobReader,
  closeQuietly,
  type DenoConnLike,
  isDenoConnLike,
} from "./_conn_io.ts";
import { checkDuration, checkTimeout } from "./_options.ts";
import {
  type Deadline,
  deadline,
  DEFAULT_TIMEOUT,
  optionalDeadline,
  raceSignal,
} from "./_deadline.ts";
import { utf8 } from "./_bytes.ts";
import { type CipherState, DecryptError, TAG_LENGTH } from "./_noise_cipher.ts";
import { DH_LENGTH } from "./_noise_crypto.ts";
import {
  HandshakeState,
  MAX_MESSAGE_LENGTH,
  MAX_PAYLOAD_LENGTH,
  PROTOCOL_NAME,
  PSK_LENGTH,
} from "./_noise_state.ts";
import { AuthenticationError, ProtocolError } from "./errors.ts";
import type { Duplex } from "./types.ts";

export type { Duplex } from "./types.ts";

/** The Noise protocol name this module speaks. */
export const NOISE_PROTOCOL_NAME: string = PROTOCOL_NAME;

/** Largest Noise message (the spec's limit), tag included: 65535 bytes. */
export const NOISE_MAX_MESSAGE_LENGTH: number = MAX_MESSAGE_LENGTH;

/** Most data one Noise transport message carries: 65535 - 16 = 65519 bytes. */
export const NOISE_MAX_PAYLOAD_LENGTH: number = MAX_PAYLOAD_LENGTH;

/** Length of a pre-shared key: 32 bytes. */
export const NOISE_PSK_LENGTH: number = PSK_LENGTH;

/**
 * A pre-shared key: exactly 32 bytes, or the same as 64 hexadecimal digits
 * (what `openssl rand -hex 32` prints).
 */
export type NoisePsk = Uint8Array | string;

/** Handshake message length: an ephemeral key and an empty payload's tag. */
const HANDSHAKE_MESSAGE_LENGTH = DH_LENGTH + TAG_LENGTH;

const EMPTY = new Uint8Array(0);

/**
 * Generates a fresh random pre-shared key with `crypto.getRandomValues`.
 *
 * @returns 32 random bytes.
 *
 * @example Print a key for both ends' configuration
 * ```ts
 * import { generateNoisePsk } from "./noise.ts";
 *
 * const psk = generateNoisePsk();
 * const hex = Array.from(psk, (b) => b.toString(16).padStart(2, "0")).join("");
 * console.log(hex.length); // 64
 * ```
 */
export function generateNoisePsk(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(PSK_LENGTH));
}

/** Checks and copies a PSK; never puts its value in a message. */
function parsePsk(psk: NoisePsk): Uint8Array<ArrayBuffer> {
  if (typeof psk === "string") {
    const text = psk.trim();
    if (!/^[0-9a-fA-F]*$/.test(text)) {
      throw new TypeError(
        "Cannot use the pre-shared key: a string must be 64 hexadecimal digits (for example from `openssl rand -hex 32`)",
      );
    }
    if (text.length !== PSK_LENGTH * 2) {
      throw new RangeError(
        `Cannot use the pre-shared key: expected 64 hexadecimal digits, got ${text.length}`,
      );
    }
    const bytes = new Uint8Array(PSK_LENGTH);
    for (let i = 0; i < PSK_LENGTH; i++) {
      bytes[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
    }
    return bytes;
  }
  if (!(psk instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot use the pre-shared key: expected a Uint8Array or a hex string, got ${
        psk === null ? "null" : typeof psk
      }`,
    );
  }
  if (psk.byteLength !== PSK_LENGTH) {
    throw new RangeError(
      `Cannot use the pre-shared key: expected exactly ${PSK_LENGTH} bytes, got ${psk.byteLength}; make one with generateNoisePsk()`,
    );
  }
  return new Uint8Array(psk);
}

function parsePrologue(
  prologue: Uint8Array | string | undefined,
): Uint8Array<ArrayBuffer> {
  if (prologue === undefined) return new Uint8Array(0);
  if (typeof prologue === "string") return utf8(prologue);
  if (prologue instanceof Uint8Array) return new Uint8Array(prologue);
  throw new TypeError(
    `Cannot use the prologue: expected a string or Uint8Array, got ${
      prologue === null ? "null" : typeof prologue
    }`,
  );
}

/**
 * The read buffer during the handshake: one handshake message and the
 * length of the next frame. A peer that has not authenticated (and may never
 * send a byte) costs no more; a larger first transport message grows it as
 * its bytes arrive.
 */
const HANDSHAKE_READ_BUFFER = 2 + HANDSHAKE_MESSAGE_LENGTH + 2;
/** Smallest read buffer once the handshake is done. */
const INITIAL_READ_BUFFER = 16 * 1024;
/** Largest read buffer: room for two whole frames. */
const MAX_READ_BUFFER = 2 * (2 + MAX_MESSAGE_LENGTH);

/**
 * Frame reader and writer over a duplex stream: 2-byte big-endian length,
 * then the message. Reads ahead into its own buffer (the whole stream belongs
 * to Noise).
 *
 * A `Deno.Conn` (or `Deno.TlsConn`) is read and written with its own
 * `read`/`write`: its `readable` closes the whole socket when it reaches the
 * end of the stream, which would break half-closed connections. Any other
 * {@linkcode Duplex} is used through a BYOB reader and a writer held for the
 * lifetime of the channel.
 */
class FrameIO {
  readonly conn: Duplex;
  #deno: DenoConnLike | undefined;
  #reader: ReadableStreamBYOBReader | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  // Starts with room for a handshake message, takes INITIAL_READ_BUFFER
  // once the handshake is done (enlarge()), and doubles, up to two whole
  // frames, as large messages arrive.
  #buffer = new Uint8Array(HANDSHAKE_READ_BUFFER);
  #start = 0;
  #end = 0;
  #closed = false;
  // Aborted by close(), so that a write into a stream whose sink never
  // returns still settles. (A Deno.Conn's pending ops fail on their own when
  // it closes, and reader.cancel() ends a pending stream read.)
  #closing = new AbortController();

  constructor(conn: Duplex) {
    this.conn = conn;
    if (isDenoConnLike(conn)) {
      this.#deno = conn;
      return;
    }
    this.#reader = byobReader(conn.readable);
    try {
      this.#writer = conn.writable.getWriter();
    } catch (cause) {
      this.#reader.releaseLock();
      throw new TypeError(
        "Cannot start the Noise channel: the connection's writable stream is locked by another writer; release it first",
        { cause },
      );
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** After the handshake: at least INITIAL_READ_BUFFER, unread bytes kept. */
  enlarge(): void {
    if (this.#buffer.byteLength >= INITIAL_READ_BUFFER) return;
    const buffer = new Uint8Array(INITIAL_READ_BUFFER);
    buffer.set(this.#buffer.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buffer = buffer;
  }

  /** Reads some bytes into `buffer[end..]`; the count, or 0 at the end. */
  async #fill(): Promise<number> {
    const view = new Uint8Array(
      this.#buffer.buffer,
      this.#end,
      this.#buffer.byteLength - this.#end,
    );
    if (this.#deno) return (await this.#deno.read(view)) ?? 0;
    const { value, done } = await this.#reader!.read(view);
    if (value) this.#buffer = new Uint8Array(value.buffer);
    return done ? 0 : value!.byteLength;
  }

  /**
   * Reads `length` bytes as a view into the internal buffer, valid until the
   * next read. `null` when the stream ends before the first byte and
   * `eofOk`; a {@linkcode ProtocolError} `"closed"` when it ends midway.
   */
  async #take(
    length: number,
    eofOk: boolean,
    what: string,
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    while (this.#end - this.#start < length) {
      if (this.#start + length > this.#buffer.byteLength) {
        const have = this.#end - this.#start;
        if (
          length > this.#buffer.byteLength &&
          this.#end === this.#buffer.byteLength
        ) {
          // Grown only once full of bytes that arrived, so never to more
          // than twice what the peer sent: a length it announces costs
          // nothing until its bytes come.
          const grown = new Uint8Array(
            Math.min(this.#buffer.byteLength * 2, MAX_READ_BUFFER),
          );
          grown.set(this.#buffer.subarray(this.#start, this.#end));
          this.#buffer = grown;
          this.#start = 0;
          this.#end = have;
        } else if (this.#start > 0) {
          // Room at the front: the message will be contiguous.
          this.#buffer.copyWithin(0, this.#start, this.#end);
          this.#start = 0;
          this.#end = have;
        }
      }
      const count = await this.#fill();
      if (count === 0) {
        const have = this.#end - this.#start;
        if (have === 0 && eofOk) return null;
        throw new ProtocolError(
          `Cannot read ${what}: the peer closed the connection after ${have} of ${length} bytes`,
          "closed",
        );
      }
      this.#end += count;
    }
    const out = this.#buffer.subarray(this.#start, this.#start + length);
    this.#start += length;
    return out;
  }

  /** Reads a frame's length header, or `null` on a clean end of stream. */
  async readLength(what: string): Promise<number | null> {
    const header = await this.#take(2, true, what);
    if (header === null) return null;
    return (header[0] << 8) | header[1];
  }

  /** Reads a frame body of `length` bytes (a view valid until the next read). */
  async readBody(
    length: number,
    what: string,
  ): Promise<Uint8Array<ArrayBuffer>> {
    return (await this.#take(length, false, what))!;
  }

  /** Writes one frame: the length, then the message, in one write. */
  async writeFrame(message: Uint8Array): Promise<void> {
    const frame = new Uint8Array(2 + message.byteLength);
    frame[0] = message.byteLength >>> 8;
    frame[1] = message.byteLength & 0xff;
    frame.set(message, 2);
    if (this.#deno) {
      let offset = 0;
      while (offset < frame.byteLength) {
        offset += await this.#deno.write(frame.subarray(offset));
      }
      return;
    }
    await raceSignal(this.#writer!.write(frame), this.#closing.signal);
  }

  /** Half-closes: `closeWrite()` when the connection has it (TCP, TLS). */
  async closeWrite(): Promise<void> {
    if (this.#deno) return await this.#deno.closeWrite();
    const conn = this.conn as Partial<{ closeWrite(): Promise<void> }>;
    if (typeof conn.closeWrite === "function") {
      await raceSignal(this.#writer!.ready, this.#closing.signal);
      await conn.closeWrite();
    } else {
      await raceSignal(this.#writer!.close(), this.#closing.signal);
    }
  }

  /** Closes the connection (or, without `close()`, both streams). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new Error("the Noise connection is closed"));
    const closable = this.conn as Partial<{ close(): void }>;
    if (typeof closable.close === "function") {
      closeQuietly(this.conn);
    } else {
      this.#writer?.close().catch(() => {});
    }
    this.#reader?.cancel().catch(() => {});
  }
}

/** Options for {@linkcode connectNoise} and {@linkcode acceptNoise}. */
export interface ConnectNoiseOptions {
  /**
   * Data both sides bind into the handshake (the Noise prologue), such as
   * an application name and version; the handshake fails unless both sides
   * give the same bytes. A string is UTF-8 encoded.
   *
   * @default {""}
   */
  prologue?: Uint8Array | string;
  /**
   * Deadline for the whole handshake, in milliseconds (`Infinity` for none).
   * A peer that stalls gets a `TimeoutError` `DOMException`. Calls on the
   * {@linkcode NoiseConn} afterwards take their own deadline
   * ({@linkcode NoiseIoOptions}).
   *
   * @default {10000}
   */
  timeout?: number;
  /** Aborts the handshake; it rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * How long `await using` (the connection's `Symbol.asyncDispose`) waits
   * for pending writes to go out before it closes the connection anyway, in
   * milliseconds: a peer that stops reading cannot hold it open. `0` closes
   * at once; `Infinity` waits for the writes however long they take.
   *
   * @default {5000}
   */
  gracePeriod?: number;
}

/** Options for {@linkcode acceptNoise}: the same as for {@linkcode connectNoise}. */
export type AcceptNoiseOptions = ConnectNoiseOptions;

/**
 * Options for one {@linkcode NoiseConn.send}, {@linkcode NoiseConn.receive}
 * or {@linkcode NoiseConn.closeWrite} call: how long it may wait on the
 * peer. The call rejects with the signal's reason (a `TimeoutError`
 * `DOMException` when `timeout` passes).
 *
 * What a call stopped early leaves behind:
 *
 * | call | stopped while | then |
 * | --- | --- | --- |
 * | `receive()` | waiting, even with half a message read | nothing is lost: the next `receive()` (or `readable`) gets the message |
 * | `send()` | queued behind earlier sends | the message is not sent; the connection goes on |
 * | `send()` | encrypting or writing its message | the connection is closed, as by {@linkcode NoiseConn.close}: part of the frame may be on the wire and its nonce is spent, so the stream could not go on in step |
 * | `closeWrite()` | queued behind earlier sends | the sending side stays open |
 * | `closeWrite()` | closing | the sending side is closed; the half-close finishes on its own |
 *
 * @example Wait a bounded time for the next message
 * ```ts
 * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
 *
 * const psk = generateNoisePsk();
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
 *     .then((conn) => connectNoise(conn, psk)),
 *   listener.accept().then((conn) => acceptNoise(conn, psk)),
 * ]);
 * try {
 *   await server.receive({ timeout: 100 }); // the client sends nothing yet
 * } catch (error) {
 *   console.log((error as DOMException).name); // TimeoutError
 * }
 * const stop = new AbortController();
 * await client.send(new TextEncoder().encode("late"), { timeout: 5000 });
 * const message = await server.receive({ signal: stop.signal });
 * console.log(new TextDecoder().decode(message!)); // late
 * client.close();
 * server.close();
 * ```
 */
export interface NoiseIoOptions {
  /**
   * Deadline for this call, in milliseconds. `Infinity` waits as long as
   * the connection lives (a server waiting for its client's next request).
   *
   * @default {Infinity}
   */
  timeout?: number;
  /**
   * Stops the call when aborted; it rejects with the signal's reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** Default {@linkcode ConnectNoiseOptions.gracePeriod}, in milliseconds. */
const DEFAULT_GRACE_PERIOD = 5_000;

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

let createNoiseConn: (
  io: FrameIO,
  initiator: boolean,
  send: CipherState,
  receive: CipherState,
  handshakeHash: Uint8Array<ArrayBuffer>,
  gracePeriod: number,
  first?: Uint8Array<ArrayBuffer>,
) => NoiseConn;

/**
 * An encrypted, authenticated Noise channel, returned by
 * {@linkcode connectNoise} and {@linkcode acceptNoise}.
 *
 * Use it as a byte stream through `readable` / `writable` (it has the
 * {@linkcode Duplex} shape, so `readable` supports BYOB reads), or as
 * messages through {@linkcode NoiseConn.send} / {@linkcode NoiseConn.receive}
 * (one Noise message each). Reading one way excludes the other: once one
 * has been used, the other throws a `TypeError`. Writes through either go out
 * in call order. `send()`, `receive()` and `closeWrite()` take a deadline
 * and a signal ({@linkcode NoiseIoOptions}); streams stop through
 * `pipeTo()`'s `signal`, `cancel()` and `abort()`.
 *
 * Closing it closes the underlying connection; so does any decryption or
 * framing failure. `await using` (or `using`) closes it at the end of the
 * scope.
 *
 * @example Stream use: write, half-close, read to the end
 * ```ts
 * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
 *
 * const psk = generateNoisePsk();
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
 *     .then((conn) => connectNoise(conn, psk)),
 *   listener.accept().then((conn) => acceptNoise(conn, psk)),
 * ]);
 * await using _client = client;
 * await using _server = server;
 * const writer = client.writable.getWriter();
 * await writer.write(new TextEncoder().encode("hello, "));
 * await writer.write(new TextEncoder().encode("world"));
 * await writer.close(); // the server sees the end of the stream
 * const text = await new Response(server.readable).text();
 * console.log(text); // hello, world
 * ```
 */
export class NoiseConn implements Duplex, AsyncDisposable, Disposable {
  /** Whether this side started the handshake (the initiator). */
  readonly initiator: boolean;
  /**
   * Decrypted bytes from the peer, as a byte stream (BYOB reads work). It
   * ends when the peer closes its side; it errors with a
   * {@linkcode ProtocolError} when a message fails to decrypt.
   */
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  /**
   * Bytes to encrypt and send; each write becomes one Noise message, or
   * several for writes over {@linkcode NOISE_MAX_PAYLOAD_LENGTH} bytes.
   * Closing it half-closes the connection (the peer's `readable` ends).
   */
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

  private constructor(
    io: FrameIO,
    initiator: boolean,
    send: CipherState,
    receive: CipherState,
    handshakeHash: Uint8Array<ArrayBuffer>,
    gracePeriod: number,
    first?: Uint8Array<ArrayBuffer>,
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

  static {
    createNoiseConn = (...args) => new NoiseConn(...args);
  }

  /**
   * The Noise handshake hash (32 bytes, a copy): the same on both ends of
   * one session and unique to it, for channel binding (sign it to tie an
   * identity to this very session). Not secret, not a key.
   */
  get handshakeHash(): Uint8Array<ArrayBuffer> {
    return this.#handshakeHash.slice();
  }

  /** The peer's address, when the underlying connection has one. */
  get remoteAddr(): Deno.Addr | undefined {
    return (this.#io.conn as Partial<{ remoteAddr: Deno.Addr }>).remoteAddr;
  }

  /** Our address, when the underlying connection has one. */
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

  /**
   * Encrypts and sends one Noise message.
   *
   * A send that waits on a peer that does not read can be bounded with
   * `timeout` or stopped with `signal`. Stopped while queued behind earlier
   * sends, the message is not sent; stopped while its message is being
   * written, it closes the connection (see {@linkcode NoiseIoOptions}).
   *
   * @param data At most {@linkcode NOISE_MAX_PAYLOAD_LENGTH} bytes; an empty
   * message is allowed (the peer's `receive()` returns it; only the
   * initiator's very first transport message is consumed when empty, and
   * {@linkcode connectNoise} sends that one itself).
   * @param options A deadline and a signal for this call.
   * @returns Once the message is handed to the connection.
   * @throws {RangeError} When `data` is longer than one message can carry,
   * or the session's nonces are used up (after 2^64-1 messages; the
   * connection is closed).
   * @throws {TypeError} When the connection is closed for writing.
   * @throws {DOMException} `TimeoutError` when `timeout` passes; `signal`'s
   * reason when it aborts.
   *
   * @example
   * ```ts
   * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * await client.send(new Uint8Array([1, 2, 3]), { timeout: 5000 });
   * console.log(await server.receive()); // Uint8Array(3) [ 1, 2, 3 ]
   * client.close();
   * server.close();
   * ```
   */
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

  /**
   * Receives and decrypts one Noise message. Nothing is returned before its
   * tag verifies.
   *
   * Waits as long as the connection lives unless given a `timeout` or a
   * `signal`. A receive stopped early loses nothing, even with half a
   * message read: the next call returns that message.
   *
   * @param options A deadline and a signal for this call.
   * @returns The message's data, or `null` when the peer has closed its side
   * (or this side was closed).
   * @throws {ProtocolError} When a message fails to decrypt (`"malformed"`:
   * modified, replayed, reordered), has an impossible length
   * (`"malformed"`) or is cut short (`"closed"`); the connection is closed.
   * @throws {TypeError} When `readable` is in use instead.
   * @throws {DOMException} `TimeoutError` when `timeout` passes; `signal`'s
   * reason when it aborts.
   *
   * @example
   * ```ts
   * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * await client.closeWrite();
   * console.log(await server.receive({ timeout: 5000 })); // null
   * client.close();
   * server.close();
   * ```
   */
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

  /**
   * Finishes pending writes, then closes our sending side (a TCP or TLS
   * half-close; the peer reads the end of the stream). Reading goes on.
   *
   * Pending writes can take as long as the peer takes to read them: bound
   * the wait with `timeout` or `signal`. Stopped before its turn, the
   * sending side stays open (see {@linkcode NoiseIoOptions}).
   *
   * @param options A deadline and a signal for this call.
   * @returns Once the side is closed.
   * @throws {TypeError} When the connection is already closed.
   * @throws {DOMException} `TimeoutError` when `timeout` passes; `signal`'s
   * reason when it aborts.
   *
   * @example
   * ```ts
   * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * await client.send(new TextEncoder().encode("last words"));
   * await client.closeWrite({ timeout: 5000 });
   * console.log((await server.receive())?.length, await server.receive()); // 10 null
   * client.close();
   * server.close();
   * ```
   */
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

  /**
   * Closes the connection at once, both directions; pending reads end as an
   * end of stream, pending writes fail. Closing twice does nothing.
   *
   * @example
   * ```ts
   * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * client.close();
   * console.log(await server.receive()); // null
   * server.close();
   * ```
   */
  close(): void {
    this.#io.close();
  }

  /**
   * Waits for pending writes (errors ignored), then closes the connection;
   * for `await using`. The wait lasts at most the connection's
   * `gracePeriod` (default 5000 ms, see {@linkcode ConnectNoiseOptions}):
   * after it the connection is closed anyway and writes still pending fail.
   *
   * @returns Once closed.
   *
   * @example
   * ```ts
   * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * await client[Symbol.asyncDispose]();
   * await server[Symbol.asyncDispose]();
   * ```
   */
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

  /**
   * Closes the connection at once, like {@linkcode NoiseConn.close}, for
   * `using`; `await using` also waits for pending writes first, up to the
   * connection's `gracePeriod`.
   *
   * @example
   * ```ts
   * import { generateNoisePsk, acceptNoise, connectNoise } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * using _client = client;
   * using _server = server;
   * console.log(client.handshakeHash.length); // 32
   * ```
   */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Never shows key material. */
  [Symbol.for("Deno.customInspect")](): string {
    return `NoiseConn { initiator: ${this.initiator}, closed: ${this.#io.closed} }`;
  }
}

/**
 * Reads one handshake frame. Only empty payloads are taken, so the message
 * is exactly 48 bytes; anything else is refused before it is read.
 */
async function readHandshakeMessage(
  io: FrameIO,
  initiator: boolean,
): Promise<Uint8Array<ArrayBuffer>> {
  const peer = initiator ? "responder" : "initiator";
  const what = initiator
    ? "the Noise responder's reply"
    : "the Noise initiator's first message";
  const length = await io.readLength(what);
  if (length === null) {
    if (initiator) {
      throw new AuthenticationError(
        "Cannot complete the Noise handshake: the responder closed the connection without answering; it most likely rejected our pre-shared key or prologue (or it does not speak Noise)",
        "rejected",
      );
    }
    throw new ProtocolError(
      "Cannot complete the Noise handshake: the initiator closed the connection before its first message",
      "closed",
    );
  }
  if (length !== HANDSHAKE_MESSAGE_LENGTH) {
    throw new ProtocolError(
      `Cannot complete the Noise handshake: ${what} is ${length} bytes, expected ${HANDSHAKE_MESSAGE_LENGTH} (an ephemeral key and an empty payload); the ${peer} does not speak ${PROTOCOL_NAME}`,
      length > HANDSHAKE_MESSAGE_LENGTH ? "too-large" : "malformed",
    );
  }
  return (await io.readBody(length, what)).slice();
}

/** What the responder calls the initiator's first transport message. */
const CONFIRMATION = "the Noise initiator's first transport message";

/**
 * The responder's last step: reads and decrypts the initiator's first
 * transport message and returns its data.
 *
 * In NNpsk0 the initiator's first handshake message proves that someone
 * held the PSK, not that this peer does: anyone who recorded it can replay
 * it, and it decrypts just the same. Only a transport message, under keys
 * mixed from our fresh ephemeral key, proves both the PSK and freshness. So
 * anything but a message that decrypts (a close, a reset, garbage, a frame
 * shorter than a tag) is an {@linkcode AuthenticationError}, which `serve()`
 * counts toward its throttle like a wrong key.
 */
async function readConfirmation(
  io: FrameIO,
  receive: CipherState,
): Promise<Uint8Array<ArrayBuffer>> {
  const unproven =
    "which proves it holds the pre-shared key (a replayed first message ends this way)";
  let body: Uint8Array<ArrayBuffer>;
  try {
    const length = await io.readLength(CONFIRMATION);
    if (length === null) {
      throw new AuthenticationError(
        `Cannot authenticate the Noise initiator: it closed the connection before its first transport message, ${unproven}`,
        "wrong-key",
      );
    }
    if (length < TAG_LENGTH) {
      throw new AuthenticationError(
        `Cannot authenticate the Noise initiator: its first transport message is ${length} bytes, less than the ${TAG_LENGTH}-byte tag; it did not prove it holds the pre-shared key`,
        "wrong-key",
      );
    }
    body = await io.readBody(length, CONFIRMATION);
  } catch (error) {
    if (error instanceof AuthenticationError) throw error;
    const closed = error instanceof ProtocolError && error.reason === "closed";
    throw new AuthenticationError(
      closed
        ? `Cannot authenticate the Noise initiator: it closed the connection in the middle of its first transport message, ${unproven}`
        : `Cannot authenticate the Noise initiator: the connection failed before its first transport message arrived, ${unproven}`,
      "wrong-key",
      { cause: error },
    );
  }
  try {
    return await receive.decryptWithAd(EMPTY, body);
  } catch (error) {
    throw new AuthenticationError(
      "Cannot authenticate the Noise initiator: its first transport message does not decrypt (its first message was replayed, or this one modified); it did not prove it holds the pre-shared key",
      "wrong-key",
      { cause: error },
    );
  }
}

async function handshake(
  conn: Duplex,
  psk: NoisePsk,
  initiator: boolean,
  options: ConnectNoiseOptions,
  closeOnFailure = true,
): Promise<NoiseConn> {
  const key = parsePsk(psk);
  const prologue = parsePrologue(options.prologue);
  const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
  const gracePeriod = checkDuration(
    options.gracePeriod,
    DEFAULT_GRACE_PERIOD,
    "gracePeriod",
  );
  const io = new FrameIO(conn);
  using limit = deadline(
    timeout,
    options.signal,
    initiator
      ? "complete the Noise handshake with the responder"
      : "complete the Noise handshake with the initiator",
  );
  try {
    limit.signal.throwIfAborted();
    // Disposed (its PSK copy wiped) however the handshake ends.
    using state = await HandshakeState.initialize(initiator, key, {
      prologue,
    });
    key.fill(0);
    if (initiator) {
      await raceSignal(io.writeFrame(await state.writeMessage()), limit.signal);
    }
    const message = await raceSignal(
      readHandshakeMessage(io, initiator),
      limit.signal,
    );
    try {
      await state.readMessage(message);
    } catch (error) {
      if (error instanceof DecryptError) {
        throw new AuthenticationError(
          initiator
            ? "Cannot authenticate the Noise responder: its reply does not decrypt under our pre-shared key (a different key or prologue, or the message was modified)"
            : "Cannot authenticate the Noise initiator: its first message does not decrypt under our pre-shared key (a different key or prologue, or the message was modified)",
          "wrong-key",
          { cause: error },
        );
      }
      throw new ProtocolError(
        `Cannot complete the Noise handshake: the ${
          initiator ? "responder" : "initiator"
        } sent an invalid ephemeral public key`,
        "malformed",
        { cause: error },
      );
    }
    if (!initiator) {
      let reply: Uint8Array;
      try {
        reply = await state.writeMessage();
      } catch (error) {
        throw new ProtocolError(
          "Cannot complete the Noise handshake: the initiator sent an invalid ephemeral public key",
          "malformed",
          { cause: error },
        );
      }
      await raceSignal(io.writeFrame(reply), limit.signal);
    }
    const { send, receive, handshakeHash } = state.result;
    let first: Uint8Array<ArrayBuffer> | undefined;
    if (initiator) {
      // The first transport message, empty: it proves to the responder
      // that we hold the PSK in this very session (see readConfirmation).
      await raceSignal(
        io.writeFrame(await send.encryptWithAd(EMPTY, EMPTY)),
        limit.signal,
      );
    } else {
      first = await raceSignal(readConfirmation(io, receive), limit.signal);
    }
    io.enlarge();
    return createNoiseConn(
      io,
      initiator,
      send,
      receive,
      handshakeHash,
      gracePeriod,
      first,
    );
  } catch (error) {
    if (closeOnFailure) io.close();
    if (limit.signal.aborted) throw limit.signal.reason;
    throw error;
  } finally {
    key.fill(0);
  }
}

/**
 * Runs the Noise handshake as the initiator (the client side) and returns
 * the encrypted channel.
 *
 * Sends `psk, e`, reads `e, ee`, and checks that the responder holds the
 * same PSK (and prologue): its reply only decrypts if it does. Then sends
 * an empty first transport message, which the responder needs before it
 * trusts us (see the module documentation). The connection now belongs to
 * the returned {@linkcode NoiseConn}; on any failure it is closed.
 *
 * | outcome | result |
 * | --- | --- |
 * | same PSK and prologue | a {@linkcode NoiseConn} |
 * | the reply does not decrypt | {@linkcode AuthenticationError} `"wrong-key"` |
 * | the responder closes without a reply (it rejected our PSK) | {@linkcode AuthenticationError} `"rejected"` |
 * | a reply of the wrong length (not Noise) | {@linkcode ProtocolError} `"too-large"` / `"malformed"` |
 * | the reply is cut short | {@linkcode ProtocolError} `"closed"` |
 * | no reply within `timeout` | `DOMException` `TimeoutError` |
 * | `signal` aborts | the signal's reason |
 *
 * @param conn The connection: a `Deno.Conn` or any {@linkcode Duplex}.
 * @param psk The pre-shared key: 32 bytes, or 64 hex digits.
 * @param options Prologue, deadline, signal and grace period.
 * @returns The channel.
 * @throws {AuthenticationError} When the responder does not hold the PSK.
 * @throws {ProtocolError} When the responder's reply is malformed or cut short.
 * @throws {RangeError} When the PSK is not 32 bytes, `timeout` is not above
 * 0 or `gracePeriod` is below 0.
 * @throws {TypeError} When the PSK or prologue has the wrong type, or the
 * connection's streams are locked.
 *
 * @example
 * ```ts
 * import {
 *   AuthenticationError,
 *   generateNoisePsk,
 *   acceptNoise,
 *   connectNoise,
 * } from "./mod.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
 *   listener.accept(),
 * ]);
 * const [connected, accepted] = await Promise.allSettled([
 *   connectNoise(client, generateNoisePsk()),
 *   acceptNoise(server, generateNoisePsk()), // a different key
 * ]);
 * const reason = (result: PromiseSettledResult<unknown>) =>
 *   result.status === "rejected" && result.reason instanceof AuthenticationError
 *     ? result.reason.reason
 *     : result.status;
 * console.log(reason(connected), reason(accepted)); // rejected wrong-key
 * ```
 */
export function connectNoise(
  conn: Duplex,
  psk: NoisePsk,
  options: ConnectNoiseOptions = {},
): Promise<NoiseConn> {
  return handshake(conn, psk, true, options);
}

/**
 * Runs the Noise handshake as the responder (the server side) and returns
 * the encrypted channel.
 *
 * Reads `psk, e`, which only decrypts when the initiator holds the same PSK
 * (and prologue), then sends `e, ee`, then waits for the initiator's first
 * transport message: only that one proves that this initiator holds the
 * PSK, as `psk, e` may be a replay (see the module documentation). Its
 * data, if any, is the first thing `receive()` or `readable` returns; an
 * empty one is consumed. A wrong PSK costs the server no Diffie-Hellman
 * operation. The connection now belongs to the returned
 * {@linkcode NoiseConn}; on any failure it is closed.
 *
 * | outcome | result |
 * | --- | --- |
 * | same PSK and prologue | a {@linkcode NoiseConn} |
 * | the first message does not decrypt | {@linkcode AuthenticationError} `"wrong-key"` |
 * | the first transport message does not decrypt, or the initiator closes, resets or sends a malformed frame before it (a replayed first message) | {@linkcode AuthenticationError} `"wrong-key"` |
 * | a first message of the wrong length (not Noise) | {@linkcode ProtocolError} `"too-large"` / `"malformed"` |
 * | the initiator closes early | {@linkcode ProtocolError} `"closed"` |
 * | nothing within `timeout` | `DOMException` `TimeoutError` |
 * | `signal` aborts | the signal's reason |
 *
 * @param conn The connection: a `Deno.Conn` or any {@linkcode Duplex}.
 * @param psk The pre-shared key: 32 bytes, or 64 hex digits.
 * @param options Prologue, deadline, signal and grace period.
 * @returns The channel.
 * @throws {AuthenticationError} When the initiator does not hold the PSK, or
 * does not prove it with its first transport message.
 * @throws {ProtocolError} When the first message is malformed or cut short.
 * @throws {RangeError} When the PSK is not 32 bytes, `timeout` is not above
 * 0 or `gracePeriod` is below 0.
 * @throws {TypeError} When the PSK or prologue has the wrong type, or the
 * connection's streams are locked.
 *
 * @example An echo of one message
 * ```ts
 * import { acceptNoise, connectNoise } from "./noise.ts";
 *
 * const psk = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const serving = (async () => {
 *   await using conn = await acceptNoise(await listener.accept(), psk, {
 *     prologue: "echo/1",
 *   });
 *   const message = await conn.receive();
 *   if (message) await conn.send(message);
 * })();
 * await using client = await connectNoise(
 *   await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
 *   psk,
 *   { prologue: "echo/1", timeout: 5000 },
 * );
 * await client.send(new TextEncoder().encode("ping"));
 * console.log(new TextDecoder().decode((await client.receive())!)); // ping
 * await serving;
 * ```
 */
export function acceptNoise(
  conn: Duplex,
  psk: NoisePsk,
  options: AcceptNoiseOptions = {},
): Promise<NoiseConn> {
  return handshake(conn, psk, false, options);
}

/** Options for {@linkcode createNoiseAuthenticator}. */
export interface CreateNoiseAuthenticatorOptions {
  /**
   * The Noise prologue; clients must give the same. A string is UTF-8
   * encoded.
   *
   * @default {""}
   */
  prologue?: Uint8Array | string;
  /**
   * Deadline for each handshake, in milliseconds, on top of the server's own.
   *
   * @default {10000}
   */
  timeout?: number;
  /**
   * How long `await using` on each connection waits for pending writes
   * before closing it anyway, in milliseconds (as
   * {@linkcode ConnectNoiseOptions.gracePeriod}).
   *
   * @default {5000}
   */
  gracePeriod?: number;
}

/**
 * What {@linkcode createNoiseAuthenticator} returns: a function that runs the
 * responder handshake on an accepted connection; it fits `serve()`'s
 * `authenticate` option.
 */
export type NoiseAuthenticator = (
  conn: Duplex,
  context: { readonly signal: AbortSignal },
) => Promise<NoiseConn>;

/**
 * Makes an authenticator for `serve()` that runs the Noise responder
 * handshake on each accepted connection: handlers get a {@linkcode NoiseConn}
 * instead of the raw connection, and clients without the PSK never reach
 * them. The PSK is checked (and copied) now.
 *
 * As with {@linkcode acceptNoise}, a connection counts as authenticated
 * (`onConnection`, the handler) only once the initiator's first transport
 * message decrypts; a replayed first message is an authentication failure
 * that `serve()`'s throttle counts.
 *
 * Unlike {@linkcode acceptNoise}, a failed handshake leaves the connection
 * open: `serve()` closes it, after holding it for its throttling delay when
 * the failure is an {@linkcode AuthenticationError} (a wrong PSK), so a
 * client guessing keys gets no quick answer.
 *
 * @param psk The pre-shared key: 32 bytes, or 64 hex digits.
 * @param options Prologue, per-handshake deadline and grace period.
 * @returns The authenticator: `(conn, { signal }) => Promise<NoiseConn>`.
 * @throws {RangeError} When the PSK is not 32 bytes, `timeout` is not above
 * 0 or `gracePeriod` is below 0.
 * @throws {TypeError} When the PSK or prologue has the wrong type.
 *
 * @example Use it directly (serve() calls it the same way)
 * ```ts
 * import { generateNoisePsk, createNoiseAuthenticator, connectNoise } from "./noise.ts";
 *
 * const psk = generateNoisePsk();
 * const authenticate = createNoiseAuthenticator(psk, { timeout: 5000 });
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
 *     .then((conn) => connectNoise(conn, psk)),
 *   listener.accept().then((conn) =>
 *     authenticate(conn, { signal: new AbortController().signal })
 *   ),
 * ]);
 * console.log(server.initiator, client.initiator); // false true
 * client.close();
 * server.close();
 * ```
 */
export function createNoiseAuthenticator(
  psk: NoisePsk,
  options: CreateNoiseAuthenticatorOptions = {},
): NoiseAuthenticator {
  const key = parsePsk(psk);
  const prologue = parsePrologue(options.prologue);
  const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
  const gracePeriod = checkDuration(
    options.gracePeriod,
    DEFAULT_GRACE_PERIOD,
    "gracePeriod",
  );
  // serve() closes the connection itself, after its throttling delay for
  // authentication failures, so a failed handshake leaves it open here.
  return (conn, context) =>
    handshake(conn, key, false, {
      prologue,
      timeout,
      signal: context?.signal,
      gracePeriod,
    }, false);
}
