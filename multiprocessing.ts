/**
 * Talk to Python's `multiprocessing.connection` from Deno: a listener and a
 * client that speak its wire format and its mutual HMAC authentication, so a
 * Deno process can join a Python system as a worker or as a coordinator.
 *
 * ## The protocol, as CPython speaks it over sockets
 *
 * **Messages.** Every message is a length then the payload. The length is a
 * 4-byte big-endian signed integer; a payload longer than `0x7fffffff` bytes
 * is announced as `-1` followed by an 8-byte big-endian unsigned length.
 * There is no other framing: no type byte, no checksum.
 *
 * **Authentication** runs in both directions right after the connect,
 * and every step is one message. The listener first *delivers* a challenge
 * and then *answers* the client's; the client answers first, then delivers.
 *
 * - Delivering (Python 3.12 and later): send `#CHALLENGE#` followed by the
 *   challenge `{sha256}` + 40 random bytes. The peer answers `{sha256}` (or
 *   the name of another digest it picked) followed by the HMAC, under the
 *   shared authkey, of the whole challenge *including* its `{sha256}`
 *   prefix. The deliverer replies `#WELCOME#` when the MAC is right and
 *   `#FAILURE#` when it is not.
 * - Legacy (Python 3.11 and older): the challenge is 20 random bytes with no
 *   digest name, and the answer is the bare 16-byte HMAC-MD5 of whatever
 *   follows `#CHALLENGE#`. A modern deliverer recognises a legacy answer by
 *   its length (16 bytes) and a modern answerer recognises a legacy
 *   challenge by its length (20 bytes).
 * - Every handshake message is refused above 256 bytes.
 *
 * ## What this module does with it
 *
 * - Digests: it accepts and answers `sha256` and `sha384` (computed and
 *   verified with WebCrypto). `sha3_256` and `sha3_384`, which CPython also
 *   allows, are refused with an {@linkcode AuthenticationError} of reason
 *   `"unsupported"` because WebCrypto has no SHA-3.
 * - Legacy HMAC-MD5 peers are refused by default, with an error that says
 *   so and names the option `legacyMd5: true`, which allows them (MD5 comes
 *   from `node:crypto`). Modern CPython accepts legacy peers silently; we
 *   make it a choice because it is MD5.
 * - Every MAC is checked in constant time (`crypto.subtle.verify`,
 *   `timingSafeEqual` for MD5). The whole handshake has a deadline
 *   (10 s by default; CPython has none).
 * - Messages are bytes. Python's `send()`/`recv()` pickle objects; pickles
 *   are out of scope here (unpickling untrusted data runs code). Use
 *   `send_bytes()`/`recv_bytes()` on the Python side, and encode text as
 *   UTF-8 (or JSON) yourself: {@linkcode MultiprocessingConnection.sendText}
 *   and {@linkcode MultiprocessingConnection.recvText} do that.
 * - A connection without an authkey (CPython's `authkey=None`) is not
 *   supported: an authkey is always required.
 * - Transports: TCP (`hostname` and `port`), and Unix sockets (`path`),
 *   which CPython's `Listener` and `Client` use for a string address.
 *   Windows named pipes (`AF_PIPE`) are not supported.
 *
 * Authentication is not encryption: after the handshake, messages travel in
 * plaintext, as they do between Python processes.
 *
 * @example A Deno listener and a Deno client
 * ```ts
 * import {
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 * } from "./multiprocessing.ts";
 *
 * await using listener = await listenMultiprocessing({ authkey: "secret" });
 * await using client = await connectMultiprocessing({
 *   port: listener.addr.port,
 *   authkey: "secret",
 * });
 * await using server = await listener.accept();
 * await client.sendText("ping");
 * console.log(await server.recvText()); // ping
 * ```
 *
 * @module
 */

import { checkTimeout } from "./_options.ts";
import { concat, utf8 } from "./_bytes.ts";
import {
  deadline,
  DEFAULT_TIMEOUT,
  optionalDeadline,
  raceSignal,
} from "./_deadline.ts";
import { formatAddr } from "./_address.ts";
import { AuthenticationError, ProtocolError } from "./errors.ts";
import { type HashName, HmacKey } from "./handshake.ts";
import { frameHeader } from "./_multiprocessing_frame.ts";
import { AcceptLoop } from "./_accept.ts";

export { AuthenticationError, ProtocolError } from "./errors.ts";
export type { AuthenticationFailure, ProtocolFailure } from "./errors.ts";

/**
 * A digest a multiprocessing peer may use: `"sha256"` and `"sha384"` (what
 * Python 3.12+ uses and WebCrypto computes), or `"md5"`, the legacy HMAC-MD5
 * of Python 3.11 and older (only with `legacyMd5: true`).
 */
export type MultiprocessingDigest = "sha256" | "sha384" | "md5";

/** Default largest message {@linkcode MultiprocessingConnection.recvBytes} accepts: 64 MiB. */
export const MULTIPROCESSING_MAX_MESSAGE_SIZE: number = 64 * 1024 * 1024;

/** Largest handshake message, as in CPython (`recv_bytes(256)`). */
const AUTH_MESSAGE_LIMIT = 256;
/** Random bytes in a challenge we deliver (CPython's `MESSAGE_LENGTH`). */
const CHALLENGE_RANDOM_LENGTH = 40;
/** A legacy (Python 3.11 and older) challenge is exactly this long. */
const LEGACY_CHALLENGE_LENGTH = 20;
/** A legacy answer is a bare HMAC-MD5 digest. */
const MD5_LENGTH = 16;
/** Longest digest name CPython knows (`sha3_256`). */
const MAX_DIGEST_NAME = 8;

const CHALLENGE = utf8("#CHALLENGE#");
const WELCOME = utf8("#WELCOME#");
const FAILURE = utf8("#FAILURE#");
const SHA3 = new Set(["sha3_256", "sha3_384"]);
const HASHES: Readonly<Record<MultiprocessingDigest, HashName>> = {
  sha256: "SHA-256",
  sha384: "SHA-384",
  md5: "MD5",
};

const LEGACY_HINT =
  "pass legacyMd5: true to allow it (HMAC-MD5), or run the peer on Python 3.12 or later";

