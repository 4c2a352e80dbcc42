// The public surface of serve() and connect(): their types, options and
// documentation, which users read here; the machinery lives in
// _server_impl.ts, _serve_{options,handshake,connection,report}.ts and
// _admission.ts, one concept each.
/**
 * `serve()`: a concurrent server that authenticates every connection before
 * the application sees it, and `connect()`, the client side in one call.
 *
 * This is the `socketserver.ThreadingTCPServer` recipe done the Deno way: one
 * async task per connection instead of one thread, the Cookbook handshake
 * ({@linkcode serverAuthenticate}) done before the handler runs, and no
 * client able to hurt the others:
 *
 * - The accept loop never awaits a handshake. A client that connects and says
 *   nothing costs one pending task (no timer of its own: one timer serves
 *   every handshake deadline) until its deadline closes it, or until the
 *   server needs its place. A client that resets its connection before it is
 *   accepted costs one failed accept, skipped at once; only running out of
 *   file descriptors makes the loop back off (5 ms doubling to 1 s, for as
 *   long as it lasts).
 * - Fair under connection floods. Limits on connections open at once
 *   (`maxConnections`, a hard cap on descriptors), connections not yet
 *   authenticated (`maxHandshakes`) and connections per remote address
 *   (`maxPerAddress`; an address is an IPv4 address, an IPv6 /64, or one
 *   entry for all Unix socket peers). A full budget never stops the server
 *   from accepting: it closes the unauthenticated connection that a fairness
 *   rule picks, the oldest of the address holding the most, much as the
 *   kernel's SYN queue or OpenSSH's `MaxStartups` drop half-open
 *   connections. An honest client finishes its handshake in one round trip,
 *   so silent sockets from other addresses go first: see
 *   {@linkcode ServeOptions.maxHandshakes}. Authenticated connections are
 *   never closed to make room; only when `maxConnections` are open and all
 *   authenticated does accepting pause (new clients wait in the listen
 *   backlog). The per-address limit closes the newest connection.
 * - Repeated authentication failures from one address are throttled before
 *   the next attempt, in the spirit of PostgreSQL's `auth_delay`: once an
 *   address has failed, its handshakes run one at a time, and each failure
 *   pauses the next one for a delay that doubles with every failure. Guesses
 *   per address are bounded whatever the client's concurrency. Optionally the
 *   address is refused for a while, as fail2ban does. An address with no
 *   failures on record is never delayed.
 * - Hooks (`onConnection`, `onAuthFailure`, `onRefuse`, `onError`) and a
 *   default logger to stderr that never prints key material.
 * - Graceful shutdown by `signal`, {@linkcode Server.shutdown} or
 *   `await using`: stop accepting, let handlers finish within a grace period,
 *   then close what is left.
 *
 * @example An authenticated echo server and a client
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, serve } from "./server.ts";
 *
 * await using server = serve(
 *   { hostname: "127.0.0.1", port: 0, secret: "peanut butter", log: false },
 *   async (conn) => {
 *     await conn.readable.pipeTo(conn.writable);
 *   },
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * using conn = await connect({ port, secret: "peanut butter" });
 * await conn.write(new TextEncoder().encode("Hello"));
 * const reply = new Uint8Array(5);
 * assert.equal(await conn.read(reply), 5);
 * assert.equal(new TextDecoder().decode(reply), "Hello");
 * ```
 *
 * @module
 */

// The public surface of serve() and connect(): their types and the two
// functions, mostly documentation. The running server is in
// _server_impl.ts (the connection state machine), with _serve_handshake.ts
// (the handshake step and its hot path), _serve_connection.ts (one
// connection's state), _serve_report.ts (hooks and the log),
// _serve_options.ts (option checks and defaults) and _admission.ts (limits,
// fairness, throttling).

import { checkOptionsObject, checkPort, checkTimeout } from "./_options.ts";
import { closeQuietly, setNoDelay } from "./_conn_io.ts";
import { deadline, DEFAULT_TIMEOUT } from "./_deadline.ts";
import { formatAddr } from "./_address.ts";
import { checkChallengeLength } from "./_cookbook.ts";
import { checkSecret } from "./_hmac_key.ts";
import { DEFAULTS, resolveServeOptions } from "./_serve_options.ts";
import { prepareAuth } from "./_serve_handshake.ts";
import { ServerImpl } from "./_server_impl.ts";
import type { AuthenticationError } from "./errors.ts";
import {
  type AuthenticateOptions,
  clientAuthenticate,
  type HashName,
  type HmacKey,
  type SecretInput,
  type ServerSecret,
} from "./handshake.ts";
import type { Duplex, ErrorInfo } from "./types.ts";

