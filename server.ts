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
 * await conn.read(reply);
 * console.log(new TextDecoder().decode(reply)); // Hello
 * ```
 *
 * @module
 */

import { checkTimeout } from "./_options.ts";
import { closeQuietly, type DenoConnLike, isDenoConnLike } from "./_conn_io.ts";
import { deadline, DEFAULT_TIMEOUT, raceSignal } from "./_deadline.ts";
import { formatAddr } from "./_address.ts";
import { AuthenticationError, ProtocolError } from "./errors.ts";
import {
  type AuthenticateOptions,
  clientAuthenticate,
  DEFAULT_CHALLENGE_LENGTH,
  type HashName,
  HmacKey,
  MAX_CHALLENGE_LENGTH,
  MIN_CHALLENGE_LENGTH,
  type SecretInput,
  serverAuthenticate,
} from "./handshake.ts";
import { AcceptLoop } from "./_accept.ts";
import { addressKey } from "./_address.ts";
import {
  Admission,
  DeadlineSweep,
  Slot,
  type TurnOutcome,
  type Verdict,
} from "./_admission.ts";
import { RateLimitedLog } from "./_log.ts";
import {
  checkKey,
  DEFAULTS,
  type ResolvedServeOptions,
  resolveServeOptions,
} from "./_serve_options.ts";
import type { Duplex } from "./types.ts";

export type { Duplex } from "./types.ts";
export type {
  AuthenticateOptions,
  HashName,
  SecretInput,
} from "./handshake.ts";
export { HmacKey } from "./handshake.ts";
export { AuthenticationError } from "./errors.ts";
export type { AuthenticationFailure } from "./errors.ts";

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
   * those of `tls.ts` listeners.
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
export interface ServeErrorInfo {
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
 * Options for {@linkcode serve}. Give `key` (the Cookbook handshake) or
 * `authenticate` (your own), and `hostname`/`port` or `listener`.
 *
 * @typeParam T What the handler receives: the connection by default, or what
 * `authenticate` resolves to.
 */
export interface ServeOptions<T = ServerConn> {
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
   */
  secret?: SecretInput | HmacKey;
  /**
   * The HMAC hash of the Cookbook handshake (with `key`).
   *
   * @default {"SHA-256"}
   */
  hash?: HashName;
  /**
   * Challenge length in bytes of the Cookbook handshake (with `key`).
   *
   * @default {32}
   */
  challengeLength?: number;
  /**
   * A custom authenticator (Noise, TLS identity checks, no authentication at
   * all); its result is what the handler gets. Give this or `key`.
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
   * the other; `deno task bench:server --flood`), `examples/echo_server.ts`
   * with the defaults served a good client from another address within 1 s
   * every time, 228 probes out of 228 (at most 104 ms) while 64 addresses x
   * 64 silent sockets were held and re-opened as soon as they were closed,
   * and 244 out of 244 (at most 35 ms) under 8 x 256; its handshake rate
   * with the 4,096 held was 0.8 times the unloaded rate (a plain
   * `Deno.listen` echo loses as much). With `maxHandshakes: 2000` under the
   * same 64 x 64 flood, the re-opens kept the server's core busy (about
   * 14,000 a second), the listen backlog overflowed, and good clients waited
   * 0.4 to 1.6 s for the kernel to retransmit their SYN, or gave up. So size
   * this (and `maxConnections`) for the floods you expect, and lower
   * `handshakeTimeout` to free silent sockets sooner.
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
   * Failure throttling per address ({@linkcode ThrottleOptions}), or `false`
   * to turn it off.
   *
   * @default {{}}
   */
  throttle?: ThrottleOptions | false;
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
   * rejects if the server could not start (a key that fails to import).
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
 * How long after the grace period, in milliseconds, shutdown still waits for
 * tasks whose connections it closed before it abandons them.
 */
const ABANDON_AFTER = 1000;

/**
 * A deadline timer may fire up to this many ms early (timers are rounded):
 * the sweep treats a deadline that near as due.
 */
const SWEEP_SLACK = 1;

/**
 * Most connections the deadline sweep closes at once; more due wait
 * SWEEP_PAUSE ms. Silent sockets opened together expire together, and a
 * flood re-opens each as soon as it is closed: closing thousands at once
 * would bring them back at once, past the listen backlog (511 in Deno), and
 * the kernel would drop good clients' SYNs with theirs (a 1 s retransmit).
 * At most 64 in any window of 10 ms (6,400 a second) they come back at a
 * pace the accept loop keeps up with, at the price of closing some late.
 */
const SWEEP_BATCH = 64;
/** The deadline sweep's window, in ms: at most SWEEP_BATCH closes in one. */
const SWEEP_PAUSE = 10;

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/** Turns off Nagle's algorithm where the connection supports it. */
function setNoDelay(conn: object): void {
  const tcp = conn as Partial<Pick<Deno.TcpConn, "setNoDelay">>;
  if (typeof tcp.setNoDelay !== "function") return;
  try {
    tcp.setNoDelay(true);
  } catch {
    // A socket that already died: the handshake reports it.
  }
}

type HookName = "onConnection" | "onAuthFailure" | "onRefuse" | "onError";

type Handler<T> = (conn: T, info: ConnectionInfo) => void | Promise<void>;

/** How the server authenticates, once the key is imported. */
type Auth<T> =
  | {
    hmac: HmacKey;
    challengeLength: number;
    authenticate?: undefined;
  }
  | {
    hmac?: undefined;
    challengeLength?: undefined;
    authenticate: Authenticator<T>;
  };

/** Why the server ended a connection before its handshake finished. */
type EndReason = "timeout" | "evicted" | "shutdown";

/**
 * One accepted connection, from accept to close: the bookkeeping's slot
 * (its places in the pending lists) and the task's state, in one object.
 */
class Connection extends Slot {
  readonly conn: ServerConn;
  remoteAddr: Deno.Addr | undefined = undefined;
  localAddr: Deno.Addr | undefined = undefined;
  phase: "accept" | "waiting" | "handshake" | "handler" = "accept";
  /** Set when the server ended it before its handshake finished. */
  ended: EndReason | undefined = undefined;
  /** Its socket is closed and it is no longer counted. */
  closed = false;
  /** Shutdown stopped waiting for it: report nothing more. */
  abandoned = false;
  /** Only for the authenticators that take a signal. */
  controller: AbortController | undefined = undefined;
  /** The live list (every connection whose task runs). */
  prevLive: Connection | undefined = undefined;
  nextLive: Connection | undefined = undefined;
  #wake: ((outcome: TurnOutcome | "ended") => void) | undefined = undefined;
  #outcome: TurnOutcome | "ended" | undefined = undefined;

  constructor(conn: ServerConn) {
    super();
    this.conn = conn;
  }

  override onTurn(outcome: TurnOutcome | "ended"): void {
    const wake = this.#wake;
    if (wake === undefined) {
      this.#outcome ??= outcome;
      return;
    }
    this.#wake = undefined;
    wake(outcome);
  }

  /** Waits until its throttled address's turn comes, or it is ended. */
  waitTurn(): Promise<TurnOutcome | "ended"> {
    if (this.#outcome !== undefined) return Promise.resolve(this.#outcome);
    return new Promise((resolve) => this.#wake = resolve);
  }
}

class ServerImpl<T> implements Server {
  readonly addr: Deno.Addr;
  readonly finished: Promise<void>;
  #listener: ServeListener;
  #handler: Handler<T>;
  #ready: Promise<Auth<T>>;
  /** How connections are authenticated, once the key is imported. */
  #auth: Auth<T> | undefined;
  /** The checked options: limits, deadlines, flags. */
  #limits: ResolvedServeOptions;
  #admission: Admission<Connection>;
  #log: RateLimitedLog | undefined;
  #hooks: Pick<ServeOptions<T>, HookName>;
  #userSignal: AbortSignal | undefined;
  #onUserAbort = () => void this.shutdown();

  #closing = false;
  #stopping = new AbortController();
  #open = 0;
  #active = 0;
  #accepted = 0;
  #authenticated = 0;
  #evicted = 0;
  #nextId = 1;
  /** Connections whose task runs, in a list for shutdown. */
  #live = 0;
  #firstLive: Connection | undefined = undefined;
  #loop: AcceptLoop<ServerConn> | undefined;
  #idle: (() => void) | undefined;
  /** The one timer of every handshake deadline. */
  #sweep: DeadlineSweep<Connection>;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #abandonTimer: ReturnType<typeof setTimeout> | undefined;
  #graceOver = false;
  #paused = false;

  constructor(
    listener: ServeListener,
    ready: Promise<Auth<T>>,
    options: ServeOptions<T>,
    resolved: ResolvedServeOptions,
    handler: Handler<T>,
  ) {
    this.#listener = listener;
    this.addr = listener.addr;
    this.#ready = ready;
    this.#handler = handler;
    this.#limits = resolved;
    this.#admission = new Admission<Connection>({
      maxPerAddress: resolved.maxPerAddress,
      handshakeTimeout: resolved.handshakeTimeout,
      throttle: resolved.throttle,
      maxWaiting: resolved.maxWaiting,
    });
    this.#sweep = new DeadlineSweep<Connection>({
      admission: this.#admission,
      expire: (c) => this.#end(c, "timeout"),
      batch: SWEEP_BATCH,
      window: SWEEP_PAUSE,
      slack: SWEEP_SLACK,
    });
    this.#log = resolved.log
      ? new RateLimitedLog({ prefix: "connauth: " })
      : undefined;
    this.#hooks = {
      onConnection: options.onConnection,
      onAuthFailure: options.onAuthFailure,
      onRefuse: options.onRefuse,
      onError: options.onError,
    };
    this.#userSignal = options.signal;
    this.#userSignal?.addEventListener("abort", this.#onUserAbort, {
      once: true,
    });
    this.finished = this.#run();
    // A start failure is reported through `finished`; do not leave it
    // unhandled when nobody awaits it (shutdown() returns it).
    this.finished.catch(() => {});
    if (this.#userSignal?.aborted) void this.shutdown();
  }

  get stats(): ServerStats {
    return {
      open: this.#open,
      handshaking: this.#admission.pendingCount - this.#admission.queuedCount,
      waiting: this.#admission.queuedCount,
      active: this.#active,
      accepted: this.#accepted,
      authenticated: this.#authenticated,
      evicted: this.#evicted,
    };
  }

  shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#userSignal?.removeEventListener("abort", this.#onUserAbort);
      this.#stopping.abort(
        new DOMException("The server is shutting down", "AbortError"),
      );
      this.#admission.close();
      this.#sweep.stop();
      // Every handshake ends, and every wait for a turn.
      for (
        let c = this.#admission.firstPending();
        c !== undefined;
        c = this.#admission.firstPending()
      ) {
        this.#end(c, "shutdown");
      }
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
      this.#loop?.stop();
      if (this.#live > 0) {
        this.#graceTimer = setTimeout(() => {
          this.#graceTimer = undefined;
          this.#graceOver = true;
          for (let c = this.#firstLive; c !== undefined; c = c.nextLive) {
            this.#close(c);
          }
          this.#abandonTimer = setTimeout(
            () => this.#abandon(),
            ABANDON_AFTER,
          );
        }, this.#limits.gracePeriod);
      }
    }
    return this.finished;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  async #run(): Promise<void> {
    let auth: Auth<T>;
    try {
      auth = await this.#ready;
    } catch (error) {
      this.#closing = true;
      this.#stopping.abort(error);
      this.#userSignal?.removeEventListener("abort", this.#onUserAbort);
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
      throw error;
    }
    this.#auth = auth;
    if (!this.#closing) {
      // Accepts until shutdown (_accept.ts): a connection reset before
      // accept is skipped at once, exhaustion (EMFILE) backs off; both are
      // reported.
      this.#loop = new AcceptLoop<ServerConn>({
        listener: this.#listener,
        signal: this.#stopping.signal,
        ready: this.#hasRoom,
        onConnection: (conn) => this.#accept(conn),
        onError: (error, retryIn) =>
          this.#report(
            error,
            { phase: "accept" },
            retryIn > 0 ? `retrying in ${retryIn} ms` : "skipping it",
          ),
      });
      await this.#loop.done;
    }
    if (this.#live > 0) {
      await new Promise<void>((resolve) => this.#idle = resolve);
    }
    if (this.#graceTimer !== undefined) clearTimeout(this.#graceTimer);
    if (this.#abandonTimer !== undefined) clearTimeout(this.#abandonTimer);
    this.#log?.flush();
  }

  /**
   * Asked by the accept loop before each accept. The loop only pauses when
   * `maxConnections` are open and every one is authenticated (those are
   * never closed to make room); new clients then wait in the listen
   * backlog. With a connection not yet authenticated the loop goes on:
   * accepting one more closes one pending connection (#makeRoom).
   */
  #hasRoom = (): boolean => {
    const room = this.#open < this.#limits.maxConnections ||
      this.#admission.pendingCount > 0;
    if (room === this.#paused) {
      this.#paused = !room;
      this.#log?.line(
        room
          ? "resuming accept"
          : `pausing accept: ${this.#open} connections open (maxConnections ${this.#limits.maxConnections}), all authenticated; new clients wait in the listen backlog`,
      );
    }
    return room;
  };

  /** Takes one accepted connection (synchronously, from the accept loop). */
  #accept(conn: ServerConn): void {
    this.#accepted += 1;
    this.#open += 1;
    const c = new Connection(conn);
    this.#addLive(c);
    try {
      // Throws for a socket that died between accept and here.
      c.remoteAddr = conn.remoteAddr;
      c.localAddr = conn.localAddr;
      const key = addressKey(c.remoteAddr, this.#limits.ipv6Prefix);
      const verdict = this.#admission.admit(c, key);
      if (verdict === "max-per-address" || verdict === "banned") {
        this.#refuseAtAccept(c, verdict, key);
      } else {
        this.#sweep.watch(c.deadline);
        if (
          this.#admission.pendingCount > this.#limits.maxHandshakes ||
          this.#open > this.#limits.maxConnections
        ) {
          this.#makeRoom();
        }
        if (!c.closed) {
          // Only for the connections kept: a refused one costs no more.
          if (this.#limits.noDelay) setNoDelay(conn);
          void this.#serve(c, verdict);
          return;
        }
      }
    } catch (error) {
      this.#report(error, { phase: "accept", remoteAddr: c.remoteAddr });
    }
    this.#close(c);
    this.#removeLive(c);
  }

  /**
   * Closes pending connections by the fairness rule (`_admission.ts`: the
   * oldest of the address holding the most) until the budgets hold again.
   */
  #makeRoom(): void {
    while (true) {
      const { maxHandshakes, maxConnections } = this.#limits;
      const overHandshakes = this.#admission.pendingCount > maxHandshakes;
      if (!overHandshakes && this.#open <= maxConnections) return;
      const victim = this.#admission.victim();
      if (victim === undefined) return;
      this.#evicted += 1;
      if (this.#log !== undefined) {
        const { pending, key } = victim.entry!;
        const age = Math.round(this.#admission.clock.now() - victim.since);
        const limit = overHandshakes
          ? `maxHandshakes ${maxHandshakes}`
          : `maxConnections ${maxConnections}`;
        // Formatted only when printed: a flood costs a counter here.
        this.#log.line(() =>
          `${
            formatAddr(victim.remoteAddr)
          }: refused: closing the oldest of the ${pending} connections from ${key} that have not authenticated (the most of any address), after ${age} ms, to make room (${limit})`
        );
      }
      this.#refused(victim, "evicted");
      this.#end(victim, "evicted");
    }
  }

  /**
   * Ends a pending connection: closes its socket (which ends a pending
   * read), aborts its authenticator's signal, ends its wait for a turn. Its
   * task then reports why.
   */
  #end(c: Connection, reason: EndReason): void {
    if (c.ended !== undefined || c.closed) return;
    c.ended = reason;
    // The socket first: an authenticator that ignores its signal is
    // stopped by it, and it is closed before the wait below rejects.
    this.#close(c);
    c.controller?.abort(this.#reasonFor(reason));
    c.onTurn("ended");
  }

  #reasonFor(reason: EndReason): unknown {
    if (reason === "shutdown") return this.#stopping.signal.reason;
    if (reason === "evicted") {
      return new DOMException(
        "Cannot authenticate the client: the server closed the connection to make room for others (maxHandshakes or maxConnections)",
        "AbortError",
      );
    }
    return new DOMException(
      `Cannot authenticate the client: timed out after ${this.#limits.handshakeTimeout} ms waiting for the peer`,
      "TimeoutError",
    );
  }

  /** Closes the socket and stops counting the connection; once. */
  #close(c: Connection): void {
    if (c.closed) return;
    c.closed = true;
    closeQuietly(c.conn);
    this.#open -= 1;
    this.#admission.release(c);
    if (this.#paused) this.#loop?.wake();
  }

  #addLive(c: Connection): void {
    this.#live += 1;
    c.nextLive = this.#firstLive;
    if (this.#firstLive !== undefined) this.#firstLive.prevLive = c;
    this.#firstLive = c;
  }

  #removeLive(c: Connection): void {
    if (c.abandoned) return;
    const { prevLive: prev, nextLive: next } = c;
    if (prev !== undefined) prev.nextLive = next;
    else this.#firstLive = next;
    if (next !== undefined) next.prevLive = prev;
    c.prevLive = c.nextLive = undefined;
    this.#live -= 1;
    if (this.#live === 0 && this.#idle !== undefined) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle();
    }
  }

  /**
   * One connection's task: its wait for a turn (a throttled address), its
   * handshake, its handler. Never rejects.
   */
  async #serve(c: Connection, verdict: Verdict): Promise<void> {
    try {
      if (verdict === "wait") {
        c.phase = "waiting";
        const outcome = await c.waitTurn();
        if (outcome === "ended") return this.#reportEnded(c);
        if (outcome === "dropped") {
          if (!this.#closing) this.#refuseDropped(c);
          return;
        }
      }
      c.phase = "handshake";
      let result: T;
      try {
        const auth = this.#auth!;
        result = auth.hmac !== undefined && isDenoConnLike(c.conn)
          ? await this.#cookbook(
            c.conn,
            auth.hmac,
            auth.challengeLength,
          )
          : await this.#custom(c, auth);
      } catch (error) {
        this.#handshakeFailed(c, error);
        return;
      }
      if (c.ended !== undefined) return this.#reportEnded(c);
      this.#admission.authenticated(c);
      if (this.#closing) return;

      c.phase = "handler";
      this.#active += 1;
      this.#authenticated += 1;
      const info: ConnectionInfo = {
        id: this.#nextId++,
        remoteAddr: c.remoteAddr!,
        localAddr: c.localAddr!,
        handshakeTime: this.#admission.clock.now() - c.since,
        signal: this.#stopping.signal,
      };
      if (this.#hooks.onConnection !== undefined) {
        this.#hook("onConnection", info);
      }
      try {
        await this.#handler(result, info);
      } catch (error) {
        // A handler that stopped because info.signal aborted, or whose
        // socket the server closed after the grace period, is not news.
        const expected = this.#closing &&
          (error === this.#stopping.signal.reason || this.#graceOver);
        if (!expected && !c.abandoned) {
          this.#report(error, { phase: "handler", remoteAddr: c.remoteAddr });
        }
      } finally {
        this.#active -= 1;
      }
    } catch (error) {
      // A bug of ours; the connection still closes below.
      this.#report(error, { phase: "handshake", remoteAddr: c.remoteAddr });
    } finally {
      this.#close(c);
      this.#removeLive(c);
    }
  }

  /**
   * The Cookbook handshake on a socket read and written directly (the hot
   * path): a fresh challenge, exactly one digest back, verified in constant
   * time by `HmacKey.verify` (WebCrypto's `crypto.subtle.verify`). Its
   * deadline is the sweep's: a
   * connection past it is closed, which ends a pending read.
   */
  async #cookbook(
    conn: DenoConnLike,
    hmac: HmacKey,
    challengeLength: number,
  ): Promise<T> {
    // One backing store for both: a connection holds it until its reply
    // arrives, and a held flood is thousands of them.
    const bytes = new Uint8Array(challengeLength + hmac.digestLength);
    const challenge = crypto.getRandomValues(
      bytes.subarray(0, challengeLength),
    );
    let offset = await conn.write(challenge);
    while (offset < challenge.length) {
      offset += await conn.write(challenge.subarray(offset));
    }
    const reply = bytes.subarray(challengeLength);
    let got = 0;
    while (got < reply.length) {
      const count = await conn.read(got === 0 ? reply : reply.subarray(got));
      if (count === null) {
        throw new ProtocolError(
          `Cannot read the client's reply: the peer closed the connection after ${got} of ${reply.length} bytes`,
          "closed",
        );
      }
      got += count;
    }
    const right = await hmac.verify(reply, challenge);
    if (!right) {
      throw new AuthenticationError(
        `Cannot authenticate the client: its reply does not match the challenge under our key (wrong key, or a hash other than ${hmac.hash})`,
        "wrong-key",
      );
    }
    return conn as unknown as T;
  }

  /**
   * A custom authenticator, or the Cookbook handshake on a connection that
   * is only streams: these get a signal, aborted at the deadline, on
   * eviction and on shutdown, and the server stops waiting for them then.
   */
  async #custom(c: Connection, auth: Auth<T>): Promise<T> {
    const controller = new AbortController();
    c.controller = controller;
    const { signal } = controller;
    let result: Promise<T>;
    if (auth.hmac !== undefined) {
      result = serverAuthenticate(c.conn, auth.hmac, {
        challengeLength: auth.challengeLength,
        timeout: Infinity,
        signal,
      }).then(() => c.conn as unknown as T);
    } else {
      result = Promise.resolve(
        auth.authenticate(c.conn, { remoteAddr: c.remoteAddr!, signal }),
      );
    }
    // raceSignal also silences a late rejection.
    return await raceSignal(result, signal);
  }

  #handshakeFailed(c: Connection, error: unknown): void {
    if (c.ended !== undefined) return this.#reportEnded(c);
    if (error instanceof AuthenticationError) {
      // Counted (and the address paused) before its turn passes on.
      const { failures, delay } = this.#admission.failed(c);
      if (this.#log !== undefined) {
        const pause = failures > 0
          ? ` (failure ${failures} from ${
            c.entry!.key
          }; its next handshake waits ${delay} ms)`
          : "";
        this.#log.line(
          `${
            formatAddr(c.remoteAddr)
          }: authentication failed (${error.reason}); closing${pause}`,
        );
      }
      if (this.#hooks.onAuthFailure !== undefined) {
        this.#hook("onAuthFailure", {
          remoteAddr: c.remoteAddr!,
          localAddr: c.localAddr!,
          error,
          failures,
          delay,
        });
      }
    } else if (!this.#closing) {
      this.#report(
        error,
        { phase: "handshake", remoteAddr: c.remoteAddr },
        "closing",
      );
    }
  }

  /** Reports why the server ended a connection before it authenticated. */
  #reportEnded(c: Connection): void {
    if (c.ended !== "timeout") return; // evictions were reported then
    if (c.phase === "waiting") {
      const record = this.#admission.recordOf(c.entry!.key);
      this.#refuse(
        c,
        "throttled",
        `${c.entry!.key} is throttled after ${
          record?.failures ?? 0
        } authentication failures; no turn within the handshake deadline (${this.#limits.handshakeTimeout} ms)`,
      );
      return;
    }
    this.#report(
      this.#reasonFor("timeout"),
      { phase: "handshake", remoteAddr: c.remoteAddr },
      "closing",
    );
  }

  #refuseAtAccept(
    c: Connection,
    reason: "max-per-address" | "banned",
    key: string,
  ): void {
    if (this.#log === undefined) return this.#refused(c, reason);
    if (reason === "max-per-address") {
      const already = this.#admission.countOf(key).open - 1;
      return this.#refuse(
        c,
        reason,
        () =>
          `${already} connections from ${key} already open (maxPerAddress ${already})`,
      );
    }
    const record = this.#admission.recordOf(key);
    const now = this.#admission.clock.now();
    this.#refuse(
      c,
      reason,
      () =>
        `${key} is refused for ${
          Math.ceil(((record?.bannedUntil ?? 0) - now) / 1000)
        } s more after ${record?.failures ?? 0} authentication failures`,
    );
  }

  #refuseDropped(c: Connection): void {
    const record = this.#admission.recordOf(c.entry!.key);
    this.#refuse(
      c,
      "throttled",
      `${c.entry!.key} is throttled after ${
        record?.failures ?? 0
      } authentication failures and more than ${this.#limits.maxWaiting} of its connections wait (maxWaiting); closing the oldest, after ${
        Math.round(this.#admission.clock.now() - c.since)
      } ms`,
    );
  }

  /** Logs (`detail` formatted only when printed) and tells `onRefuse`. */
  #refuse(
    c: Connection,
    reason: RefuseReason,
    detail: string | (() => string),
  ): void {
    this.#log?.line(() =>
      `${formatAddr(c.remoteAddr)}: refused: ${
        typeof detail === "function" ? detail() : detail
      }`
    );
    this.#refused(c, reason);
  }

  /** Tells `onRefuse`. */
  #refused(c: Connection, reason: RefuseReason): void {
    if (this.#hooks.onRefuse === undefined) return;
    this.#hook("onRefuse", {
      remoteAddr: c.remoteAddr!,
      localAddr: c.localAddr!,
      reason,
    });
  }

  /**
   * Stops waiting for the tasks still running after the grace period and
   * its extra second (their connections are closed; the code that ignores
   * both is not ours to stop), reporting each.
   */
  #abandon(): void {
    this.#abandonTimer = undefined;
    for (let c = this.#firstLive; c !== undefined; c = c.nextLive) {
      c.abandoned = true;
      const what = c.phase === "handler" ? "handler" : "authenticator";
      this.#report(
        new DOMException(
          `Cannot shut down cleanly: the ${what} for ${
            formatAddr(c.remoteAddr)
          } did not settle within the grace period (${this.#limits.gracePeriod} ms) and ${ABANDON_AFTER} ms after its connection was closed; no longer waiting for it`,
          "TimeoutError",
        ),
        {
          phase: c.phase === "handler" ? "handler" : "handshake",
          remoteAddr: c.remoteAddr,
        },
      );
    }
    this.#firstLive = undefined;
    this.#live = 0;
    const idle = this.#idle;
    this.#idle = undefined;
    idle?.();
  }

  #report(error: unknown, info: ServeErrorInfo, then?: string): void {
    this.#log?.line(() => {
      const where = info.remoteAddr ? `${formatAddr(info.remoteAddr)}: ` : "";
      const detail = info.phase === "handler" && error instanceof Error &&
          error.stack
        ? error.stack
        : describe(error);
      return `${where}${info.phase} failed: ${detail}${
        then ? `; ${then}` : ""
      }`;
    });
    this.#hook("onError", error, info);
  }

  // deno-lint-ignore no-explicit-any
  #hook(name: HookName, ...args: any[]): void {
    const hook = this.#hooks[name] as
      | ((...args: unknown[]) => void)
      | undefined;
    if (!hook) return;
    try {
      hook(...args);
    } catch (error) {
      if (name === "onError") {
        console.error(`connauth: the onError hook threw: ${describe(error)}`);
      } else {
        this.#report(error, { phase: "hook" });
      }
    }
  }
}