/** Options shared by {@linkcode listenMultiprocessing} and {@linkcode connectMultiprocessing}. */
export interface MultiprocessingAuthOptions {
  /**
   * The shared authkey: the bytes Python passes as `authkey=` (a string is
   * UTF-8 encoded). Required and non-empty.
   */
  authkey: string | Uint8Array;
  /**
   * Allow peers that only speak the legacy HMAC-MD5 handshake (Python 3.11
   * and older). Off by default because it is MD5; when off, such a peer is
   * refused with an {@linkcode AuthenticationError} of reason
   * `"unsupported"` whose message names this option.
   *
   * @default {false}
   */
  legacyMd5?: boolean;
  /**
   * The digest named in the challenges we deliver. Python 3.12+ answers
   * with the digest it is asked for.
   *
   * @default {"sha256"}
   */
  digest?: "sha256" | "sha384";
  /**
   * Deadline for the whole handshake (and, for
   * {@linkcode connectMultiprocessing}, the TCP connect), in milliseconds
   * (`Infinity` for none).
   *
   * @default {10000}
   */
  timeout?: number;
  /**
   * Largest message, in bytes, that
   * {@linkcode MultiprocessingConnection.recvBytes} accepts. A larger
   * announced length is refused before any memory is allocated for it.
   *
   * @default {67108864}
   */
  maxMessageSize?: number;
}

/**
 * Options every {@linkcode listenMultiprocessing} call takes, on TCP
 * ({@linkcode ListenMultiprocessingOptions}) or on a Unix socket
 * ({@linkcode ListenMultiprocessingUnixOptions}).
 */
export interface MultiprocessingListenerOptions
  extends MultiprocessingAuthOptions {
  /**
   * Most connections that may be handshaking or waiting to be taken by
   * {@linkcode MultiprocessingListener.accept} at once. When reached, the
   * listener stops accepting until one finishes or is taken.
   *
   * @default {64}
   */
  maxPending?: number;
  /**
   * Called with the error and the peer's address when a connection fails
   * its handshake (it has been closed; the listener goes on). Errors
   * contain no key material. Exceptions thrown by the hook are ignored.
   *
   * @default {undefined}
   */
  onHandshakeError?: (error: unknown, remoteAddr: Deno.Addr) => void;
  /** Closes the listener when aborted. */
  signal?: AbortSignal;
}

/** Options for {@linkcode listenMultiprocessing} on TCP. */
export interface ListenMultiprocessingOptions
  extends MultiprocessingListenerOptions {
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The port to listen on; `0` picks a free one (read it back from
   * {@linkcode MultiprocessingListener.addr}).
   *
   * @default {0}
   */
  port?: number;
}

/**
 * Options for {@linkcode listenMultiprocessing} on a Unix socket, the Deno
 * side of Python's `Listener("/path/to/socket", authkey=...)`.
 */
export interface ListenMultiprocessingUnixOptions
  extends MultiprocessingListenerOptions {
  /**
   * The socket file to create and listen on (it must not exist yet; it is
   * removed when the listener closes). Deno allows it by its exact path:
   * `--allow-net=unix:PATH --allow-read=PATH --allow-write=PATH`. Not
   * combined with `hostname` or `port`.
   */
  path: string;
}