/**
 * A connection as the server sees it: a duplex byte stream with addresses.
 * A `Deno.Conn`, a `Deno.TlsConn` and the connections of `tls.ts` listeners
 * fit.
 */
export interface ServerConn extends Duplex {
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** Our end's address. */
  readonly localAddr: Deno.Addr;
  /** Closes the connection. */
  close(): void;
  /**
   * Reads straight from the socket into `buffer`: the number of bytes read,
   * or `null` at the end of the stream. Present on a `Deno.Conn` (every
   * connection of serve()'s own listener, and of `Deno.listen` or
   * `Deno.listenTls` listeners), absent on stream-only connections such as
   * those of `tls.ts` listeners. serve()'s handler always has it (see
   * {@linkcode AuthenticatedConn}).
   *
   * A `read()` / `write()` loop is the fastest way to serve a connection in
   * Deno 2.9.6: it skips the stream machinery that `readable` and `writable`
   * go through (`readable.pipeTo(writable)` echoes 40 to 50% fewer
   * connections a second). Do not mix it with reads from `readable`.
   */
  read?(buffer: Uint8Array): Promise<number | null>;
  /**
   * Writes (some of) `data` straight to the socket; resolves to the number
   * of bytes written, which may be fewer than asked: loop until all are.
   * Present where {@linkcode ServerConn.read} is.
   */
  write?(data: Uint8Array): Promise<number>;
}

/**
 * The connection {@linkcode serve}'s handler gets with the Cookbook
 * handshake (`secret`): a {@linkcode ServerConn} that always has `read()`
 * and `write()`, as the `Deno.TcpConn` that {@linkcode connect} returns
 * does, so the same code serves either side. With serve()'s own listener
 * it is the `Deno.Conn` itself; a stream-only connection (from a `tls.ts`
 * listener) gets the two over its streams (everything else of it, such as
 * a TLS peer's identity, is still there).
 *
 * @example One function for both ends
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, serve } from "./server.ts";
 *
 * type Io = {
 *   read(buffer: Uint8Array): Promise<number | null>;
 *   write(data: Uint8Array): Promise<number>;
 * };
 * async function send(conn: Io, text: string): Promise<void> {
 *   const data = new TextEncoder().encode(`${text}\n`);
 *   for (let n = 0; n < data.length;) n += await conn.write(data.subarray(n));
 * }
 * async function receive(conn: Io): Promise<string> {
 *   const bytes: number[] = [];
 *   const one = new Uint8Array(1);
 *   while (bytes.at(-1) !== 10 && (await conn.read(one)) !== null) {
 *     bytes.push(one[0]);
 *   }
 *   return new TextDecoder().decode(new Uint8Array(bytes)).trim();
 * }
 *
 * await using server = serve(
 *   { port: 0, secret: "peanut butter", log: false },
 *   async (conn) => await send(conn, `hello, ${await receive(conn)}`),
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * using conn = await connect({ port, secret: "peanut butter" });
 * await send(conn, "client");
 * assert.equal(await receive(conn), "hello, client");
 * ```
 */
export interface AuthenticatedConn extends ServerConn {
  /**
   * Reads into `buffer`: the number of bytes read, or `null` at the end of
   * the stream. Do not mix it with reads from `readable`.
   */
  read(buffer: Uint8Array): Promise<number | null>;
  /**
   * Writes (some of) `data`; resolves to the number of bytes written, which
   * may be fewer than asked: loop until all are.
   */
  write(data: Uint8Array): Promise<number>;
}

/**
 * What {@linkcode serve} accepts connections from. A `Deno.Listener` (from
 * `Deno.listen` or `Deno.listenTls`) and the listeners of `tls.ts` fit.
 */
export interface ServeListener extends AsyncIterable<ServerConn> {
  /** The address the listener is bound to. */
  readonly addr: Deno.Addr;
  /** Waits for the next connection. Rejects once the listener is closed. */
  accept(): Promise<ServerConn>;
  /** Stops listening. */
  close(): void;
}