/**
 * Starts a server that authenticates every connection, then runs `handler`
 * on it, each connection in its own task.
 *
 * With `key`, connections are authenticated with the Cookbook handshake
 * ({@linkcode serverAuthenticate}; the key is imported once, here) and the
 * handler gets the connection itself. With `authenticate`, the handler gets
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
 * | wrong key ({@linkcode AuthenticationError}) | `onAuthFailure`, closes; the address's next handshake waits (throttling) |
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
 * @throws {TypeError} When neither or both of `key` and `authenticate` are
 * given, or an option has the wrong type.
 * @throws {RangeError} When a limit or deadline is out of range.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 *
 * @example Upper-case every message; shut down with the signal
 * ```ts
 * import { connect, serve } from "./server.ts";
 *
 * const controller = new AbortController();
 * const server = serve(
 *   { port: 0, secret: "peanut butter", signal: controller.signal, log: false },
 *   async (conn, info) => {
 *     console.log("client", info.remoteAddr);
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
 * await conn.read(reply);
 * console.log(new TextDecoder().decode(reply)); // HELLO
 * conn.close();
 * controller.abort();
 * await server.finished;
 * ```
 *
 * @example A custom authenticator: pass a verdict on to the handler
 * ```ts
 * import { type ServerConn, serve } from "./server.ts";
 * import { serverAuthenticate } from "./handshake.ts";
 *
 * await using server = serve<{ conn: ServerConn; user: string }>({
 *   port: 0,
 *   log: false,
 *   authenticate: async (conn, { signal }) => {
 *     await serverAuthenticate(conn, "peanut butter", { signal });
 *     return { conn, user: "alice" };
 *   },
 * }, ({ user }) => {
 *   console.log("hello", user);
 * });
 * console.log(server.stats.open); // 0
 * ```
 */
