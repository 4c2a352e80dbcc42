// The public surface of connauth's multiprocessing support: its types and
// the two functions that make connections. Most of this file is their
// documentation and examples, which users read here; the machinery lives in
// _multiprocessing_{frame,auth,options,conn,listener}.ts, one concept each.
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
 * - A listener authenticates each client in its own task, and a peer that
 *   has not authenticated cannot keep others out. It costs the listener a
 *   descriptor, about 6 KiB of heap (16 KiB of resident memory in all,
 *   measured with 4,000 held), a 40-byte random challenge and at most one
 *   HMAC check of a reply of at most 256 bytes, until `timeout`
 *   (10 s) or until it is evicted: at most `maxPending` (64) such peers are
 *   held, and one more closes the oldest of the address that holds the most
 *   (an IPv4 address, an IPv6 /64), never an authenticated connection. The
 *   accept loop pauses only while `maxPending` authenticated connections
 *   wait for `accept()`. Failed handshakes are not throttled (CPython does
 *   not throttle either): use a long random authkey, as CPython's own
 *   processes do. See {@linkcode MultiprocessingListenerOptions.maxPending}.
 * - Transports: TCP (`hostname` and `port`), and Unix sockets (`path`),
 *   which CPython's `Listener` and `Client` use for a string address.
 *   Windows named pipes (`AF_PIPE`) are not supported.
 *
 * Authentication is not encryption: after the handshake, messages travel in
 * plaintext, as they do between Python processes.
 *
 * @example A Deno listener and a Deno client
 * ```ts
 * import assert from "node:assert/strict";
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
 * assert.equal(await server.recvText(), "ping");
 * ```
 *
 * @module
 */

import type { ErrorInfo } from "./types.ts";
import { deadline, raceSignal } from "./_deadline.ts";
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  importKeys,
  listenLimits,
  resolveTarget,
} from "./_multiprocessing_options.ts";
import { openConnection } from "./_multiprocessing_conn.ts";
import { createListener } from "./_multiprocessing_listener.ts";

/**
 * A digest a multiprocessing peer may use: `"sha256"` and `"sha384"` (what
 * Python 3.12+ uses and WebCrypto computes), or `"md5"`, the legacy HMAC-MD5
 * of Python 3.11 and older (only with `legacyMd5: true`).
 */
export type MultiprocessingDigest = "sha256" | "sha384" | "md5";

/** Default largest message {@linkcode MultiprocessingConnection.recvBytes} accepts: 64 MiB. */
export const MULTIPROCESSING_MAX_MESSAGE_SIZE: number =
  DEFAULT_MAX_MESSAGE_SIZE;