/** What an {@linkcode Authenticator} is told about the connection. */
export interface AuthenticatorContext {
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /**
   * Aborts at the handshake deadline (reason: a `TimeoutError`
   * `DOMException`), when the server closes the connection to make room for
   * another (an `AbortError`; see {@linkcode ServeOptions.maxHandshakes}) or
   * when the server shuts down (an `AbortError`). The authenticator should
   * stop waiting on the peer when it aborts; if it does not, the server
   * closes the connection then (which ends a pending read) and no longer
   * waits for it.
   */
  readonly signal: AbortSignal;
}

/**
 * Authenticates one freshly accepted connection, or throws.
 *
 * Resolves to what the handler gets: the connection itself, or a wrapper
 * (an encrypted Noise channel, a TLS connection with its verified peer
 * identity). Throw an {@linkcode AuthenticationError} when the peer failed to
 * prove who it is: those failures are counted for throttling. Any other error
 * (a timeout, a malformed message, a reset) is reported through `onError`.
 * The server closes the raw connection whatever happens.
 *
 * @typeParam T What the handler receives.
 */
export type Authenticator<T> = (
  conn: ServerConn,
  context: AuthenticatorContext,
) => Promise<T>;

/** What the handler and `onConnection` learn about an authenticated peer. */
export interface ConnectionInfo {
  /** A number unique within this server, counting from 1. */
  readonly id: number;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** Our end's address. */
  readonly localAddr: Deno.Addr;
  /**
   * How long the handshake took, in milliseconds, counted from accept (a
   * wait for a throttled address's turn included).
   */
  readonly handshakeTime: number;
  /**
   * Aborts when the server starts shutting down: a long-lived handler (a
   * chat loop) should finish up. After the grace period the server closes
   * the connection anyway.
   */
  readonly signal: AbortSignal;
  /**
   * Which of the server's secrets the client proved (Cookbook handshake,
   * `secret`): an index into the list given, 0 for the first and for a
   * single secret. Undefined with `authenticate`. Count connections per
   * key to see when no client uses an old key any more.
   */
  readonly secretIndex?: number;
}

/** What `onAuthFailure` learns about a peer that failed the handshake. */
export interface AuthFailureInfo {
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** Our end's address. */
  readonly localAddr: Deno.Addr;
  /** The {@linkcode AuthenticationError} the authenticator threw. */
  readonly error: AuthenticationError;
  /**
   * Failures from this address within the throttle's memory, this one
   * included (0 when throttling is off).
   */
  readonly failures: number;
  /**
   * How long, in milliseconds, the next handshake from this address waits
   * (0 when throttling is off). The failed connection itself is closed at
   * once.
   */
  readonly delay: number;
}

/**
 * Why {@linkcode serve} closed a connection before it authenticated:
 *
 * - `"max-per-address"`: too many open from its address; the new one is
 *   closed before any handshake.
 * - `"banned"`: its address is refused after `banAfter` failures.
 * - `"throttled"`: it waited for its throttled address's turn until its
 *   handshake deadline, or was the oldest waiting when more than
 *   `maxWaiting` arrived.
 * - `"evicted"`: the server was full (`maxHandshakes` connections not yet
 *   authenticated, or `maxConnections` open) when another arrived, and this
 *   one was the oldest not yet authenticated of the address holding the
 *   most such connections (see {@linkcode ServeOptions.maxHandshakes}). It
 *   may have had its challenge already.
 */
export type RefuseReason =
  | "max-per-address"
  | "banned"
  | "throttled"
  | "evicted";

/** What `onRefuse` learns about a connection closed before its handshake. */
export interface RefuseInfo {
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** Our end's address. */
  readonly localAddr: Deno.Addr;
  /** Which rule closed it. */
  readonly reason: RefuseReason;
}

/** Where an error reported to `onError` happened. */
export type ServeErrorPhase = "accept" | "handshake" | "handler" | "hook";

/** Context for an error reported to `onError`. */
export interface ServeErrorInfo extends ErrorInfo {
  /** Where it happened. */
  readonly phase: ServeErrorPhase;
  /** The peer's address, when the error belongs to a connection. */
  readonly remoteAddr?: Deno.Addr;
}