export function serve<T = ServerConn>(
  options: ServeOptions<T>,
  handler: (conn: T, info: ConnectionInfo) => void | Promise<void>,
): Server {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot serve: expected an options object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  if (typeof handler !== "function") {
    throw new TypeError(
      `Cannot serve: expected a handler function, got ${typeof handler}`,
    );
  }
  const hasKey = options.secret !== undefined;
  const hasAuth = options.authenticate !== undefined;
  if (hasKey === hasAuth) {
    throw new TypeError(
      hasKey
        ? "Cannot serve: give either secret or authenticate, not both"
        : "Cannot serve: no authentication given; pass secret (the Cookbook handshake) or authenticate (your own)",
    );
  }
  let ready: Promise<Auth<T>>;
  if (hasAuth) {
    const authenticate = options.authenticate;
    if (typeof authenticate !== "function") {
      throw new TypeError(
        `Cannot serve: expected authenticate to be a function, got ${typeof authenticate}`,
      );
    }
    ready = Promise.resolve({ authenticate });
  } else {
    const key = options.secret!;
    checkKey(key);
    const challengeLength = checkChallengeLength(options.challengeLength);
    ready = HmacKey.import(key, { hash: options.hash }).then(
      (hmac) => ({ hmac, challengeLength }),
    );
    // Handled by the server (it rejects `finished`); avoid an unhandled
    // rejection before the server awaits it.
    ready.catch(() => {});
  }
  const resolved = resolveServeOptions(options);
  if (options.listener === undefined) {
    const port = options.port ?? DEFAULTS.port;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new RangeError(
        `Cannot serve: expected a port from 0 to 65535, got ${port}`,
      );
    }
    const listener = Deno.listen({
      hostname: options.hostname ?? DEFAULTS.hostname,
      port,
      transport: "tcp",
    });
    try {
      return new ServerImpl(listener, ready, options, resolved, handler);
    } catch (error) {
      listener.close();
      throw error;
    }
  }
  return new ServerImpl(options.listener, ready, options, resolved, handler);
}