/** Options for {@linkcode connectMultiprocessing} over TCP. */
export interface ConnectMultiprocessingOptions
  extends MultiprocessingAuthOptions {
  /**
   * The listener's host.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** The listener's port. */
  port: number;
  /** Aborts the connect and the handshake; rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Options for {@linkcode connectMultiprocessing} over a Unix socket, like
 * Python's `Client("/path/to/socket", authkey=...)`.
 */
export interface ConnectMultiprocessingUnixOptions
  extends MultiprocessingAuthOptions {
  /**
   * The listener's socket file. Deno allows it by its exact path:
   * `--allow-net=unix:PATH --allow-read=PATH --allow-write=PATH`. Not
   * combined with `hostname` or `port`.
   */
  path: string;
  /** Aborts the connect and the handshake; rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * The Unix socket path in `options`, or undefined for TCP; a path given
 * together with `hostname` or `port` is refused.
 */
function unixPath(options: object, action: string): string | undefined {
  const { path, hostname, port } = options as {
    path?: unknown;
    hostname?: unknown;
    port?: unknown;
  };
  if (path === undefined) return undefined;
  if (typeof path !== "string" || path === "") {
    throw new TypeError(
      `Cannot ${action}: expected path to be a non-empty string, got ${
        path === "" ? "an empty string" : path === null ? "null" : typeof path
      }`,
    );
  }
  if (hostname !== undefined || port !== undefined) {
    throw new TypeError(
      `Cannot ${action}: give either path (a Unix socket) or hostname and port (TCP), not both`,
    );
  }
  return path;
}

/**
 * Options for one send or receive on a {@linkcode MultiprocessingConnection},
 * or one {@linkcode MultiprocessingListener.accept}.
 */
export interface MultiprocessingIoOptions {
  /**
   * Deadline for this call, in milliseconds. `Infinity` (the default) waits
   * as long as the connection (or listener) lives, which suits a worker
   * waiting for jobs.
   *
   * @default {Infinity}
   */
  timeout?: number;
  /**
   * Stops waiting when aborted; rejects with the signal's reason. An
   * interrupted receive or accept loses nothing: the next call gets the
   * message or connection. An interrupted send may still be delivered.
   */
  signal?: AbortSignal;
}

interface Keys {
  readonly legacyMd5: boolean;
  readonly digest: "sha256" | "sha384";
  readonly maxMessageSize: number;
  readonly timeout: number;
  get(name: MultiprocessingDigest): HmacKey | undefined;
}

async function importKeys(options: MultiprocessingAuthOptions): Promise<Keys> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot use the options: expected an object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  const { authkey } = options;
  let raw: Uint8Array<ArrayBuffer>;
  if (typeof authkey === "string") {
    raw = utf8(authkey);
  } else if (authkey instanceof Uint8Array) {
    raw = new Uint8Array(authkey);
  } else {
    throw new TypeError(
      `Cannot use the authkey: expected a string or Uint8Array, got ${
        authkey === null ? "null" : typeof authkey
      }`,
    );
  }
  if (raw.byteLength === 0) {
    throw new TypeError(
      "Cannot use the authkey: it is empty; give the same non-empty authkey as the Python side",
    );
  }
  const legacyMd5 = options.legacyMd5 ?? false;
  if (typeof legacyMd5 !== "boolean") {
    throw new TypeError(
      `Cannot use legacyMd5: expected a boolean, got ${typeof legacyMd5}`,
    );
  }
  const digest = options.digest ?? "sha256";
  if (digest !== "sha256" && digest !== "sha384") {
    throw new TypeError(
      `Cannot use digest "${digest}": expected "sha256" or "sha384"`,
    );
  }
  const maxMessageSize = options.maxMessageSize ??
    MULTIPROCESSING_MAX_MESSAGE_SIZE;
  if (!Number.isSafeInteger(maxMessageSize) || maxMessageSize < 0) {
    throw new RangeError(
      `Cannot use maxMessageSize ${maxMessageSize}: expected a whole number of bytes, 0 or more`,
    );
  }
  const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
  try {
    const keys = new Map<MultiprocessingDigest, HmacKey>();
    for (const name of ["sha256", "sha384", "md5"] as const) {
      if (name === "md5" && !legacyMd5) continue;
      keys.set(name, await HmacKey.import(raw, { hash: HASHES[name] }));
    }
    return {
      legacyMd5,
      digest,
      maxMessageSize,
      timeout,
      get: (name) => keys.get(name),
    };
  } finally {
    raw.fill(0);
  }
}

/** What a connection runs over: a `Deno.Conn` fits. */
interface Transport {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
}

/** Bytes read ahead of the current frame, at most, once authenticated. */
const READ_AHEAD = 64 * 1024;
/**
 * The read buffer during the handshake: two whole handshake messages. A
 * peer that has not authenticated (and may never send a byte) costs no more.
 */
const HANDSHAKE_READ_AHEAD = 2 * (12 + AUTH_MESSAGE_LIMIT);

/**
 * Frames on one transport: buffered reads (a message that does not fit the
 * buffer is read straight into its own array) and writes queued whole, so
 * concurrent sends never interleave.
 */
class Wire {
  #transport: Transport;
  // Small until the peer has authenticated, then READ_AHEAD (enlarge()).
  #buffer = new Uint8Array(HANDSHAKE_READ_AHEAD);
  #start = 0;
  #end = 0;
  #eof = false;
  #pendingRead: Promise<unknown> | undefined;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Grows the read buffer to READ_AHEAD, keeping bytes not read yet. */
  enlarge(): void {
    if (this.#buffer.byteLength >= READ_AHEAD) return;
    const buffer = new Uint8Array(READ_AHEAD);
    buffer.set(this.#buffer.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buffer = buffer;
  }

  async #read(into: Uint8Array): Promise<number | null> {
    const read = this.#transport.read(into);
    this.#pendingRead = read;
    try {
      return await read;
    } finally {
      this.#pendingRead = undefined;
    }
  }

  /** Reads exactly `n` bytes; null on a clean end of stream before the first. */
  async take(
    n: number,
    allowEof: boolean,
    what: string,
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    const out = new Uint8Array(n);
    let filled = Math.min(n, this.#end - this.#start);
    out.set(this.#buffer.subarray(this.#start, this.#start + filled));
    this.#start += filled;
    while (filled < n) {
      let count: number | null = null;
      if (!this.#eof) {
        if (n - filled >= this.#buffer.byteLength) {
          // Big: straight into the message, no read-ahead.
          count = await this.#read(out.subarray(filled));
          if (count !== null) filled += count;
        } else {
          this.#start = this.#end = 0;
          count = await this.#read(this.#buffer);
          if (count !== null) {
            this.#end = count;
            const used = Math.min(n - filled, count);
            out.set(this.#buffer.subarray(0, used), filled);
            this.#start = used;
            filled += used;
          }
        }
      }
      if (count === null) {
        this.#eof = true;
        if (filled === 0 && allowEof) return null;
        throw new ProtocolError(
          `Cannot read ${what}: the peer closed the connection after ${filled} of ${n} bytes`,
          "closed",
        );
      }
    }
    return out;
  }

  /**
   * Reads one message of at most `max` bytes; null on a clean end of stream
   * between messages. `tooLarge` builds the error for a longer one.
   */
  async readFrame(
    max: number,
    what: string,
    tooLarge: (size: number | bigint) => Error,
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    const head = await this.take(4, true, `the length of ${what}`);
    if (head === null) return null;
    let size = new DataView(head.buffer).getInt32(0);
    if (size === -1) {
      const long = await this.take(8, false, `the length of ${what}`);
      const big = new DataView(long!.buffer).getBigUint64(0);
      if (big > BigInt(max)) throw tooLarge(big);
      size = Number(big);
    } else if (size < 0) {
      throw new ProtocolError(
        `Cannot read ${what}: the peer sent the negative length ${size}; it does not speak the multiprocessing protocol`,
        "malformed",
      );
    }
    if (size > max) throw tooLarge(size);
    return (await this.take(size, false, what))!;
  }

  /** Queues one message (length then payload); resolves once it is written. */
  writeFrame(data: Uint8Array): Promise<void> {
    const size = data.byteLength;
    const head = frameHeader(size);
    // One write for small messages: no Nagle delay between the two parts.
    const parts = size <= 16384 ? [concat(head, data)] : [head, data];
    const write = this.#writing.then(async () => {
      if (this.#closed) {
        throw new Deno.errors.BadResource(
          "Cannot send the message: the connection is closed",
        );
      }
      for (const part of parts) {
        let offset = 0;
        while (offset < part.byteLength) {
          offset += await this.#transport.write(part.subarray(offset));
        }
      }
    });
    // A failed write fails its own caller; the queue goes on (and fails fast
    // if the socket is gone).
    this.#writing = write.catch(() => {});
    return write;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#transport.close();
    } catch {
      // already closed
    }
  }

  /** Resolves when no read is in flight (after {@linkcode close}). */
  async settled(): Promise<void> {
    await this.#pendingRead?.catch(() => {});
    await this.#writing;
  }
}

function handshakeTooLarge(size: number | bigint): ProtocolError {
  return new ProtocolError(
    `Cannot authenticate: the peer's handshake message is ${size} bytes, over the ${AUTH_MESSAGE_LIMIT}-byte limit; is it a multiprocessing peer?`,
    "too-large",
  );
}

async function readAuthMessage(
  wire: Wire,
  what: string,
  signal: AbortSignal,
): Promise<Uint8Array<ArrayBuffer>> {
  const message = await raceSignal(
    wire.readFrame(AUTH_MESSAGE_LIMIT, what, handshakeTooLarge),
    signal,
  );
  if (message === null) {
    throw new ProtocolError(
      `Cannot read ${what}: the peer closed the connection before sending it`,
      "closed",
    );
  }
  return message;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.byteLength < prefix.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) {
    if (bytes[i] !== prefix[i]) return false;
  }
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && startsWith(a, b);
}

/**
 * Splits `{name}rest` as CPython does; returns null without a prefix.
 * The name is only reported when it looks like a digest name.
 */
function splitDigest(
  message: Uint8Array<ArrayBuffer>,
): { name: string; rest: Uint8Array<ArrayBuffer> } | null {
  if (message[0] !== 0x7b /* { */) return null;
  const end = message.subarray(0, MAX_DIGEST_NAME + 2).indexOf(0x7d /* } */);
  if (end < 1) return null;
  const name = new TextDecoder().decode(message.subarray(1, end));
  return {
    name: /^[a-z0-9_]{1,8}$/.test(name) ? name : "?",
    rest: message.slice(end + 1),
  };
}

function digestFor(
  name: string,
  keys: Keys,
  action: string,
): { digest: MultiprocessingDigest; key: HmacKey } {
  if (name === "sha256" || name === "sha384" || name === "md5") {
    const key = keys.get(name);
    if (key) return { digest: name, key };
    throw new AuthenticationError(
      `Cannot ${action}: the peer uses HMAC-MD5; ${LEGACY_HINT}`,
      "unsupported",
    );
  }
  if (SHA3.has(name)) {
    throw new AuthenticationError(
      `Cannot ${action}: the peer asks for HMAC-${name}, which WebCrypto cannot compute; configure the peer to use sha256 or sha384`,
      "unsupported",
    );
  }
  throw new AuthenticationError(
    `Cannot ${action}: the peer asks for the unknown digest "${name}"; expected sha256 or sha384`,
    "unsupported",
  );
}

/** Sends a challenge, checks the answer, sends the verdict. */
async function deliverChallenge(
  wire: Wire,
  keys: Keys,
  signal: AbortSignal,
): Promise<MultiprocessingDigest> {
  const action = "authenticate the peer";
  const message = concat(
    utf8(`{${keys.digest}}`),
    crypto.getRandomValues(new Uint8Array(CHALLENGE_RANDOM_LENGTH)),
  );
  await raceSignal(wire.writeFrame(concat(CHALLENGE, message)), signal);
  const answer = await readAuthMessage(
    wire,
    "the peer's answer to our challenge",
    signal,
  );
  let digest: MultiprocessingDigest;
  try {
    digest = await checkAnswer(answer, message, keys, action);
  } catch (error) {
    // The verdict is best effort after a failure; the failure is the news.
    await raceSignal(wire.writeFrame(FAILURE), signal).catch(() => {});
    throw error;
  }
  await raceSignal(wire.writeFrame(WELCOME), signal);
  return digest;
}

/**
 * Refuses a MAC of the wrong length as malformed (CPython: "expected 'sha256'
 * of length 32 got 20"): no key makes it right, so it says nothing about the
 * authkey.
 */
function checkMacLength(
  mac: Uint8Array,
  expected: number,
  name: string,
  action: string,
): void {
  if (mac.byteLength !== expected) {
    throw new ProtocolError(
      `Cannot ${action}: expected a ${expected}-byte MAC (${name}), got ${mac.byteLength} bytes; is it a multiprocessing peer?`,
      "malformed",
    );
  }
}

/** Verifies the peer's answer to `message`; returns the digest it used. */
async function checkAnswer(
  answer: Uint8Array<ArrayBuffer>,
  message: Uint8Array<ArrayBuffer>,
  keys: Keys,
  action: string,
): Promise<MultiprocessingDigest> {
  let digest: MultiprocessingDigest;
  let key: HmacKey;
  let mac: Uint8Array<ArrayBuffer>;
  if (
    answer.byteLength === MD5_LENGTH ||
    answer.byteLength === LEGACY_CHALLENGE_LENGTH
  ) {
    // A legacy peer: a bare HMAC-MD5 (CPython reads 20 bytes the same way,
    // and refuses them for their length).
    checkMacLength(answer, MD5_LENGTH, "HMAC-MD5", action);
    const md5 = keys.get("md5");
    if (!md5) {
      throw new AuthenticationError(
        `Cannot ${action}: it answered with legacy HMAC-MD5, as Python 3.11 and older do; ${LEGACY_HINT}`,
        "unsupported",
      );
    }
    [digest, key, mac] = ["md5", md5, answer];
  } else {
    const split = splitDigest(answer);
    if (split === null) {
      throw new ProtocolError(
        `Cannot ${action}: its answer has no {digest} prefix; is it a multiprocessing peer?`,
        "malformed",
      );
    }
    ({ digest, key } = digestFor(split.name, keys, action));
    mac = split.rest;
    checkMacLength(
      mac,
      key.digestLength,
      `HMAC-${digest.toUpperCase()}`,
      action,
    );
  }
  if (!await key.verify(mac, message)) {
    throw new AuthenticationError(
      `Cannot ${action}: its answer does not match our challenge under our authkey (the authkeys differ)`,
      "wrong-key",
    );
  }
  return digest;
}

/** Reads a challenge, answers it, reads the verdict. */
async function answerChallenge(
  wire: Wire,
  keys: Keys,
  signal: AbortSignal,
): Promise<void> {
  const action = "answer the peer's challenge";
  const challenge = await readAuthMessage(wire, "the peer's challenge", signal);
  if (!startsWith(challenge, CHALLENGE)) {
    throw new ProtocolError(
      `Cannot ${action}: its message is not a challenge; is it a multiprocessing peer?`,
      "malformed",
    );
  }
  const message = challenge.slice(CHALLENGE.byteLength);
  if (message.byteLength < LEGACY_CHALLENGE_LENGTH) {
    throw new ProtocolError(
      `Cannot ${action}: the challenge is ${message.byteLength} bytes, under the ${LEGACY_CHALLENGE_LENGTH}-byte minimum`,
      "malformed",
    );
  }
  let answer: Uint8Array<ArrayBuffer>;
  if (message.byteLength === LEGACY_CHALLENGE_LENGTH) {
    const md5 = keys.get("md5");
    if (!md5) {
      throw new AuthenticationError(
        `Cannot ${action}: it is a legacy HMAC-MD5 challenge, as Python 3.11 and older send; ${LEGACY_HINT}`,
        "unsupported",
      );
    }
    answer = await md5.sign(message);
  } else {
    const split = splitDigest(message);
    if (split === null) {
      throw new ProtocolError(
        `Cannot ${action}: the challenge has no {digest} prefix; is it a multiprocessing peer?`,
        "malformed",
      );
    }
    const { digest, key } = digestFor(split.name, keys, action);
    // The MAC covers the whole challenge, its {digest} prefix included.
    answer = concat(utf8(`{${digest}}`), await key.sign(message));
  }
  await raceSignal(wire.writeFrame(answer), signal);
  const verdict = await readAuthMessage(wire, "the peer's verdict", signal);
  if (sameBytes(verdict, WELCOME)) return;
  if (sameBytes(verdict, FAILURE)) {
    throw new AuthenticationError(
      "Cannot authenticate to the peer: it rejected our answer (the authkeys differ)",
      "rejected",
    );
  }
  throw new ProtocolError(
    "Cannot authenticate to the peer: its verdict is neither #WELCOME# nor #FAILURE#",
    "malformed",
  );
}

// Set in the classes' static blocks: their constructors stay private.
let openConnection: (
  conn: Deno.Conn,
  role: "listener" | "client",
  keys: Keys,
  signal: AbortSignal,
) => Promise<MultiprocessingConnection>;
let createListener: <A extends Deno.NetAddr | Deno.UnixAddr>(
  listener: Deno.Listener<Deno.Conn, A>,
  keys: Keys,
  maxPending: number,
  options: MultiprocessingListenerOptions,
) => MultiprocessingListener<A>;

/**
 * An authenticated connection to a Python (or Deno) `multiprocessing`
 * peer: one message per {@linkcode MultiprocessingConnection.sendBytes},
 * one per {@linkcode MultiprocessingConnection.recvBytes}, exactly as
 * Python's `send_bytes()` and `recv_bytes()`.
 *
 * Get one from {@linkcode connectMultiprocessing} or a
 * {@linkcode MultiprocessingListener}. Calls may overlap: sends go out whole
 * and in call order, receives get messages in call order. Iterating the
 * connection yields messages until the peer closes.
 *
 * @example Echo every message back until the peer closes
 * ```ts
 * import {
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 * } from "./multiprocessing.ts";
 *
 * await using listener = await listenMultiprocessing({ authkey: "k" });
 * const client = await connectMultiprocessing({
 *   port: listener.addr.port,
 *   authkey: "k",
 * });
 * await using server = await listener.accept();
 * await client.sendBytes(new Uint8Array([1, 2, 3]));
 * client.close();
 * for await (const message of server) await server.sendBytes(message);
 * ```
 */
export class MultiprocessingConnection
  implements AsyncIterable<Uint8Array<ArrayBuffer>>, AsyncDisposable {
  /** Our end's address. */
  readonly localAddr: Deno.Addr;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** The digest the peer proved the authkey with (`"md5"` for a legacy peer). */
  readonly peerDigest: MultiprocessingDigest;
  #wire: Wire;
  #maxMessageSize: number;
  #frame: Promise<Uint8Array<ArrayBuffer> | null> | undefined;
  #turn: Promise<void> = Promise.resolve();

  #throwIfClosed(): void {
    if (this.#wire.closed) {
      throw new Deno.errors.BadResource(
        "Cannot receive a message: the connection is closed",
      );
    }
  }

  static {
    openConnection = async (conn, role, keys, signal) => {
      const wire = new Wire(conn);
      try {
        let digest: MultiprocessingDigest;
        if (role === "listener") {
          digest = await deliverChallenge(wire, keys, signal);
          await answerChallenge(wire, keys, signal);
        } else {
          await answerChallenge(wire, keys, signal);
          digest = await deliverChallenge(wire, keys, signal);
        }
        // Authenticated: now the peer may read ahead as far as we do.
        wire.enlarge();
        return new MultiprocessingConnection(
          wire,
          conn,
          digest,
          keys.maxMessageSize,
        );
      } catch (error) {
        wire.close();
        await wire.settled();
        throw error;
      }
    };
  }

  private constructor(
    wire: Wire,
    conn: Deno.Conn,
    peerDigest: MultiprocessingDigest,
    maxMessageSize: number,
  ) {
    this.#wire = wire;
    this.localAddr = conn.localAddr;
    this.remoteAddr = conn.remoteAddr;
    this.peerDigest = peerDigest;
    this.#maxMessageSize = maxMessageSize;
  }

  /**
   * Sends one message, like Python's `send_bytes()`.
   *
   * @param data The payload (may be empty).
   * @param options A deadline and a signal for the write.
   * @returns Resolves when the message has been handed to the socket.
   * @throws {TypeError} When `data` is not bytes.
   * @throws {RangeError} When `timeout` is not above 0.
   * @throws {Deno.errors.BadResource} When the connection is closed.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * await using client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * await using server = await listener.accept();
   * await client.sendBytes(new Uint8Array(0)); // an empty message is fine
   * console.log((await server.recvBytes())?.length); // 0
   * ```
   */
  async sendBytes(
    data: Uint8Array,
    options: MultiprocessingIoOptions = {},
  ): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot send the message: expected a Uint8Array, got ${
          data === null ? "null" : typeof data
        }`,
      );
    }
    if (this.#wire.closed) {
      throw new Deno.errors.BadResource(
        "Cannot send the message: the connection is closed",
      );
    }
    using limit = optionalDeadline(
      options.timeout ?? Infinity,
      options.signal,
      "send the message",
    );
    await raceSignal(this.#wire.writeFrame(data), limit?.signal);
  }

  /**
   * Sends a string as one UTF-8 message (Python: `recv_bytes().decode()`).
   *
   * @param text The text.
   * @param options A deadline and a signal for the write.
   * @returns Resolves when the message has been handed to the socket.
   * @throws {RangeError} When `timeout` is not above 0.
   * @throws {Deno.errors.BadResource} When the connection is closed.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * await using client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * await using server = await listener.accept();
   * await client.sendText(JSON.stringify({ job: 1 }));
   * console.log(JSON.parse((await server.recvText())!)); // { job: 1 }
   * ```
   */
  sendText(
    text: string,
    options: MultiprocessingIoOptions = {},
  ): Promise<void> {
    return this.sendBytes(utf8(String(text)), options);
  }

  /**
   * Receives one message, like Python's `recv_bytes()`.
   *
   * Resolves `null` when the peer has closed the connection cleanly between
   * messages (where Python raises `EOFError`); every later call resolves
   * `null` too. A close in the middle of a message, or a message over
   * `maxMessageSize`, is an error, and every later call rejects with it.
   * Once {@linkcode MultiprocessingConnection.close} has been called, every
   * call (and any still waiting) rejects with `Deno.errors.BadResource`
   * instead.
   *
   * @param options A deadline and a signal; stopping early loses nothing.
   * @returns The message, or `null` at the end of the stream.
   * @throws {ProtocolError} `"too-large"` when the announced length is over
   * `maxMessageSize` (nothing is allocated); `"closed"` when the peer closed
   * in the middle of a message; `"malformed"` for a negative length.
   * @throws {Deno.errors.BadResource} When the connection has been closed
   * with {@linkcode MultiprocessingConnection.close}.
   * @throws {RangeError} When `timeout` is not above 0.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * const client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * await using server = await listener.accept();
   * await client.sendBytes(new Uint8Array([42]));
   * client.close();
   * console.log(await server.recvBytes()); // Uint8Array(1) [ 42 ]
   * console.log(await server.recvBytes()); // null
   * ```
   */
  async recvBytes(
    options: MultiprocessingIoOptions = {},
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    const timeout = checkTimeout(options.timeout, Infinity, "timeout");
    this.#throwIfClosed();
    const previous = this.#turn;
    let release!: () => void;
    this.#turn = new Promise<void>((resolve) => release = resolve);
    const limit = optionalDeadline(
      timeout,
      options.signal,
      "receive a message",
    );
    try {
      await raceSignal(previous, limit?.signal);
      this.#throwIfClosed();
      if (this.#frame === undefined) {
        this.#frame = this.#wire.readFrame(
          this.#maxMessageSize,
          "the message",
          (size) =>
            new ProtocolError(
              `Cannot receive a message: the peer announced ${size} bytes, over the maxMessageSize limit of ${this.#maxMessageSize} bytes; raise maxMessageSize if such messages are expected`,
              "too-large",
            ),
        );
        this.#frame.catch(() => {});
      }
      const frame = this.#frame;
      const message = await raceSignal(frame, limit?.signal);
      this.#throwIfClosed();
      // Keep the end of stream (and errors, by not getting here) sticky.
      if (message !== null) this.#frame = undefined;
      return message;
    } catch (error) {
      // After close(), whatever the read ended with, the news is the close.
      if (this.#wire.closed && !(error instanceof Deno.errors.BadResource)) {
        throw new Deno.errors.BadResource(
          "Cannot receive a message: the connection is closed",
          { cause: error },
        );
      }
      throw error;
    } finally {
      limit?.[Symbol.dispose]();
      // The next caller goes after us and after whoever we queued behind.
      previous.then(release);
    }
  }

  /**
   * Receives one message and decodes it as UTF-8.
   *
   * @param options A deadline and a signal.
   * @returns The text, or `null` at the end of the stream.
   * @throws {ProtocolError} `"malformed"` when the message is not valid
   * UTF-8, and as {@linkcode MultiprocessingConnection.recvBytes}.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * await using client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * await using server = await listener.accept();
   * await server.sendText("héllo");
   * console.log(await client.recvText()); // héllo
   * ```
   */
  async recvText(
    options: MultiprocessingIoOptions = {},
  ): Promise<string | null> {
    const message = await this.recvBytes(options);
    if (message === null) return null;
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(message);
    } catch (cause) {
      throw new ProtocolError(
        "Cannot decode the message: it is not valid UTF-8",
        "malformed",
        { cause },
      );
    }
  }

  /**
   * Yields messages until the peer closes the connection.
   *
   * @returns An iterator of messages.
   * @throws {ProtocolError} As {@linkcode MultiprocessingConnection.recvBytes}.
   * @throws {Deno.errors.BadResource} When the connection is closed with
   * {@linkcode MultiprocessingConnection.close} during the iteration.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * const client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * await using server = await listener.accept();
   * await client.sendText("a");
   * await client.sendText("b");
   * client.close();
   * let count = 0;
   * for await (const _ of server) count++;
   * console.log(count); // 2
   * ```
   */
  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array<ArrayBuffer>> {
    while (true) {
      const message = await this.recvBytes();
      if (message === null) return;
      yield message;
    }
  }

  /**
   * Closes the connection. From then on every call rejects with
   * `Deno.errors.BadResource`, including calls still pending and receives
   * that would otherwise resolve `null` (end of stream) or repeat a stored
   * error. Safe to call more than once.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * const client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * const server = await listener.accept();
   * client.close();
   * server.close();
   * ```
   */
  close(): void {
    this.#wire.close();
  }

  /**
   * Closes the connection (as {@linkcode MultiprocessingConnection.close})
   * and waits until no read is left in flight; for `await using`.
   *
   * @returns Resolves when the connection is closed and its reads settled.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * await using client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * await using server = await listener.accept();
   * console.log(server.peerDigest); // sha256
   * ```
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#wire.close();
    await this.#wire.settled();
  }
}

/**
 * Opens a connection to a Python `multiprocessing.connection.Listener` (or
 * a {@linkcode MultiprocessingListener}) and authenticates both ways, like
 * Python's `Client(address, authkey=...)`: over TCP with `hostname` and
 * `port`, or over a Unix socket with `path` (Python's `Client(path)`).
 *
 * | outcome | result |
 * | --- | --- |
 * | same authkey | a {@linkcode MultiprocessingConnection} |
 * | the listener refused our answer | {@linkcode AuthenticationError} `"rejected"` |
 * | the listener's answer is wrong | {@linkcode AuthenticationError} `"wrong-key"` |
 * | legacy (Python 3.11) listener, `legacyMd5` off | {@linkcode AuthenticationError} `"unsupported"` |
 * | not a multiprocessing listener | {@linkcode ProtocolError} |
 * | stall past `timeout` / abort | `DOMException` `TimeoutError` / the signal's reason |
 *
 * @param options Address (or Unix socket path), authkey, legacy switch,
 * limits, deadline, signal.
 * @returns The authenticated connection.
 * @throws {AuthenticationError} When either side's proof fails.
 * @throws {ProtocolError} When the peer breaks the protocol or closes early.
 * @throws {TypeError} When the authkey is empty or not a string or
 * Uint8Array, `legacyMd5`, `digest` or `timeout` has the wrong type, or
 * `path` is empty or given with `hostname` or `port`.
 * @throws {RangeError} When `port` is not a whole number from 1 to 65535,
 * `timeout` is not above 0, or `maxMessageSize` is not a whole number of
 * bytes, 0 or more.
 * @throws {Deno.errors.ConnectionRefused} When nothing listens there.
 * @throws {Deno.errors.NotFound} When the Unix socket `path` does not exist.
 *
 * @example Talk to a Deno listener (a Python one works the same)
 * ```ts
 * import {
 *   AuthenticationError,
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 * } from "./mod.ts";
 *
 * await using listener = await listenMultiprocessing({ authkey: "right" });
 * try {
 *   await connectMultiprocessing({ port: listener.addr.port, authkey: "wrong" });
 * } catch (error) {
 *   if (!(error instanceof AuthenticationError)) throw error;
 *   console.log(error.reason); // rejected
 * }
 * ```
 */