/**
 * Failure throttling per remote address (an IPv4 address, an IPv6 prefix of
 * `ipv6Prefix` bits, or one entry for all Unix socket peers; see
 * {@linkcode ServeOptions}), applied before the next attempt so that it
 * bounds guesses whatever the client's concurrency and whatever
 * `maxPerAddress` is:
 *
 * - A connection that fails to authenticate is closed at once, and the n-th
 *   failure from its address pauses that address for
 *   `min(delay * 2 ** (n - 1), maxDelay)` ms: no handshake from it starts
 *   until the pause ends.
 * - While an address has failures on record its handshakes run one at a
 *   time. New connections from it wait, silently (no challenge sent, nothing
 *   read), first come first served; at most `maxWaiting` wait per address
 *   (past it the oldest is closed) and each waits at most until its
 *   handshake deadline (then it is closed). Both are reported to `onRefuse`
 *   as `"throttled"`. Waiting connections count toward `maxConnections`,
 *   `maxHandshakes` and `maxPerAddress` like any other.
 *
 * So an address gets at most one guess per pause: about one every
 * `maxDelay` ms once it has failed a few times. Before its first failure an
 * address is not slowed at all, so the handshakes it already had in flight
 * then (at most `maxPerAddress`, and `maxHandshakes` in all) can fail in one
 * burst; after that the bound holds until the address is forgotten,
 * `forgetAfter` ms after its last failure.
 *
 * The price is paid by the address, not the connection: a good client that
 * shares an address with a guesser (behind NAT, or the same host) waits its
 * turn too, up to the current pause (`maxDelay` at most, 10 s by default)
 * plus the handshakes queued ahead of it, and while a flood lasts it may be
 * closed as `"throttled"` and have to retry. A successful handshake adds no
 * pause, but it does not clear the record either (a guesser must not ride on
 * a good client's success). `banAfter` goes further and refuses everyone
 * from the address, which is why it is off by default.
 */
export interface ThrottleOptions {
  /**
   * Pause, in milliseconds, of an address after its first failure; it
   * doubles with each further failure.
   *
   * @default {250}
   */
  delay?: number;
  /**
   * Longest pause, in milliseconds: once an address has failed a few
   * times, it gets at most one guess per `maxDelay`.
   *
   * @default {10000}
   */
  maxDelay?: number;
  /**
   * Failures from one address after which it is refused (its connections
   * closed before any handshake) for `banFor` ms. `Infinity` never refuses.
   *
   * @default {Infinity}
   */
  banAfter?: number;
  /**
   * How long, in milliseconds, a banned address is refused.
   *
   * @default {60000}
   */
  banFor?: number;
  /**
   * Quiet time, in milliseconds, after which an address's failures are
   * forgotten (and its handshakes no longer run one at a time).
   *
   * @default {600000}
   */
  forgetAfter?: number;
  /**
   * Most connections from one throttled address waiting for their turn.
   * When one more arrives the oldest waiting is closed (`onRefuse`,
   * `"throttled"`): it is the one most likely given up on by its client.
   *
   * @default {32}
   */
  maxWaiting?: number;
  /**
   * Most addresses remembered at once; past it the least recently failing
   * address is forgotten, so memory stays bounded under a spoofed or
   * distributed flood.
   *
   * @default {10000}
   */
  maxAddresses?: number;
}

/**
 * Options for {@linkcode serve}. Give `secret` (the Cookbook handshake) or
 * `authenticate` (your own), and `hostname`/`port` or `listener`.
 *
 * @typeParam T What the handler receives: the connection
 * ({@linkcode AuthenticatedConn}) by default, or what
 * `authenticate` resolves to.
 */