/** Checks serve()'s `challengeLength` (the handshake's rule), at start. */
function checkChallengeLength(length: number | undefined): number {
  if (length === undefined) return DEFAULT_CHALLENGE_LENGTH;
  if (!Number.isInteger(length)) {
    throw new TypeError(
      `Cannot use challengeLength: expected an integer, got ${length}`,
    );
  }
  if (length < MIN_CHALLENGE_LENGTH || length > MAX_CHALLENGE_LENGTH) {
    throw new RangeError(
      `Cannot use challengeLength ${length}: expected ${MIN_CHALLENGE_LENGTH} to ${MAX_CHALLENGE_LENGTH} bytes`,
    );
  }
  return length;
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
 * @param options Host, port, key, hash, challenge length, deadline, signal.
 * @returns The authenticated connection; close it when done.
 * @throws {TypeError} When the key is missing, empty or of the wrong type.
 * @throws {RangeError} When `port`, `timeout` or `challengeLength` is out of
 * range.
 * @throws {ProtocolError} When the server closes before a whole challenge.
 * @throws {DOMException} `TimeoutError` past `timeout`; the signal's reason
 * when it aborts.
 * @throws {Deno.errors.ConnectionRefused} When nothing listens on the port.
 *
 * @example
 * ```ts
 * import { connect, serve } from "./server.ts";
 *
 * await using server = serve(
 *   { port: 0, secret: "peanut butter", log: false },
 *   async (conn) => await conn.readable.pipeTo(conn.writable),
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * using conn = await connect({ port, secret: "peanut butter", timeout: 5000 });
 * console.log(conn.remoteAddr.port === port); // true
 * ```
 */
export async function connect(options: ConnectOptions): Promise<Deno.TcpConn> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot connect: expected an options object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  const { port } = options;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(
      `Cannot connect: expected a port from 1 to 65535, got ${port}`,
    );
  }
  if (options.secret === undefined) {
    throw new TypeError(
      "Cannot connect: no secret given; pass the shared secret",
    );
  }
  checkKey(options.secret);
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