export async function connectMultiprocessing(
  options: ConnectMultiprocessingOptions | ConnectMultiprocessingUnixOptions,
): Promise<MultiprocessingConnection> {
  const keys = await importKeys(options);
  const path = unixPath(options, "connect");
  let target: Deno.ConnectOptions | Deno.UnixConnectOptions;
  let where: string;
  if (path !== undefined) {
    target = { transport: "unix", path };
    where = `unix:${path}`;
  } else {
    const tcp = options as ConnectMultiprocessingOptions;
    const port = tcp.port;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new RangeError(
        `Cannot connect: expected a port from 1 to 65535, got ${port}`,
      );
    }
    const hostname = tcp.hostname ?? "127.0.0.1";
    target = { hostname, port };
    where = `${hostname}:${port}`;
  }
  using limit = deadline(
    keys.timeout,
    options.signal,
    `connect to the multiprocessing listener at ${where}`,
  );
  const connecting: Promise<Deno.Conn> = Deno.connect(
    target as Deno.ConnectOptions,
  );
  let conn: Deno.Conn;
  try {
    conn = await raceSignal(connecting, limit.signal);
  } catch (error) {
    connecting.then((late) => late.close(), () => {});
    throw error;
  }
  return await openConnection(conn, "client", keys, limit.signal);
}