export interface ServeOptions<T = AuthenticatedConn> {
  /**
   * Address to listen on (ignored with `listener`). `"0.0.0.0"` listens on
   * every interface.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Port to listen on (ignored with `listener`); 0 picks a free one, read it
   * back from {@linkcode Server.addr}.
   *
   * @default {0}
   */
  port?: number;
  /**
   * Accept from this listener instead of opening one (a TLS listener from
   * `tls.ts`, `Deno.listenTls`, a Unix socket). The server closes it on
   * shutdown.
   */
  listener?: ServeListener;
  /**
   * The shared secret for the Cookbook handshake
   * ({@linkcode serverAuthenticate}), imported once when the server starts.
   * Give this or `authenticate`.
   *
   * For key rotation, a list: the current key first, then the ones clients
   * may still use (at most 8, all for one hash). A reply is checked against
   * every key, all of them whichever matches (so the time taken does not
   * tell which did), and {@linkcode ConnectionInfo.secretIndex} says which
   * one the client proved. A wrong reply is one failure for throttling,
   * however many keys there are. To rotate: add the new key first, move
   * the clients to it, then drop the old one once `secretIndex` shows no
   * client uses it. With one key the check is one `crypto.subtle.verify`,
   * as before.
   */
  secret?: ServerSecret;
  /**
   * The HMAC hash of the Cookbook handshake (with `secret`).
   *
   * @default {"SHA-256"}
   */
  hash?: HashName;
  /**
   * Challenge length in bytes of the Cookbook handshake (with `secret`),
   * from 16 to 1024.
   *
   * @default {32}
   */
  challengeLength?: number;
  /**
   * A custom authenticator (Noise, TLS identity checks, no authentication at
   * all); its result is what the handler gets. Give this or `secret`.
   */
  authenticate?: Authenticator<T>;
  /**
   * Turn off Nagle's algorithm (`setNoDelay(true)`) on each accepted TCP
   * connection. Deno leaves it on; a handshake's small back-to-back writes
   * then wait for a delayed ACK, up to 40 ms each on Linux.
   *
   * @default {true}
   */
  noDelay?: boolean;
  /**
   * Deadline for each handshake, in milliseconds, counted from accept (a
   * wait for a throttled address's turn included). A peer that has not
   * authenticated by then is closed, even by a custom authenticator that
   * ignores its signal.
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * Most connections open at once (waiting for a throttled address's turn,
   * handshaking, or in the handler): a hard cap on the descriptors the
   * server holds. Set it below the process's descriptor limit
   * (`ulimit -n`).
   *
   * A connection that arrives with this many open closes one that is not
   * yet authenticated, chosen as for `maxHandshakes` (reported to
   * `onRefuse` as `"evicted"`). Authenticated connections are never closed
   * to make room: when every open connection is authenticated the server
   * stops accepting until one closes, and new clients wait in the kernel's
   * listen backlog. (The accept already under way when the last handshake
   * ended still takes one connection, which is then the one closed.)
   *
   * @default {10000}
   */
  maxConnections?: number;
  /**
   * Most connections not yet authenticated at once (in their handshake, or
   * waiting for a throttled address's turn). With the default, as many as
   * `maxConnections`: every descriptor may be held by one.
   *
   * The server never stops accepting at this limit. When one more arrives,
   * it closes the oldest unauthenticated connection of the address that
   * holds the most (among addresses holding equally many, the one whose
   * oldest is oldest) and reports it to `onRefuse` as `"evicted"`. The
   * connection just accepted counts too, so an address that floods closes
   * its own connections. An honest client answers the challenge within one
   * round trip, so it is the newest and usually the only unauthenticated
   * connection of its address: silent sockets from other addresses are
   * closed before it, and it is picked only when every other address holds
   * at most one, older than its own (a flood from more than `maxHandshakes`
   * addresses). Authenticated connections are never picked.
   *
   * Holding a silent socket is cheap (about 7 KiB and a descriptor, until
   * its deadline); closing one that its client re-opens at once is not:
   * each re-open costs an accept and a close. On loopback on a shared
   * 2-core machine (server on one core; a C flooder and the good client on
   * the other; `deno task bench:server --flood`, 2026-12-02, see
   * `bench/README.md`), `examples/echo_server.ts` with the defaults served
   * a good client from another address within 1 s every time: 236 probes
   * out of 236 (at most 80 ms) while 64 addresses x 64 silent sockets were
   * held and re-opened as soon as they were closed, and 236 out of 236 (at
   * most 45 ms) under 8 x 256. Its handshake rate with the 4,096 held was
   * 1.00 times the unloaded rate. Set below the flood it must hold, the
   * limit closes silent sockets that come straight back: the re-opens then
   * keep the server's core busy accepting and closing, and once the listen
   * backlog overflows, good clients wait for the kernel to retransmit their
   * SYN (a second or more). So size this (and `maxConnections`) for the
   * floods you expect, and lower `handshakeTimeout` to free silent sockets
   * sooner.
   *
   * @default {10000}
   */
  maxHandshakes?: number;
  /**
   * Most connections open at once from one address (an IPv4 address, an
   * IPv6 prefix of `ipv6Prefix` bits, or one entry for all Unix socket
   * peers). A connection past it is closed at once, before any handshake,
   * and reported to `onRefuse`. Behind NAT or a proxy one address is many
   * users: raise it there (throttling does not depend on it).
   *
   * @default {256}
   */
  maxPerAddress?: number;
  /**
   * How many leading bits of an IPv6 address name one client for
   * `maxPerAddress` and throttling. A host is usually given a whole /64, so
   * counting single IPv6 addresses would let it dodge both with addresses of
   * its own; 128 counts each address. IPv4-mapped IPv6 addresses count as
   * their IPv4 address, and link-local ones (`fe80::/10`, where every host
   * on a link shares the /64) as the whole address.
   *
   * @default {64}
   */
  ipv6Prefix?: number;
  /**
   * Failure throttling per address: `true` for the defaults of
   * {@linkcode ThrottleOptions}, an options object to change some of them,
   * or `false` to turn it off.
   *
   * @default {true}
   */
  throttle?: ThrottleOptions | boolean;
  /**
   * On shutdown, how long in-flight handlers may run before their
   * connections are closed, in milliseconds. A handler still running 1000
   * ms after that (one that ignores both its signal and its socket) is
   * abandoned: reported to `onError` and no longer waited for.
   *
   * @default {5000}
   */
  gracePeriod?: number;
  /** Shuts the server down gracefully when it aborts. */
  signal?: AbortSignal;
  /**
   * Log problems (failed handshakes, refused connections, handler errors,
   * connections closed to make room, paused accepts) to stderr with
   * `console.error`. Lines name the peer's address and the error, never key
   * material. At most 20 lines a second
   * are printed, so a flood of bad clients cannot flood the log; the rest
   * are counted in a summary line. The hooks see every event either way.
   *
   * @default {true}
   */
  log?: boolean;
  /** Called for each authenticated connection, before the handler. */
  onConnection?: (info: ConnectionInfo) => void;
  /** Called for each handshake that failed with an {@linkcode AuthenticationError}. */
  onAuthFailure?: (info: AuthFailureInfo) => void;
  /** Called for each connection closed before its handshake. */
  onRefuse?: (info: RefuseInfo) => void;
  /**
   * Called for errors that end one connection or one accept: a handshake
   * that timed out, was malformed or reset; a handler that threw; a failed
   * accept (phase `"accept"`: a connection reset before it was accepted,
   * skipped at once, or the process out of file descriptors, retried after
   * a back-off of 5 ms doubling to 1 s). The server goes on serving.
   */
  onError?: (error: unknown, info: ServeErrorInfo) => void;
}