/** Options shared by {@linkcode listenMultiprocessing} and {@linkcode connectMultiprocessing}. */
export interface MultiprocessingAuthOptions {
  /**
   * The shared authkey: the bytes Python passes as `authkey=` (a string is
   * UTF-8 encoded). Required and non-empty.
   *
   * A listener takes a list too, for key rotation: the current authkey
   * first, then the ones clients may still use (at most 8). A client's
   * answer is checked against every one (all of them, whichever matches),
   * the listener answers the client's challenge with the authkey the client
   * proved, and {@linkcode MultiprocessingConnection.authkeyIndex} says
   * which one it was. A client ({@linkcode connectMultiprocessing}) proves
   * one authkey.
   */
  authkey: string | Uint8Array | readonly (string | Uint8Array)[];
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
   * announced length is refused before any memory is allocated for it. A
   * whole number of at least 1, or `Infinity` for no limit (then an
   * authenticated peer decides how much memory one message takes; a length
   * the process cannot allocate is refused).
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
   * Most connections not yet authenticated at once, and most authenticated
   * ones waiting for {@linkcode MultiprocessingListener.accept}. A whole
   * number of at least 1, or `Infinity` for no limit (then every peer that
   * connects holds a handshake until `timeout`, and the queue grows as fast
   * as key holders connect).
   *
   * Connections not yet authenticated never stop the listener from
   * accepting. When one more arrives with `maxPending` of them in their
   * handshake, the listener closes the oldest of the address that holds the
   * most (an IPv4 address, an IPv6 prefix of `ipv6Prefix` bits, or one
   * entry for all Unix socket peers; among addresses holding equally many,
   * the one whose oldest is oldest) and reports it to `onError`: phase
   * `"handshake"`, a `DOMException` `AbortError` that says it was evicted to
   * make room. The connection just accepted counts too, so an address that
   * floods closes its own connections. An honest client finishes its
   * handshake within two round trips, so it is the newest and usually the
   * only unauthenticated connection of its address: silent sockets from
   * other addresses are closed before it, and it is picked only when every
   * other address holds at most one, older than its own (a flood from more
   * than `maxPending` addresses). Authenticated connections are never closed
   * to make room.
   *
   * Authenticated connections wait for `accept()` in a queue. While
   * `maxPending` of them wait (the application is not keeping up), the
   * listener stops accepting until `accept()` takes one, and new clients
   * wait in the kernel's listen backlog: a slow application pushes back on
   * its clients, and only clients that proved the authkey can make it. The
   * accept already under way still takes one more client, and handshakes
   * under way still finish and join the queue, so the listener holds at
   * most 2 x `maxPending` connections.
   *
   * Holding a silent socket is cheap (about 6 KiB of heap and a descriptor,
   * until `timeout`); closing one that its client re-opens at once is not:
   * each re-open costs an accept, a challenge and a close. On loopback on a
   * shared 2-core machine, with `maxPending: 8` and 4 addresses x 8 silent
   * sockets re-opened as soon as they were closed, a good client from
   * another address was served, connect to echo, in 50 to 80 ms (Deno) and
   * 48 to 55 ms (Python 3.12), 20 times each, against 44 to 53 ms with no
   * flood; without this policy none was served within 15 s. With the
   * default and 8 addresses x 32 silent sockets, the re-opens kept the
   * listener's core busy and a good client waited behind them in the listen
   * backlog: 0.05 to 2.3 s. With `maxPending: 1024`, which held all 512
   * silent sockets of 8 addresses x 64 without closing any, 43 to 54 ms. So
   * size it for the floods you expect, and lower `timeout` to free silent
   * sockets sooner.
   *
   * @default {64}
   */
  maxPending?: number;
  /**
   * Called for each error the listener survives: a connection that failed
   * its handshake, or that the listener ended before it authenticated (its
   * deadline, or evicted to make room: see `maxPending`) (phase
   * `"handshake"`, with the peer's address; it has been closed), or a
   * failed accept (phase `"accept"`: a client that reset
   * its connection before it was accepted, which is skipped, or the process
   * out of file descriptors, which makes the listener wait 5 ms doubling to
   * 1 s before its next accept). Errors contain no key material. Nothing is
   * reported once the listener is closed; exceptions thrown by the hook are
   * ignored. Without a hook these errors are not reported.
   *
   * @default {undefined}
   */
  onError?: (error: unknown, info: MultiprocessingErrorInfo) => void;
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
  /**
   * How many leading bits of an IPv6 address name one client when the
   * listener picks the unauthenticated connection to close (see
   * `maxPending`). A host is usually given a whole /64, so counting single
   * IPv6 addresses would let it spread a flood over addresses of its own,
   * each holding one connection, and have an honest client's closed first;
   * 128 counts each address. IPv4-mapped IPv6 addresses count as their IPv4
   * address, and link-local ones (`fe80::/10`, where every host on a link
   * shares the /64) as the whole address.
   *
   * @default {64}
   */
  ipv6Prefix?: number;
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
   * The shared authkey: the bytes Python passes as `authkey=` (a string is
   * UTF-8 encoded). Required and non-empty; one (a list is for a listener).
   */
  authkey: string | Uint8Array;
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
   * The shared authkey: the bytes Python passes as `authkey=` (a string is
   * UTF-8 encoded). Required and non-empty; one (a list is for a listener).
   */
  authkey: string | Uint8Array;
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

/**
 * What {@linkcode MultiprocessingListenerOptions.onError} is told besides
 * the error: where it happened and, for a handshake, the peer's address.
 *
 * | phase | what failed | then |
 * | --- | --- | --- |
 * | `"handshake"` | one connection's authentication: a wrong authkey ({@linkcode AuthenticationError}), a peer that breaks the protocol ({@linkcode ProtocolError}), the deadline (`TimeoutError`), evicted to make room for others (`AbortError`; see {@linkcode MultiprocessingListenerOptions.maxPending}), a reset | the connection is closed |
 * | `"accept"` | accepting the next connection: a client that reset it first, or the process out of file descriptors | skipped at once; backs off 5 ms doubling to 1 s when out of descriptors |
 *
 * @example See where a failure happened
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 *   type MultiprocessingErrorInfo,
 * } from "./multiprocessing.ts";
 *
 * const seen: MultiprocessingErrorInfo[] = [];
 * await using listener = await listenMultiprocessing({
 *   authkey: "right",
 *   onError: (_error, info) => seen.push(info),
 * });
 * await connectMultiprocessing({ port: listener.addr.port, authkey: "wrong" })
 *   .catch(() => {});
 * for (let i = 0; i < 500 && seen.length === 0; i++) {
 *   await new Promise((ok) => setTimeout(ok, 10)); // the report follows
 * }
 * assert.equal(seen[0].phase, "handshake");
 * assert.equal(seen[0].remoteAddr?.transport, "tcp");
 * ```
 */
export interface MultiprocessingErrorInfo extends ErrorInfo {
  /** `"handshake"` for a connection's authentication, `"accept"` for an accept. */
  readonly phase: "accept" | "handshake";
  /** The peer's address, for a handshake. */
  readonly remoteAddr?: Deno.NetAddr | Deno.UnixAddr;
}

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
 * import assert from "node:assert/strict";
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
 * const serving = (async () => {
 *   await using server = await listener.accept();
 *   for await (const message of server) await server.sendBytes(message);
 * })();
 * await client.sendBytes(new Uint8Array([1, 2, 3]));
 * assert.deepEqual(await client.recvBytes(), new Uint8Array([1, 2, 3]));
 * client.close();
 * await serving;
 * ```
 */
export interface MultiprocessingConnection
  extends AsyncIterable<Uint8Array<ArrayBuffer>>, AsyncDisposable {
  /** Our end's address. */
  readonly localAddr: Deno.Addr;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** The digest the peer proved the authkey with (`"md5"` for a legacy peer). */
  readonly peerDigest: MultiprocessingDigest;
  /**
   * Which authkey the peer proved: on a listener's connection an index
   * into its list of authkeys (0 for the first, and for a single authkey);
   * 0 on a client's.
   */
  readonly authkeyIndex: number;

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
   * import assert from "node:assert/strict";
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
   * assert.equal((await server.recvBytes())?.length, 0);
   * ```
   */
  sendBytes(
    data: Uint8Array,
    options?: MultiprocessingIoOptions,
  ): Promise<void>;

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
   * import assert from "node:assert/strict";
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
   * assert.deepEqual(JSON.parse((await server.recvText())!), { job: 1 });
   * ```
   */
  sendText(text: string, options?: MultiprocessingIoOptions): Promise<void>;

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
   * import assert from "node:assert/strict";
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
   * assert.deepEqual(await server.recvBytes(), new Uint8Array([42]));
   * assert.equal(await server.recvBytes(), null);
   * ```
   */
  recvBytes(
    options?: MultiprocessingIoOptions,
  ): Promise<Uint8Array<ArrayBuffer> | null>;

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
   * import assert from "node:assert/strict";
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
   * assert.equal(await client.recvText(), "héllo");
   * ```
   */
  recvText(options?: MultiprocessingIoOptions): Promise<string | null>;

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
   * import assert from "node:assert/strict";
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
   * assert.equal(count, 2);
   * ```
   */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array<ArrayBuffer>>;

