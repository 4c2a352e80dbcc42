// The public surface of connauth's Noise channel: its types and the
// functions that open a channel. Most of this file is their documentation
// and examples; the machinery lives in _noise_{options,handshake,conn,
// frames}.ts and, for the protocol itself, _noise_{state,symmetric,cipher,
// crypto}.ts, one concept each.
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
 * import assert from "node:assert/strict";
 * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
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
 * assert.equal(new TextDecoder().decode(message!), "hello");
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import {
  MAX_MESSAGE_LENGTH,
  MAX_PAYLOAD_LENGTH,
  PROTOCOL_NAME,
  PSK_LENGTH,
} from "./_noise_state.ts";
import { handshake, handshakeOnce } from "./_noise_handshake.ts";
import { resolveSettings } from "./_noise_options.ts";
import type { Duplex } from "./types.ts";

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

/**
 * Generates a fresh random pre-shared key with `crypto.getRandomValues`.
 *
 * @returns 32 random bytes.
 *
 * @example A key for both ends' configuration, as hex
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateNoisePsk } from "./noise.ts";
 *
 * const psk = generateNoisePsk();
 * const hex = Array.from(psk, (b) => b.toString(16).padStart(2, "0")).join("");
 * assert.equal(hex.length, 64);
 * assert.notDeepEqual(generateNoisePsk(), psk); // fresh every time
 * ```
 */
export function generateNoisePsk(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(PSK_LENGTH));
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
 * import assert from "node:assert/strict";
 * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
 *
 * const psk = generateNoisePsk();
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
 *     .then((conn) => connectNoise(conn, psk)),
 *   listener.accept().then((conn) => acceptNoise(conn, psk)),
 * ]);
 * await assert.rejects(
 *   server.receive({ timeout: 100 }), // the client sends nothing yet
 *   (error) => error instanceof DOMException && error.name === "TimeoutError",
 * );
 * const stop = new AbortController();
 * await client.send(new TextEncoder().encode("late"), { timeout: 5000 });
 * const message = await server.receive({ signal: stop.signal });
 * assert.equal(new TextDecoder().decode(message!), "late"); // nothing lost
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
 * import assert from "node:assert/strict";
 * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
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
 * assert.equal(text, "hello, world");
 * ```
 */
export interface NoiseConn extends Duplex, AsyncDisposable, Disposable {
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
  /**
   * The Noise handshake hash (32 bytes, a copy): the same on both ends of
   * one session and unique to it, for channel binding (sign it to tie an
   * identity to this very session). Not secret, not a key.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * assert.deepEqual(client.handshakeHash, server.handshakeHash);
   * assert.equal(client.handshakeHash.length, 32);
   * client.close();
   * server.close();
   * ```
   */
  readonly handshakeHash: Uint8Array<ArrayBuffer>;
  /** The peer's address, when the underlying connection has one. */
  readonly remoteAddr: Deno.Addr | undefined;
  /** Our address, when the underlying connection has one. */
  readonly localAddr: Deno.Addr | undefined;

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
   * import assert from "node:assert/strict";
   * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * await client.send(new Uint8Array([1, 2, 3]), { timeout: 5000 });
   * assert.deepEqual(await server.receive(), new Uint8Array([1, 2, 3]));
   * client.close();
   * server.close();
   * ```
   */
  send(data: Uint8Array, options?: NoiseIoOptions): Promise<void>;

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
   * import assert from "node:assert/strict";
   * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * await client.closeWrite();
   * assert.equal(await server.receive({ timeout: 5000 }), null);
   * client.close();
   * server.close();
   * ```
   */
  receive(options?: NoiseIoOptions): Promise<Uint8Array<ArrayBuffer> | null>;

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
   * import assert from "node:assert/strict";
   * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
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
   * assert.equal((await server.receive())?.length, 10);
   * assert.equal(await server.receive(), null);
   * client.close();
   * server.close();
   * ```
   */
  closeWrite(options?: NoiseIoOptions): Promise<void>;

  /**
   * Closes the connection at once, both directions; pending reads end as an
   * end of stream, pending writes fail. Closing twice does nothing.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * client.close();
   * assert.equal(await server.receive(), null);
   * server.close();
   * ```
   */
  close(): void;

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
   * import assert from "node:assert/strict";
   * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * await client.send(new TextEncoder().encode("bye"));
   * await client[Symbol.asyncDispose](); // the message goes out first
   * assert.equal(new TextDecoder().decode((await server.receive())!), "bye");
   * assert.equal(await server.receive(), null);
   * await server[Symbol.asyncDispose]();
   * ```
   */
  [Symbol.asyncDispose](): Promise<void>;

  /**
   * Closes the connection at once, like {@linkcode NoiseConn.close}, for
   * `using`; `await using` also waits for pending writes first, up to the
   * connection's `gracePeriod`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { acceptNoise, connectNoise, generateNoisePsk } from "./noise.ts";
   *
   * const psk = generateNoisePsk();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const [client, server] = await Promise.all([
   *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
   *     .then((conn) => connectNoise(conn, psk)),
   *   listener.accept().then((conn) => acceptNoise(conn, psk)),
   * ]);
   * {
   *   using _client = client;
   *   using _server = server;
   * }
   * await assert.rejects(client.send(new Uint8Array(1)), TypeError);
   * ```
   */
  [Symbol.dispose](): void;
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
 * @example A responder with another key
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   acceptNoise,
 *   AuthenticationError,
 *   connectNoise,
 *   generateNoisePsk,
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
 * assert.equal(reason(connected), "rejected");
 * assert.equal(reason(accepted), "wrong-key");
 * ```
 */
export function connectNoise(
  conn: Duplex,
  psk: NoisePsk,
  options: ConnectNoiseOptions = {},
): Promise<NoiseConn> {
  return handshakeOnce(conn, psk, options, true);
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
 * import assert from "node:assert/strict";
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
 * assert.equal(new TextDecoder().decode((await client.receive())!), "ping");
 * await serving;
 * ```
 */
export function acceptNoise(
  conn: Duplex,
  psk: NoisePsk,
  options: AcceptNoiseOptions = {},
): Promise<NoiseConn> {
  return handshakeOnce(conn, psk, options, false);
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
 * import assert from "node:assert/strict";
 * import {
 *   connectNoise,
 *   createNoiseAuthenticator,
 *   generateNoisePsk,
 * } from "./noise.ts";
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
 * assert.equal(server.initiator, false);
 * assert.equal(client.initiator, true);
 * client.close();
 * server.close();
 * ```
 */
export function createNoiseAuthenticator(
  psk: NoisePsk,
  options: CreateNoiseAuthenticatorOptions = {},
): NoiseAuthenticator {
  const settings = resolveSettings(psk, options);
  // serve() closes the connection itself, after its throttling delay for
  // authentication failures, so a failed handshake leaves it open here.
  return (conn, context) =>
    handshake(conn, settings, false, {
      signal: context?.signal,
      closeOnFailure: false,
      wipePsk: false,
    });
}