/**
 * Starts a listener on a Unix socket, the Deno side of Python's
 * `Listener("/path/to/socket", authkey=...)` (which CPython picks for a
 * string address). Everything else is as on TCP: see the other overload.
 * The socket file is created here and removed when the listener closes.
 *
 * @param options The socket path, authkey, legacy switch, limits, hooks,
 * signal.
 * @returns The listening {@linkcode MultiprocessingListener}; its `addr` is
 * a `Deno.UnixAddr`.
 * @throws {TypeError} When `path` is empty or given with `hostname` or
 * `port`, the authkey is empty or not a string or Uint8Array, or
 * `legacyMd5`, `digest` or `timeout` has the wrong type.
 * @throws {RangeError} When `timeout` is not above 0, `maxMessageSize` is
 * not a whole number of bytes, 0 or more, or `maxPending` is not a whole
 * number, 1 or more.
 * @throws {Deno.errors.AddrInUse} When the socket file already exists.
 *
 * @example Over a Unix socket (run with `--allow-net=unix:/tmp/mp.sock
 * --allow-read=/tmp/mp.sock --allow-write=/tmp/mp.sock`)
 * ```ts ignore
 * import {
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 * } from "./multiprocessing.ts";
 *
 * // Python: Client("/tmp/mp.sock", authkey=b"secret") connects to it too.
 * await using listener = await listenMultiprocessing({
 *   path: "/tmp/mp.sock",
 *   authkey: "secret",
 * });
 * await using client = await connectMultiprocessing({
 *   path: "/tmp/mp.sock",
 *   authkey: "secret",
 * });
 * await using server = await listener.accept();
 * await client.sendText("over unix");
 * console.log(await server.recvText()); // over unix
 * ```
 */
