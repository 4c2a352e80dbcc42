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
 *   nothing costs one pending task and one timer until the handshake deadline
 *   closes it. A client that resets its connection before it is accepted
 *   costs one failed accept, skipped at once; only running out of file
 *   descriptors makes the loop back off (5 ms doubling to 1 s, for as long
 *   as it lasts).
 * - Limits on connections open at once, connections still handshaking, and
 *   connections per remote address (an IPv4 address, an IPv6 /64, or one
 *   entry for all Unix socket peers). The global limits pause the accept
 *   loop (backpressure: the kernel queues new clients in the listen backlog);
 *   the per-address limit closes the newest connection with a logged reason.
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
 *   { hostname: "127.0.0.1", port: 0, key: "peanut butter", log: false },
 *   async (conn) => {
 *     await conn.readable.pipeTo(conn.writable);
 *   },
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * using conn = await connect({ port, key: "peanut butter" });
 * await conn.write(new TextEncoder().encode("Hello"));
 * const reply = new Uint8Array(5);
 * await conn.read(reply);
 * console.log(new TextDecoder().decode(reply)); // Hello
 * ```
 *
 * @module
 */

import {
  checkMillis,
  checkTimeout,
  closeQuietly,
  deadline,
  DEFAULT_TIMEOUT,
  formatAddr,
  raceSignal,
} from "./_io.ts";
import { AuthenticationError } from "./errors.ts";
import {
  type AuthenticateOptions,
  clientAuthenticate,
  type HashName,
  HmacKey,
  type KeyInput,
  serverAuthenticate,
} from "./handshake.ts";
import {
  AcceptLoop,
  AddressCounts,
  addressKey,
  checkIpv6Prefix,
} from "./_accept.ts";
import type { Duplex } from "./types.ts";

export type { Duplex } from "./types.ts";
export type { AuthenticateOptions, HashName, KeyInput } from "./handshake.ts";
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
   * `DOMException`) or when the server shuts down (an `AbortError`). The
   * authenticator should stop waiting on the peer when it aborts; if it
   * does not, the server closes the connection then (which ends a pending
   * read) and no longer waits for it.
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
 * Why {@linkcode serve} closed a connection before any handshake:
 * `"max-per-address"` (too many open from its address), `"banned"` (its
 * address is refused after `banAfter` failures) or `"throttled"` (it waited
 * for its throttled address's turn until its handshake deadline, or was the
 * oldest waiting when more than `maxWaiting` arrived).
 */
export type RefuseReason = "max-per-address" | "banned" | "throttled";

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
   * The shared key for the Cookbook handshake ({@linkcode serverAuthenticate}),
   * imported once when the server starts. Give this or `authenticate`.
   */
  key?: KeyInput | HmacKey;
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
   * handshaking, or in the handler). At the limit the server stops accepting
   * until one closes; new clients wait in the kernel's listen backlog.
   *
   * @default {10000}
   */
  maxConnections?: number;
  /**
   * Most connections not yet authenticated at once (in their handshake, or
   * waiting for a throttled address's turn). At the limit the server stops
   * accepting until a handshake ends (by success, failure or deadline).
   *
   * Silent sockets count until their deadline, so with the defaults
   * `maxHandshakes / maxPerAddress` addresses (8) can pause accepting, for
   * everyone, for up to `handshakeTimeout`. Lower `handshakeTimeout` or
   * `maxPerAddress`, or raise this, to make that harder.
   *
   * @default {2000}
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
   * paused accepts) to stderr with `console.error`. Lines name the peer's
   * address and the error, never key material. At most 20 lines a second
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
  /** The shared key. */
  key: KeyInput | HmacKey;
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

/** Most lines the default logger prints a second. */
const LOG_LINES_PER_SECOND = 20;

/**
 * How long after the grace period, in milliseconds, shutdown still waits for
 * tasks whose connections it closed before it abandons them.
 */
const ABANDON_AFTER = 1000;

const DEFAULTS = {
  hostname: "127.0.0.1",
  port: 0,
  handshakeTimeout: 10_000,
  maxConnections: 10_000,
  maxHandshakes: 2_000,
  maxPerAddress: 256,
  ipv6Prefix: 64,
  gracePeriod: 5_000,
  delay: 250,
  maxDelay: 10_000,
  banAfter: Infinity,
  banFor: 60_000,
  forgetAfter: 600_000,
  maxAddresses: 10_000,
  maxWaiting: 32,
} as const;

function checkCount(value: number | undefined, fallback: number, what: string) {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(
      `Cannot use ${what}: expected a number, got ${typeof value}`,
    );
  }
  if (value < 1 || (Number.isFinite(value) && !Number.isInteger(value))) {
    throw new RangeError(
      `Cannot use ${what}: expected a whole number of at least 1 (or Infinity), got ${value}`,
    );
  }
  return value;
}

function checkKey(key: unknown): void {
  if (key instanceof HmacKey) return;
  if (typeof CryptoKey !== "undefined" && key instanceof CryptoKey) return;
  if (typeof key === "string" || key instanceof Uint8Array) {
    if (key.length === 0) {
      throw new TypeError(
        "Cannot use the key: it is empty; give a non-empty shared secret",
      );
    }
    return;
  }
  throw new TypeError(
    `Cannot use the key: expected a string, Uint8Array, CryptoKey or HmacKey, got ${
      key === null ? "null" : typeof key
    }`,
  );
}

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

interface FailureRecord {
  failures: number;
  last: number;
  /** No handshake from the address starts before this time. */
  pausedUntil: number;
  bannedUntil: number;
}

type FailureOptions = Required<Omit<ThrottleOptions, "maxWaiting">>;

/** Failures per address, bounded: least recently failing forgotten first. */
class FailureTable {
  #records = new Map<string, FailureRecord>();
  #options: FailureOptions;

  constructor(options: FailureOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#records.size;
  }

  lookup(key: string, now: number): FailureRecord | undefined {
    const record = this.#records.get(key);
    if (!record) return undefined;
    if (
      now - record.last > this.#options.forgetAfter &&
      now >= record.bannedUntil && now >= record.pausedUntil
    ) {
      this.#records.delete(key);
      return undefined;
    }
    return record;
  }

  /** Counts a failure and pauses the address; returns the record and pause. */
  fail(key: string, now: number): { record: FailureRecord; delay: number } {
    const record = this.lookup(key, now) ??
      { failures: 0, last: now, pausedUntil: 0, bannedUntil: 0 };
    this.#records.delete(key);
    record.failures += 1;
    record.last = now;
    if (record.failures >= this.#options.banAfter) {
      record.bannedUntil = now + this.#options.banFor;
    }
    this.#records.set(key, record);
    while (this.#records.size > this.#options.maxAddresses) {
      const oldest = this.#records.keys().next().value as string;
      this.#records.delete(oldest);
    }
    const { delay, maxDelay } = this.#options;
    const pause = Math.min(
      delay * 2 ** Math.min(record.failures - 1, 52),
      maxDelay,
    );
    record.pausedUntil = Math.max(record.pausedUntil, now + pause);
    return { record, delay: pause };
  }
}

type HookName = "onConnection" | "onAuthFailure" | "onRefuse" | "onError";

type Handler<T> = (conn: T, info: ConnectionInfo) => void | Promise<void>;

/** One accepted connection's task, while it runs. */
interface Task {
  readonly conn: ServerConn;
  remoteAddr?: Deno.Addr;
  phase: "accept" | "waiting" | "handshake" | "handler";
  /** Shutdown stopped waiting for it: report nothing more. */
  abandoned: boolean;
}

/** How a wait for a throttled address's turn ended. */
type WaitOutcome = "admitted" | "unthrottled" | "evicted" | "aborted";

interface Waiter {
  settle(outcome: WaitOutcome): void;
}

/**
 * The turn-taking of one throttled address: at most one handshake at a
 * time (`busy`), none during its pause (`timer` wakes the queue at its end),
 * the rest waiting in arrival order.
 */
interface Gate {
  busy: boolean;
  queue: Waiter[];
  timer: ReturnType<typeof setTimeout> | undefined;
}

class ServerImpl<T> implements Server {
  readonly addr: Deno.Addr;
  readonly finished: Promise<void>;
  #listener: ServeListener;
  #handler: Handler<T>;
  #authenticate: Authenticator<T> | undefined;
  #ready: Promise<Authenticator<T>>;
  #handshakeTimeout: number;
  #maxConnections: number;
  #maxHandshakes: number;
  #maxPerAddress: number;
  #ipv6Prefix: number;
  #gracePeriod: number;
  #failures: FailureTable | undefined;
  #maxWaiting: number;
  #log: boolean;
  #noDelay: boolean;
  #hooks: Pick<ServeOptions<T>, HookName>;
  #userSignal: AbortSignal | undefined;
  #onUserAbort = () => void this.shutdown();

  #closing = false;
  #stopping = new AbortController();
  #open = 0;
  #handshaking = 0;
  #waiting = 0;
  #active = 0;
  #accepted = 0;
  #authenticated = 0;
  #nextId = 1;
  #perAddress = new AddressCounts();
  #gates = new Map<string, Gate>();
  #tasks = new Set<Task>();
  #loop: AcceptLoop<ServerConn> | undefined;
  #idle: (() => void) | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #abandonTimer: ReturnType<typeof setTimeout> | undefined;
  #graceOver = false;
  #paused = false;
  #logWindow = 0;
  #logCount = 0;
  #logSuppressed = 0;

  constructor(
    listener: ServeListener,
    ready: Promise<Authenticator<T>>,
    options: ServeOptions<T>,
    handler: Handler<T>,
  ) {
    this.#listener = listener;
    this.addr = listener.addr;
    this.#ready = ready;
    this.#handler = handler;
    this.#handshakeTimeout = checkTimeout(
      options.handshakeTimeout ?? DEFAULTS.handshakeTimeout,
      "handshakeTimeout",
    );
    this.#maxConnections = checkCount(
      options.maxConnections,
      DEFAULTS.maxConnections,
      "maxConnections",
    );
    this.#maxHandshakes = checkCount(
      options.maxHandshakes,
      DEFAULTS.maxHandshakes,
      "maxHandshakes",
    );
    this.#maxPerAddress = checkCount(
      options.maxPerAddress,
      DEFAULTS.maxPerAddress,
      "maxPerAddress",
    );
    this.#ipv6Prefix = checkIpv6Prefix(
      options.ipv6Prefix,
      DEFAULTS.ipv6Prefix,
    );
    this.#gracePeriod = checkMillis(
      options.gracePeriod,
      DEFAULTS.gracePeriod,
      "gracePeriod",
    );
    const throttle = options.throttle ?? {};
    this.#maxWaiting = DEFAULTS.maxWaiting;
    if (throttle !== false) {
      if (typeof throttle !== "object" || throttle === null) {
        throw new TypeError(
          `Cannot use throttle: expected an options object or false, got ${typeof throttle}`,
        );
      }
      this.#failures = new FailureTable({
        delay: checkMillis(throttle.delay, DEFAULTS.delay, "throttle.delay"),
        maxDelay: checkMillis(
          throttle.maxDelay,
          DEFAULTS.maxDelay,
          "throttle.maxDelay",
        ),
        banAfter: checkCount(
          throttle.banAfter,
          DEFAULTS.banAfter,
          "throttle.banAfter",
        ),
        banFor: checkMillis(
          throttle.banFor,
          DEFAULTS.banFor,
          "throttle.banFor",
        ),
        forgetAfter: checkMillis(
          throttle.forgetAfter,
          DEFAULTS.forgetAfter,
          "throttle.forgetAfter",
        ),
        maxAddresses: checkCount(
          throttle.maxAddresses,
          DEFAULTS.maxAddresses,
          "throttle.maxAddresses",
        ),
      });
      this.#maxWaiting = checkCount(
        throttle.maxWaiting,
        DEFAULTS.maxWaiting,
        "throttle.maxWaiting",
      );
    }
    this.#log = options.log ?? true;
    this.#noDelay = options.noDelay ?? true;
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
      handshaking: this.#handshaking,
      waiting: this.#waiting,
      active: this.#active,
      accepted: this.#accepted,
      authenticated: this.#authenticated,
    };
  }

  shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#userSignal?.removeEventListener("abort", this.#onUserAbort);
      // Aborts every handshake deadline, which takes the waiting
      // connections out of their queues.
      this.#stopping.abort(
        new DOMException("The server is shutting down", "AbortError"),
      );
      for (const gate of this.#gates.values()) {
        if (gate.timer !== undefined) clearTimeout(gate.timer);
        gate.timer = undefined;
      }
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
      this.#wakeAcceptLoop();
      if (this.#tasks.size > 0) {
        this.#graceTimer = setTimeout(() => {
          this.#graceTimer = undefined;
          this.#graceOver = true;
          for (const task of this.#tasks) closeQuietly(task.conn);
          this.#abandonTimer = setTimeout(
            () => this.#abandon(),
            ABANDON_AFTER,
          );
        }, this.#gracePeriod);
      }
    }
    return this.finished;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  async #run(): Promise<void> {
    let authenticate: Authenticator<T>;
    try {
      authenticate = await this.#ready;
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
    this.#authenticate = authenticate;
    if (!this.#closing) await this.#acceptLoop();
    if (this.#tasks.size > 0) {
      await new Promise<void>((resolve) => this.#idle = resolve);
    }
    if (this.#graceTimer !== undefined) clearTimeout(this.#graceTimer);
    if (this.#abandonTimer !== undefined) clearTimeout(this.#abandonTimer);
    if (this.#log) this.#flushLog();
  }

  /**
   * Stops waiting for the tasks still running after the grace period and
   * its extra second (their connections are closed; the code that ignores
   * both is not ours to stop), reporting each.
   */
  #abandon(): void {
    this.#abandonTimer = undefined;
    for (const task of this.#tasks) {
      task.abandoned = true;
      const what = task.phase === "handler" ? "handler" : "authenticator";
      this.#report(
        new DOMException(
          `Cannot shut down cleanly: the ${what} for ${
            formatAddr(task.remoteAddr)
          } did not settle within the grace period (${this.#gracePeriod} ms) and ${ABANDON_AFTER} ms after its connection was closed; no longer waiting for it`,
          "TimeoutError",
        ),
        {
          phase: task.phase === "handler" ? "handler" : "handshake",
          remoteAddr: task.remoteAddr,
        },
      );
    }
    this.#tasks.clear();
    const idle = this.#idle;
    this.#idle = undefined;
    idle?.();
  }

  /**
   * Asked by the accept loop before each accept: whether a connection may
   * be taken now. At `maxConnections` or `maxHandshakes` the loop pauses
   * (new clients wait in the listen backlog) until a slot frees.
   */
  #hasCapacity(): boolean {
    const free = this.#open < this.#maxConnections &&
      this.#handshaking + this.#waiting < this.#maxHandshakes;
    if (free && this.#paused) {
      this.#paused = false;
      this.#logLine("resuming accept");
    } else if (!free && !this.#paused) {
      this.#paused = true;
      this.#logLine(
        `pausing accept: ${this.#open} connections open (maxConnections ${this.#maxConnections}), ${
          this.#handshaking + this.#waiting
        } not yet authenticated (maxHandshakes ${this.#maxHandshakes}); new clients wait in the listen backlog`,
      );
    }
    return free;
  }

  #wakeAcceptLoop(): void {
    this.#loop?.wake();
  }

  /**
   * Accepts until shutdown (`_accept.ts`): a connection reset before accept
   * is skipped at once, exhaustion (EMFILE) backs off; both are reported.
   */
  #acceptLoop(): Promise<void> {
    this.#loop = new AcceptLoop<ServerConn>({
      listener: this.#listener,
      signal: this.#stopping.signal,
      ready: () => this.#hasCapacity(),
      onConnection: (conn) => this.#startTask(conn),
      onError: (error, retryIn) =>
        this.#report(
          error,
          { phase: "accept" },
          retryIn > 0 ? `retrying in ${retryIn} ms` : "skipping it",
        ),
    });
    return this.#loop.done;
  }

  #startTask(conn: ServerConn): void {
    const task: Task = { conn, phase: "accept", abandoned: false };
    this.#tasks.add(task);
    this.#connection(task).finally(() => {
      if (!this.#tasks.delete(task)) return;
      if (this.#tasks.size === 0) {
        const idle = this.#idle;
        this.#idle = undefined;
        idle?.();
      }
    });
  }

  async #connection(task: Task): Promise<void> {
    const { conn } = task;
    const accepted = performance.now();
    this.#accepted += 1;
    this.#open += 1;
    let remoteAddr: Deno.Addr;
    let localAddr: Deno.Addr;
    try {
      remoteAddr = conn.remoteAddr;
      localAddr = conn.localAddr;
    } catch (error) {
      // A socket that died between accept and here.
      this.#report(error, { phase: "accept" });
      this.#open -= 1;
      closeQuietly(conn);
      this.#wakeAcceptLoop();
      return;
    }
    task.remoteAddr = remoteAddr;
    if (this.#noDelay) setNoDelay(conn);
    const key = addressKey(remoteAddr, this.#ipv6Prefix);
    const count = this.#perAddress.add(key);
    let counted: "waiting" | "handshake" | "handler" | undefined;
    /** The throttled address's turn, held by this connection's handshake. */
    let turn: Gate | undefined;
    // The handshake deadline runs from accept, through any wait for a turn.
    const limit = deadline(
      this.#handshakeTimeout,
      this.#stopping.signal,
      "authenticate the client",
    );
    try {
      if (count > this.#maxPerAddress) {
        this.#refuse(
          remoteAddr,
          localAddr,
          "max-per-address",
          `${
            count - 1
          } connections from ${key} already open (maxPerAddress ${this.#maxPerAddress})`,
        );
        return;
      }
      const record = this.#failures?.lookup(key, Date.now());
      if (record && record.bannedUntil > Date.now()) {
        this.#refuse(
          remoteAddr,
          localAddr,
          "banned",
          `${key} is refused for ${
            Math.ceil((record.bannedUntil - Date.now()) / 1000)
          } s more after ${record.failures} authentication failures`,
        );
        return;
      }

      if (record) {
        // The address has failed before: its handshakes take turns.
        const gate = this.#gate(key);
        if (
          !gate.busy && gate.queue.length === 0 &&
          record.pausedUntil <= Date.now()
        ) {
          gate.busy = true;
          turn = gate;
        } else {
          counted = "waiting";
          task.phase = "waiting";
          this.#waiting += 1;
          const waitStart = performance.now();
          const outcome = await this.#waitTurn(key, gate, limit.signal);
          this.#waiting -= 1;
          counted = undefined;
          this.#wakeAcceptLoop();
          if (outcome === "admitted") {
            turn = gate;
          } else if (outcome !== "unthrottled") {
            if (!this.#closing) {
              const waited = Math.round(performance.now() - waitStart);
              this.#refuse(
                remoteAddr,
                localAddr,
                "throttled",
                outcome === "evicted"
                  ? `${key} is throttled after ${record.failures} authentication failures and more than ${this.#maxWaiting} of its connections wait (maxWaiting); closing the oldest, after ${waited} ms`
                  : `${key} is throttled after ${record.failures} authentication failures; no turn within the handshake deadline (${this.#handshakeTimeout} ms)`,
              );
            }
            return;
          }
        }
      }

      counted = "handshake";
      task.phase = "handshake";
      this.#handshaking += 1;
      let result!: T;
      let failure: { error: unknown } | undefined;
      try {
        result = await this.#runAuthenticator(conn, remoteAddr, limit.signal);
      } catch (error) {
        failure = { error };
      }
      limit[Symbol.dispose]();
      this.#handshaking -= 1;
      counted = undefined;
      if (failure) {
        const { error } = failure;
        if (error instanceof AuthenticationError) {
          // Counted (and the address paused) before its turn passes on.
          this.#authFailure(error, key, remoteAddr, localAddr);
        } else if (!this.#closing) {
          this.#report(error, { phase: "handshake", remoteAddr }, "closing");
        }
        return;
      }
      if (turn) {
        this.#endTurn(key, turn);
        turn = undefined;
      }
      this.#wakeAcceptLoop();
      if (this.#closing) return;

      counted = "handler";
      task.phase = "handler";
      this.#active += 1;
      this.#authenticated += 1;
      const info: ConnectionInfo = {
        id: this.#nextId++,
        remoteAddr,
        localAddr,
        handshakeTime: performance.now() - accepted,
        signal: this.#stopping.signal,
      };
      this.#hook("onConnection", info);
      try {
        await this.#handler(result, info);
      } catch (error) {
        // A handler that stopped because info.signal aborted, or whose
        // socket the server closed after the grace period, is not news.
        const expected = this.#closing &&
          (error === this.#stopping.signal.reason || this.#graceOver);
        if (!expected && !task.abandoned) {
          this.#report(error, { phase: "handler", remoteAddr });
        }
      }
    } finally {
      limit[Symbol.dispose]();
      if (counted === "waiting") this.#waiting -= 1;
      if (counted === "handshake") this.#handshaking -= 1;
      if (counted === "handler") this.#active -= 1;
      if (turn) this.#endTurn(key, turn);
      closeQuietly(conn);
      this.#open -= 1;
      this.#perAddress.remove(key);
      this.#wakeAcceptLoop();
    }
  }

  /**
   * Runs the authenticator until it settles or its signal aborts (deadline
   * or shutdown). On abort the connection is closed at once, so an
   * authenticator that ignores its signal is stopped by its socket, and the
   * server stops waiting for it: a late result is dropped.
   */
  async #runAuthenticator(
    conn: ServerConn,
    remoteAddr: Deno.Addr,
    signal: AbortSignal,
  ): Promise<T> {
    const onAbort = () => closeQuietly(conn);
    if (signal.aborted) {
      onAbort();
      throw signal.reason;
    }
    // Registered before raceSignal's own listener: the socket is closed
    // before the wait rejects. raceSignal also silences a late rejection.
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await raceSignal(
        Promise.resolve(this.#authenticate!(conn, { remoteAddr, signal })),
        signal,
      );
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** The turn-taking state of a throttled address, created on first use. */
  #gate(key: string): Gate {
    let gate = this.#gates.get(key);
    if (!gate) {
      gate = { busy: false, queue: [], timer: undefined };
      this.#gates.set(key, gate);
    }
    return gate;
  }

  /** Queues a connection for its address's turn. */
  #waitTurn(
    key: string,
    gate: Gate,
    signal: AbortSignal,
  ): Promise<WaitOutcome> {
    const { promise, resolve } = Promise.withResolvers<WaitOutcome>();
    const waiter: Waiter = {
      settle: (outcome) => {
        signal.removeEventListener("abort", onAbort);
        resolve(outcome);
      },
    };
    const onAbort = () => {
      const index = gate.queue.indexOf(waiter);
      if (index >= 0) gate.queue.splice(index, 1);
      waiter.settle("aborted");
      this.#nextTurn(key);
    };
    if (signal.aborted) return Promise.resolve("aborted");
    signal.addEventListener("abort", onAbort, { once: true });
    if (gate.queue.length >= this.#maxWaiting) {
      gate.queue.shift()!.settle("evicted");
    }
    gate.queue.push(waiter);
    this.#nextTurn(key);
    return promise;
  }

  #endTurn(key: string, gate: Gate): void {
    gate.busy = false;
    this.#nextTurn(key);
  }

  /**
   * Gives a throttled address's turn to its oldest waiting connection, once
   * no handshake of its runs and its pause is over; lets them all go when
   * the address has been forgotten; drops the state when nothing waits.
   */
  #nextTurn(key: string): void {
    const gate = this.#gates.get(key);
    if (!gate || gate.busy) return;
    if (gate.queue.length === 0) {
      if (gate.timer !== undefined) clearTimeout(gate.timer);
      this.#gates.delete(key);
      return;
    }
    if (this.#closing || gate.timer !== undefined) return;
    const now = Date.now();
    const record = this.#failures?.lookup(key, now);
    if (!record) {
      this.#gates.delete(key);
      for (const waiter of gate.queue.splice(0)) waiter.settle("unthrottled");
      return;
    }
    if (record.pausedUntil > now) {
      gate.timer = setTimeout(() => {
        gate.timer = undefined;
        this.#nextTurn(key);
      }, record.pausedUntil - now);
      return;
    }
    gate.busy = true;
    gate.queue.shift()!.settle("admitted");
  }

  #authFailure(
    error: AuthenticationError,
    key: string,
    remoteAddr: Deno.Addr,
    localAddr: Deno.Addr,
  ): void {
    let failures = 0;
    let delay = 0;
    if (this.#failures) {
      const counted = this.#failures.fail(key, Date.now());
      failures = counted.record.failures;
      delay = counted.delay;
    }
    if (this.#log) {
      const pause = this.#failures
        ? ` (failure ${failures} from ${key}; its next handshake waits ${delay} ms)`
        : "";
      this.#logLine(
        `${
          formatAddr(remoteAddr)
        }: authentication failed (${error.reason}); closing${pause}`,
      );
    }
    this.#hook("onAuthFailure", {
      remoteAddr,
      localAddr,
      error,
      failures,
      delay,
    });
  }

  #refuse(
    remoteAddr: Deno.Addr,
    localAddr: Deno.Addr,
    reason: RefuseReason,
    detail: string,
  ): void {
    this.#logLine(`${formatAddr(remoteAddr)}: refused: ${detail}`);
    this.#hook("onRefuse", { remoteAddr, localAddr, reason });
  }

  #report(error: unknown, info: ServeErrorInfo, then?: string): void {
    if (this.#log) {
      const where = info.remoteAddr ? `${formatAddr(info.remoteAddr)}: ` : "";
      const detail = info.phase === "handler" && error instanceof Error &&
          error.stack
        ? error.stack
        : describe(error);
      this.#logLine(
        `${where}${info.phase} failed: ${detail}${then ? `; ${then}` : ""}`,
      );
    }
    this.#hook("onError", error, info);
  }

  /**
   * Logs a line, at most LOG_LINES_PER_SECOND a second so that a flood of
   * bad clients cannot flood the log; the rest are counted and summed up in
   * the next line printed after the second (and at shutdown).
   */
  #logLine(line: string): void {
    if (!this.#log) return;
    const now = Date.now();
    if (now - this.#logWindow >= 1000) {
      this.#flushLog();
      this.#logWindow = now;
      this.#logCount = 0;
    }
    if (this.#logCount < LOG_LINES_PER_SECOND) {
      this.#logCount += 1;
      console.error(`connauth: ${line}`);
    } else {
      this.#logSuppressed += 1;
    }
  }

  #flushLog(): void {
    if (this.#logSuppressed > 0) {
      console.error(
        `connauth: ${this.#logSuppressed} more lines suppressed (over ${LOG_LINES_PER_SECOND} a second); use the hooks to see every event`,
      );
      this.#logSuppressed = 0;
    }
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
 * | event | what the server does |
 * | --- | --- |
 * | handshake succeeds | `onConnection`, then the handler |
 * | wrong key ({@linkcode AuthenticationError}) | `onAuthFailure`, closes; the address's next handshake waits (throttling) |
 * | connection from an address with failures on record | waits its turn, silently: one handshake at a time, none during the pause |
 * | handshake deadline (even for an authenticator that ignores its signal), garbage, reset | `onError` (phase `"handshake"`), closes |
 * | handler throws | `onError` (phase `"handler"`), closes, goes on |
 * | connection reset before accept | `onError` (phase `"accept"`), skips it at once |
 * | out of file descriptors (EMFILE, ENFILE) | `onError` (phase `"accept"`), retries after 5 ms doubling to 1 s |
 * | `maxConnections` or `maxHandshakes` reached | stops accepting until a slot frees |
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
 *   { port: 0, key: "peanut butter", signal: controller.signal, log: false },
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
 * const conn = await connect({ port, key: "peanut butter" });
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
  const hasKey = options.key !== undefined;
  const hasAuth = options.authenticate !== undefined;
  if (hasKey === hasAuth) {
    throw new TypeError(
      hasKey
        ? "Cannot serve: give either key or authenticate, not both"
        : "Cannot serve: no authentication given; pass key (the Cookbook handshake) or authenticate (your own)",
    );
  }
  let ready: Promise<Authenticator<T>>;
  if (hasAuth) {
    if (typeof options.authenticate !== "function") {
      throw new TypeError(
        `Cannot serve: expected authenticate to be a function, got ${typeof options
          .authenticate}`,
      );
    }
    ready = Promise.resolve(options.authenticate!);
  } else {
    checkKey(options.key);
    const challengeLength = options.challengeLength;
    ready = HmacKey.import(options.key!, { hash: options.hash }).then(
      (hmac) => async (conn: ServerConn, context: AuthenticatorContext) => {
        await serverAuthenticate(conn, hmac, {
          challengeLength,
          timeout: Infinity,
          signal: context.signal,
        });
        return conn as T;
      },
    );
    // Handled by the server (it rejects `finished`); avoid an unhandled
    // rejection before the server awaits it.
    ready.catch(() => {});
  }
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
      return new ServerImpl(listener, ready, options, handler);
    } catch (error) {
      listener.close();
      throw error;
    }
  }
  return new ServerImpl(options.listener, ready, options, handler);
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
 *   { port: 0, key: "peanut butter", log: false },
 *   async (conn) => await conn.readable.pipeTo(conn.writable),
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * using conn = await connect({ port, key: "peanut butter", timeout: 5000 });
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
  if (options.key === undefined) {
    throw new TypeError("Cannot connect: no key given; pass the shared key");
  }
  checkKey(options.key);
  const hostname = options.hostname ?? DEFAULTS.hostname;
  const timeout = checkTimeout(options.timeout ?? DEFAULT_TIMEOUT);
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
    await clientAuthenticate(conn, options.key, {
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