/** Counts of a running server's connections. */
export interface ServerStats {
  /** Connections open now, in any state. */
  readonly open: number;
  /** Connections in their handshake now. */
  readonly handshaking: number;
  /**
   * Connections waiting for their throttled address's turn now, before
   * their handshake.
   */
  readonly waiting: number;
  /** Connections in the handler now. */
  readonly active: number;
  /** Connections accepted since the start. */
  readonly accepted: number;
  /** Connections that authenticated since the start. */
  readonly authenticated: number;
  /**
   * Connections closed since the start to make room while the server was
   * full (`onRefuse`, `"evicted"`).
   */
  readonly evicted: number;
}

/** A running server, returned by {@linkcode serve}. */
export interface Server extends AsyncDisposable {
  /** The address the server listens on. */
  readonly addr: Deno.Addr;
  /**
   * Resolves once the server has shut down and every connection task has
   * settled, or, at the latest, 1000 ms after the grace period ended (the
   * tasks still running then are reported to `onError` and abandoned);
   * rejects if the server could not start (a secret that fails to import).
   */
  readonly finished: Promise<void>;
  /** Current connection counts. */
  readonly stats: ServerStats;
  /**
   * Shuts down gracefully: stops accepting (the listener closes, so new
   * clients are refused), aborts handshakes and closes the connections
   * waiting for their turn, aborts {@linkcode ConnectionInfo.signal}, waits
   * up to `gracePeriod` for the handlers, then closes the connections left
   * and waits 1000 ms more before abandoning the handlers still running.
   *
   * @returns {@linkcode Server.finished}.
   */
  shutdown(): Promise<void>;
}

/** Options for {@linkcode connect}. */
export interface ConnectOptions extends AuthenticateOptions {
  /**
   * Host to connect to.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** Port to connect to. */
  port: number;
  /** The shared secret. */
  secret: SecretInput | HmacKey;
  /**
   * Turn off Nagle's algorithm (`setNoDelay(true)`) on the connection, so
   * the digest and the first message do not wait for a delayed ACK.
   *
   * @default {true}
   */
  noDelay?: boolean;
  /**
   * Deadline for connecting and authenticating together, in milliseconds.
   *
   * @default {10000}
   */
  timeout?: number;
}