export function listenMultiprocessing(
  options: ListenMultiprocessingUnixOptions,
): Promise<MultiprocessingListener<Deno.UnixAddr>>;
/**
 * Starts a TCP listener that Python's `multiprocessing.connection.Client`
 * (and {@linkcode connectMultiprocessing}) can connect to; the Deno side of
 * Python's `Listener((host, port), authkey=...)`. Pass `path` instead of
 * `hostname`/`port` for a Unix socket (the other overload).
 *
 * Each incoming connection is authenticated in its own task, with a
 * deadline, so a slow or hostile client never holds up the others. At most
 * `maxPending` connections are handshaking or waiting to be taken; failed
 * ones are closed and reported to `onHandshakeError`. A client that resets
 * its connection before it is accepted is skipped at once; only running out
 * of file descriptors makes the listener wait before its next accept (5 ms
 * doubling to 1 s, for as long as it lasts).
 *
 * @param options Address, authkey, legacy switch, limits, hooks, signal.
 * @returns The listening {@linkcode MultiprocessingListener}.
 * @throws {TypeError} When the authkey is empty or not a string or
 * Uint8Array, or `legacyMd5`, `digest` or `timeout` has the wrong type.
 * @throws {RangeError} When `port` is not a whole number from 0 to 65535,
 * `timeout` is not above 0, `maxMessageSize` is not a whole number of bytes,
 * 0 or more, or `maxPending` is not a whole number, 1 or more.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 *
 * @example Serve authenticated clients
 * ```ts
 * import {
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 * } from "./multiprocessing.ts";
 *
 * await using listener = await listenMultiprocessing({
 *   authkey: "secret",
 *   onHandshakeError: (error) => console.error(String(error)),
 * });
 * await using client = await connectMultiprocessing({
 *   port: listener.addr.port,
 *   authkey: "secret",
 * });
 * for await (const conn of listener) {
 *   await conn.sendText("welcome");
 *   conn.close();
 *   break;
 * }
 * console.log(await client.recvText()); // welcome
 * ```
 */