  /**
   * Closes the connection. From then on every call rejects with
   * `Deno.errors.BadResource`, including calls still pending and receives
   * that would otherwise resolve `null` (end of stream) or repeat a stored
   * error. Safe to call more than once.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
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
   * server.close();
   * await assert.rejects(server.recvBytes(), Deno.errors.BadResource);
   * ```
   */
  close(): void;

  /**
   * Closes the connection (as {@linkcode MultiprocessingConnection.close})
   * and waits until no read is left in flight; for `await using`.
   *
   * @returns Resolves when the connection is closed and its reads settled.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
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
   * const server = await listener.accept();
   * await server[Symbol.asyncDispose]();
   * assert.equal(await client.recvBytes(), null); // the peer sees the close
   * ```
   */
  [Symbol.asyncDispose](): Promise<void>;
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
 * import assert from "node:assert/strict";
 * import { listenMultiprocessing } from "./multiprocessing.ts";
 *
 * await using listener = await listenMultiprocessing({ authkey: "k" });
 * assert.equal(listener.addr.hostname, "127.0.0.1");
 * ```
 */
export interface MultiprocessingListener<
  A extends Deno.NetAddr | Deno.UnixAddr = Deno.NetAddr,
> extends AsyncIterable<MultiprocessingConnection>, AsyncDisposable {
  /**
   * The address listened on: a `Deno.NetAddr` (with the port picked when
   * `port` was 0), or a `Deno.UnixAddr` for a Unix socket.
   */
  readonly addr: A;

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
   * import assert from "node:assert/strict";
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
   * await using conn = await listener.accept({ timeout: 5000 });
   * assert.equal(conn.remoteAddr.transport, "tcp");
   * ```
   */
  accept(
    options?: MultiprocessingIoOptions,
  ): Promise<MultiprocessingConnection>;

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
   * import assert from "node:assert/strict";
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
   *   await conn.sendText("welcome");
   *   conn.close();
   *   break;
   * }
   * assert.equal(await client.recvText(), "welcome");
   * ```
   */
  [Symbol.asyncIterator](): AsyncIterator<MultiprocessingConnection>;

  /**
   * Stops listening: closes the socket, aborts handshakes in progress,
   * closes connections not yet taken and ends iterations. Connections
   * already taken stay open. Safe to call more than once.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { listenMultiprocessing } from "./multiprocessing.ts";
   *
   * await using listener = await listenMultiprocessing({ authkey: "k" });
   * listener.close();
   * await assert.rejects(listener.accept(), Deno.errors.BadResource);
   * ```
   */
  close(): void;

  /**
   * Closes the listener and waits for its handshakes to wind down.
   *
   * @returns Resolves when everything the listener opened is closed.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { listenMultiprocessing } from "./multiprocessing.ts";
   *
   * const listener = await listenMultiprocessing({ authkey: "k" });
   * await listener[Symbol.asyncDispose]();
   * await assert.rejects(
   *   Deno.connect({ port: listener.addr.port }),
   *   Deno.errors.ConnectionRefused,
   * );
   * ```
   */
  [Symbol.asyncDispose](): Promise<void>;
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
 * Uint8Array, `legacyMd5`, `digest`, `timeout`, `maxMessageSize` or `port`
 * has the wrong type, or `path` is empty or given with `hostname` or
 * `port`.
 * @throws {RangeError} When `port` is not a whole number from 1 to 65535,
 * `timeout` is not above 0, or `maxMessageSize` is not a whole number of at
 * least 1 (or `Infinity`).
 * @throws {Deno.errors.ConnectionRefused} When nothing listens there.
 * @throws {Deno.errors.NotFound} When the Unix socket `path` does not exist.
 *
 * @example Talk to a Deno listener (a Python one works the same)
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   AuthenticationError,
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 * } from "./mod.ts";
 *
 * await using listener = await listenMultiprocessing({ authkey: "right" });
 * await assert.rejects(
 *   connectMultiprocessing({ port: listener.addr.port, authkey: "wrong" }),
 *   (error) => error instanceof AuthenticationError && error.reason === "rejected",
 * );
 * await using conn = await connectMultiprocessing({
 *   port: listener.addr.port,
 *   authkey: "right",
 * });
 * assert.equal(conn.peerDigest, "sha256");
 * ```
 */
export async function connectMultiprocessing(
  options: ConnectMultiprocessingOptions | ConnectMultiprocessingUnixOptions,
): Promise<MultiprocessingConnection> {
  const keys = await importKeys(options);
  const target = resolveTarget(options, false);
  using limit = deadline(
    keys.timeout,
    options.signal,
    `connect to the multiprocessing listener at ${target.where}`,
  );
  const connecting: Promise<Deno.Conn> = "path" in target
    ? Deno.connect({ transport: "unix", path: target.path })
    : Deno.connect({ hostname: target.hostname, port: target.port });
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
 * `legacyMd5`, `digest`, `timeout`, `maxMessageSize` or `maxPending` has
 * the wrong type.
 * @throws {RangeError} When `timeout` is not above 0, or `maxMessageSize`
 * or `maxPending` is not a whole number of at least 1 (or `Infinity`).
 * @throws {Deno.errors.AddrInUse} When the socket file already exists.
 *
 * @example Over a Unix socket (run with `--allow-net=unix:/tmp/mp.sock
 * --allow-read=/tmp/mp.sock --allow-write=/tmp/mp.sock`)
 * ```ts ignore
 * import assert from "node:assert/strict";
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
 * assert.equal(await server.recvText(), "over unix");
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
 * deadline, so a slow or hostile client never holds up the others; failed
 * ones are closed and reported to `onError` (phase `"handshake"`). At most
 * `maxPending` connections are in their handshake: one more closes the
 * oldest of the address holding the most, so peers that never
 * authenticate cannot keep others out. Accepting pauses only while
 * `maxPending` authenticated connections wait for `accept()` (see
 * {@linkcode MultiprocessingListenerOptions.maxPending}). A client
 * that resets its connection before it is accepted is skipped at once;
 * only running out of file descriptors makes the listener wait before its
 * next accept (5 ms doubling to 1 s, for as long as it lasts); both are
 * reported to `onError` (phase `"accept"`).
 *
 * @param options Address, authkey, legacy switch, limits, hooks, signal.
 * @returns The listening {@linkcode MultiprocessingListener}.
 * @throws {TypeError} When the authkey is empty or not a string or
 * Uint8Array, or `legacyMd5`, `digest`, `timeout`, `maxMessageSize`,
 * `maxPending`, `ipv6Prefix` or `port` has the wrong type.
 * @throws {RangeError} When `port` is not a whole number from 0 to 65535,
 * `timeout` is not above 0, `maxMessageSize` or `maxPending` is not a
 * whole number of at least 1 (or `Infinity`), or `ipv6Prefix` is not a
 * whole number from 1 to 128.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 *
 * @example Serve authenticated clients
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 * } from "./multiprocessing.ts";
 *
 * const errors: string[] = [];
 * await using listener = await listenMultiprocessing({
 *   authkey: "secret",
 *   onError: (error, info) => errors.push(`${info.phase}: ${error}`),
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
 * assert.equal(await client.recvText(), "welcome");
 * assert.deepEqual(errors, []);
 * ```
 *
 * @example Key rotation: a new authkey first, the old one still accepted
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   connectMultiprocessing,
 *   listenMultiprocessing,
 * } from "./multiprocessing.ts";
 *
 * await using listener = await listenMultiprocessing({
 *   authkey: ["new authkey", "old authkey"],
 * });
 * await using client = await connectMultiprocessing({
 *   port: listener.addr.port,
 *   authkey: "old authkey",
 * });
 * await using conn = await listener.accept();
 * assert.equal(conn.authkeyIndex, 1);
 * assert.equal(client.authkeyIndex, 0);
 * ```
 */
export function listenMultiprocessing(
  options: ListenMultiprocessingOptions,
): Promise<MultiprocessingListener<Deno.NetAddr>>;
export async function listenMultiprocessing(
  options: ListenMultiprocessingOptions | ListenMultiprocessingUnixOptions,
): Promise<MultiprocessingListener<Deno.NetAddr | Deno.UnixAddr>> {
  const keys = await importKeys(options, true);
  const limits = listenLimits(options);
  const target = resolveTarget(options, true);
  options.signal?.throwIfAborted();
  const listener = "path" in target
    ? Deno.listen({ transport: "unix", path: target.path })
    : Deno.listen({ hostname: target.hostname, port: target.port });
  return createListener<Deno.NetAddr | Deno.UnixAddr>(
    listener,
    keys,
    limits,
    options,
  );
}