/**
 * Starts a server that authenticates every connection, then runs `handler`
 * on it, each connection in its own task.
 *
 * With `secret`, connections are authenticated with the Cookbook handshake
 * ({@linkcode serverAuthenticate}; the secret is imported once, here) and the
 * handler gets the connection itself, with `read()` and `write()` as a
 * {@linkcode connect} client's ({@linkcode AuthenticatedConn}). With
 * `authenticate`, the handler gets
 * what it resolves to. After the handler settles the server closes the
 * connection (a handler that closed it already is fine).
 *
 * What `serve()` adds to a bare accept-and-handshake loop is bookkeeping:
 * no timer, abort signal or extra task per connection (one timer serves
 * every handshake deadline); the MAC is still checked by
 * `crypto.subtle.verify`. Measured with a C client (connect, handshake,
 * 11-byte echo, close; 64 at a time) on its own core (`deno task
 * bench:server`, medians of 5 alternating rounds on 2026-12-02),
 * `examples/echo_server.ts` served 0.72 times as many connections a second
 * as a plain `Deno.listen` read/write echo with no authentication, 1.04
 * times a bare loop doing the same handshake, and 2.36 times Python's
 * threaded recipe.
 *
 * The handler's idiom matters as much: with `serve()`'s own listener the
 * connection is a `Deno.Conn`, and a `conn.read()` / `conn.write()` loop
 * (see {@linkcode ServerConn.read}) serves 1.7 to 2 times as many
 * connections a second as `conn.readable.pipeTo(conn.writable)`, which goes
 * through the stream machinery for every chunk. `examples/echo_server.ts`
 * shows the loop, with a fallback for stream-only connections.
 *
 * | event | what the server does |
 * | --- | --- |
 * | handshake succeeds | `onConnection`, then the handler |
 * | wrong key ({@linkcode AuthenticationError}, reason `"wrong-key"`); a TLS ClientHello instead of a digest (`"tls-client"`: the client speaks TLS); a reply that stops at another hash's digest length (`"wrong-hash"`, after 1 s without more bytes: MD5, Python's `hmac.new` default before 3.8) | `onAuthFailure`, closes; the address's next handshake waits (throttling) |
 * | connection from an address with failures on record | waits its turn, silently: one handshake at a time, none during the pause |
 * | handshake deadline (even for an authenticator that ignores its signal), garbage, reset | `onError` (phase `"handshake"`), closes |
 * | handler throws | `onError` (phase `"handler"`), closes, goes on |
 * | connection reset before accept | `onError` (phase `"accept"`), skips it at once |
 * | out of file descriptors (EMFILE, ENFILE) | `onError` (phase `"accept"`), retries after 5 ms doubling to 1 s |
 * | a connection arrives with `maxHandshakes` not yet authenticated, or `maxConnections` open | closes the oldest unauthenticated connection of the address holding the most, `onRefuse` (`"evicted"`); goes on accepting |
 * | `maxConnections` open, all authenticated | stops accepting until one closes |
 * | `maxPerAddress` reached, address banned, or no turn in time | closes the new connection, `onRefuse` |
 * | shutdown | stops accepting, aborts handshakes, waits `gracePeriod` for handlers, closes the rest; abandons (and reports) a handler still running 1 s later |
 *
 * @typeParam T What the handler receives.
 * @param options Where to listen, how to authenticate, limits, hooks.
 * @param handler Serves one authenticated connection.
 * @returns The running {@linkcode Server}.
 * @throws {TypeError} When neither or both of `secret` and `authenticate` are
 * given, or an option has the wrong type.
 * @throws {RangeError} When a limit or deadline is out of range.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 *
 * @example Upper-case every message; shut down with the signal
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, serve } from "./server.ts";
 *
 * const controller = new AbortController();
 * const ids: number[] = [];
 * const server = serve(
 *   { port: 0, secret: "peanut butter", signal: controller.signal, log: false },
 *   async (conn, info) => {
 *     ids.push(info.id);
 *     await conn.readable
 *       .pipeThrough(new TextDecoderStream())
 *       .pipeThrough(
 *         new TransformStream<string, string>({
 *           transform: (text, out) => out.enqueue(text.toUpperCase()),
 *         }),
 *       )
 *       .pipeThrough(new TextEncoderStream())
 *       .pipeTo(conn.writable);
 *   },
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * const conn = await connect({ port, secret: "peanut butter" });
 * await conn.write(new TextEncoder().encode("hello"));
 * const reply = new Uint8Array(5);
 * assert.equal(await conn.read(reply), 5);
 * assert.equal(new TextDecoder().decode(reply), "HELLO");
 * assert.deepEqual(ids, [1]);
 * conn.close();
 * controller.abort();
 * await server.finished;
 * assert.equal(server.stats.open, 0);
 * ```
 *
 * @example A custom authenticator: pass a verdict on to the handler
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, type ServerConn, serve } from "./server.ts";
 * import { serverAuthenticate } from "./handshake.ts";
 *
 * const users = Promise.withResolvers<string>();
 * await using server = serve<{ conn: ServerConn; user: string }>({
 *   port: 0,
 *   log: false,
 *   authenticate: async (conn, { signal }) => {
 *     await serverAuthenticate(conn, "peanut butter", { signal });
 *     return { conn, user: "alice" };
 *   },
 * }, ({ user }) => users.resolve(user));
 * const { port } = server.addr as Deno.NetAddr;
 * using _conn = await connect({ port, secret: "peanut butter" });
 * assert.equal(await users.promise, "alice");
 * ```
 */