export function listenMultiprocessing(
  options: ListenMultiprocessingOptions,
): Promise<MultiprocessingListener<Deno.NetAddr>>;
export async function listenMultiprocessing(
  options: ListenMultiprocessingOptions | ListenMultiprocessingUnixOptions,
): Promise<MultiprocessingListener<Deno.NetAddr | Deno.UnixAddr>> {
  const keys = await importKeys(options);
  const maxPending = options.maxPending ?? 64;
  if (!Number.isInteger(maxPending) || maxPending < 1) {
    throw new RangeError(
      `Cannot use maxPending ${maxPending}: expected a whole number, 1 or more`,
    );
  }
  const path = unixPath(options, "listen");
  if (path !== undefined) {
    options.signal?.throwIfAborted();
    const listener = Deno.listen({ transport: "unix", path });
    return createListener(listener, keys, maxPending, options);
  }
  const tcp = options as ListenMultiprocessingOptions;
  const port = tcp.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot listen: expected a port from 0 to 65535, got ${port}`,
    );
  }
  options.signal?.throwIfAborted();
  const listener = Deno.listen({
    hostname: tcp.hostname ?? "127.0.0.1",
    port,
  });
  return createListener(listener, keys, maxPending, options);
}

/**
 * A listening socket that yields authenticated
 * {@linkcode MultiprocessingConnection}s; make one with
 * {@linkcode listenMultiprocessing}.
 *
 * Iterate it (`for await`) or call
 * {@linkcode MultiprocessingListener.accept}. Breaking out of a `for await`
 * loop leaves it open; {@linkcode MultiprocessingListener.close} (or
 * `await using`) closes it, along with connections not yet taken.
 *
 * @example
 * ```ts
 * import { listenMultiprocessing } from "./multiprocessing.ts";
 *
 * await using listener = await listenMultiprocessing({ authkey: "k" });
 * console.log(listener.addr.hostname); // 127.0.0.1
 * ```
 */
export class MultiprocessingListener<
  A extends Deno.NetAddr | Deno.UnixAddr = Deno.NetAddr,
> implements AsyncIterable<MultiprocessingConnection>, AsyncDisposable {
  /**
   * The address listened on: a `Deno.NetAddr` (with the port picked when
   * `port` was 0), or a `Deno.UnixAddr` for a Unix socket.
   */
  readonly addr: A;
  #listener: Deno.Listener<Deno.Conn, A>;
  #keys: Keys;
  #maxPending: number;
  #timeout: number;
  #onError: ((error: unknown, remoteAddr: Deno.Addr) => void) | undefined;
  #signal: AbortSignal | undefined;
  #onAbort = () => this.close();
  #closer = new AbortController();
  #pending = 0;
  #acceptLoop: AcceptLoop<Deno.Conn> | undefined;
  #ready: MultiprocessingConnection[] = [];
  #waiters: ((conn: MultiprocessingConnection | null) => void)[] = [];
  #tasks = new Set<Promise<void>>();
  #loop: Promise<void>;
  #closed = false;

  static {
    createListener = (listener, keys, maxPending, options) =>
      new MultiprocessingListener(listener, keys, maxPending, options);
  }

  private constructor(
    listener: Deno.Listener<Deno.Conn, A>,
    keys: Keys,
    maxPending: number,
    options: MultiprocessingListenerOptions,
  ) {
    this.#listener = listener;
    this.addr = listener.addr;
    this.#keys = keys;
    this.#maxPending = maxPending;
    this.#timeout = keys.timeout;
    this.#onError = options.onHandshakeError;
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#loop = this.#run();
  }

  /**
   * The accept loop (`_accept.ts`): pauses at `maxPending`, skips a
   * connection reset before accept at once, backs off when the process is
   * out of file descriptors, ends when the listener closes.
   */
  #run(): Promise<void> {
    this.#acceptLoop = new AcceptLoop<Deno.Conn>({
      listener: this.#listener,
      signal: this.#closer.signal,
      ready: () => this.#pending < this.#maxPending,
      onConnection: (conn) => {
        this.#pending++;
        const task = this.#authenticate(conn);
        this.#tasks.add(task);
        task.finally(() => this.#tasks.delete(task));
      },
    });
    return this.#acceptLoop.done;
  }

  async #authenticate(conn: Deno.Conn): Promise<void> {
    const remoteAddr = conn.remoteAddr;
    // A Unix socket's clients have no address of their own: name ours.
    const from = remoteAddr.transport === "unix"
      ? `unix:${(this.addr as Deno.UnixAddr).path}`
      : formatAddr(remoteAddr);
    let authenticated: MultiprocessingConnection;
    try {
      using limit = deadline(
        this.#timeout,
        this.#closer.signal,
        `authenticate the client at ${from}`,
      );
      authenticated = await openConnection(
        conn,
        "listener",
        this.#keys,
        limit.signal,
      );
    } catch (error) {
      this.#release();
      if (!this.#closed) {
        try {
          this.#onError?.(error, remoteAddr);
        } catch {
          // a failing hook must not stop the listener
        }
      }
      return;
    }
    if (this.#closed) {
      this.#release();
      await authenticated[Symbol.asyncDispose]();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#release();
      waiter(authenticated);
    } else {
      this.#ready.push(authenticated);
    }
  }

  #release(): void {
    this.#pending--;
    this.#acceptLoop?.wake();
  }

  /**
   * The next connection, or null once closed. A wait stopped by `signal`
   * leaves the queue, so the connection it would have taken goes to the
   * next caller.
   */
  #next(signal?: AbortSignal): Promise<MultiprocessingConnection | null> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const ready = this.#ready.shift();
    if (ready) {
      this.#release();
      return Promise.resolve(ready);
    }
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(signal!.reason);
      };
      const waiter = (conn: MultiprocessingConnection | null) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(conn);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /**
   * Waits for the next authenticated connection.
   *
   * A wait that times out or is aborted takes nothing: a connection that
   * arrives afterwards goes to the next call.
   *
   * @param options A deadline (none by default) and a signal for the wait.
   * @returns The connection.
   * @throws {Deno.errors.BadResource} When the listener is (or gets) closed.
   * @throws {DOMException} `TimeoutError` when `timeout` passes first; the
   * signal's reason when it aborts.
   * @throws {RangeError} When `timeout` is not above 0.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * await using client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * await using conn = await listener.accept();
   * console.log(conn.remoteAddr.transport); // tcp
   * ```
   */
  async accept(
    options: MultiprocessingIoOptions = {},
  ): Promise<MultiprocessingConnection> {
    using limit = optionalDeadline(
      options.timeout ?? Infinity,
      options.signal,
      "accept a connection",
    );
    const conn = await this.#next(limit?.signal);
    if (conn === null) {
      throw new Deno.errors.BadResource(
        "Cannot accept a connection: the listener is closed",
      );
    }
    return conn;
  }

  /**
   * Yields authenticated connections until the listener is closed.
   *
   * Each wait has no deadline. To stop iterating, close the listener (or
   * abort the `signal` given to {@linkcode listenMultiprocessing}); to bound
   * each wait, loop on {@linkcode MultiprocessingListener.accept} with
   * `{ timeout, signal }` instead.
   *
   * @returns An iterator of connections.
   *
   * @example
   * ```ts
   * import {
   *   connectMultiprocessing,
   *   listenMultiprocessing,
   * } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * await using client = await connectMultiprocessing({
   *   port: listener.addr.port,
   *   authkey: "k",
   * });
   * for await (const conn of listener) {
   *   conn.close();
   *   break;
   * }
   * ```
   */
  [Symbol.asyncIterator](): AsyncIterator<MultiprocessingConnection> {
    return {
      next: async (): Promise<IteratorResult<MultiprocessingConnection>> => {
        const conn = await this.#next();
        return conn === null
          ? { done: true, value: undefined }
          : { done: false, value: conn };
      },
      return: (): Promise<IteratorResult<MultiprocessingConnection>> =>
        Promise.resolve({ done: true, value: undefined }),
    };
  }

  /**
   * Stops listening: closes the socket, aborts handshakes in progress,
   * closes connections not yet taken and ends iterations. Connections
   * already taken stay open. Safe to call more than once.
   *
   * @example
   * ```ts
   * import { listenMultiprocessing } from "./multiprocessing.ts";
   *
   * const listener = await listenMultiprocessing({ authkey: "k" });
   * listener.close();
   * await listener[Symbol.asyncDispose]();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#closer.abort(
      new DOMException(
        "Cannot authenticate the client: the listener was closed",
        "AbortError",
      ),
    );
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    for (const waiter of this.#waiters.splice(0)) waiter(null);
    for (const conn of this.#ready.splice(0)) {
      this.#tasks.add(conn[Symbol.asyncDispose]());
    }
  }

  /**
   * Closes the listener and waits for its handshakes to wind down.
   *
   * @returns Resolves when everything the listener opened is closed.
   *
   * @example
   * ```ts
   * import { listenMultiprocessing } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * console.log(listener.addr.port > 0); // true
   * ```
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#loop;
    await Promise.allSettled([...this.#tasks]);
  }
}