export function serve<T = AuthenticatedConn>(
  options: ServeOptions<T>,
  handler: (conn: T, info: ConnectionInfo) => void | Promise<void>,
): Server {
  checkOptionsObject(options, "serve");
  if (typeof handler !== "function") {
    throw new TypeError(
      `Cannot serve: expected a handler function, got ${typeof handler}`,
    );
  }
  const ready = prepareAuth(options);
  const resolved = resolveServeOptions(options);
  if (options.listener !== undefined) {
    return new ServerImpl(options.listener, ready, options, resolved, handler);
  }
  const listener = Deno.listen({
    hostname: options.hostname ?? DEFAULTS.hostname,
    port: checkPort(options.port, DEFAULTS.port, "port", true),
    transport: "tcp",
  });
  try {
    return new ServerImpl(listener, ready, options, resolved, handler);
  } catch (error) {
    listener.close();
    throw error;
  }
}

/**
 * Connects to a server and authenticates with the Cookbook handshake
 * ({@linkcode clientAuthenticate}), in one call.
 *
 * On any failure the connection is closed before the error is thrown. As in
 * the recipe the server sends no verdict: a server that rejected the key
 * closes the connection, which shows as end of stream (or a reset) on the
 * first read.
 *
 * @param options Host, port, secret, hash, challenge length, deadline, signal.
 * @returns The authenticated connection; close it when done.
 * @throws {TypeError} When the secret is missing, empty or of the wrong type.
 * @throws {RangeError} When `port`, `timeout` or `challengeLength` is out of
 * range.
 * @throws {ProtocolError} When the server closes before a whole challenge.
 * @throws {DOMException} `TimeoutError` past `timeout`; the signal's reason
 * when it aborts. When no challenge arrived (a close or the deadline with
 * nothing read), or a TLS record did, the message says so: the server may
 * expect TLS (use `connectTls` from `tls.ts`), or it refused or holds back
 * this address.
 * @throws {Deno.errors.ConnectionRefused} When nothing listens on the port.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, serve } from "./server.ts";
 *
 * await using server = serve(
 *   { port: 0, secret: "peanut butter", log: false },
 *   async (conn) => await conn.readable.pipeTo(conn.writable),
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * using conn = await connect({ port, secret: "peanut butter", timeout: 5000 });
 * assert.equal(conn.remoteAddr.port, port);
 * await assert.rejects(connect({ port: 0, secret: "peanut butter" }), RangeError);
 * ```
 */
export async function connect(options: ConnectOptions): Promise<Deno.TcpConn> {
  checkOptionsObject(options, "connect");
  const port = checkPort(options.port, undefined, "port", false);
  if (options.secret === undefined) {
    throw new TypeError(
      "Cannot connect: no secret given; pass the shared secret",
    );
  }
  checkSecret(options.secret);
  checkChallengeLength(options.challengeLength);
  const hostname = options.hostname ?? DEFAULTS.hostname;
  const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
  using limit = deadline(
    timeout,
    options.signal,
    `connect to ${formatAddr({ transport: "tcp", hostname, port })}`,
  );
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname, port, signal: limit.signal });
  } catch (error) {
    if (limit.signal.aborted) throw limit.signal.reason;
    throw error;
  }
  if (options.noDelay ?? true) setNoDelay(conn);
  try {
    await clientAuthenticate(conn, options.secret, {
      hash: options.hash,
      challengeLength: options.challengeLength,
      timeout: Infinity,
      signal: limit.signal,
    });
  } catch (error) {
    closeQuietly(conn);
    throw error;
  }
  return conn;
}
