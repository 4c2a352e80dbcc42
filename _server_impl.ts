// Private: the running server that serve() returns (ServerImpl), the state
// machine of its connections: accepted (admitted or refused at once),
// waiting for a throttled address's turn, handshaking, in the handler,
// closed; ended early by the deadline sweep, an eviction or shutdown.
//
// It is longer than the other files because it is one state machine: every
// transition moves the same counts (open, active, the admission's pending
// lists, the live list) and must leave them consistent, which is easiest to
// check when they are all in one place. What is not the state machine lives
// next to it: the bookkeeping in _admission.ts, the handshake step in
// _serve_handshake.ts, one connection's state in _serve_connection.ts, the
// hooks and the log in _serve_report.ts, the options in _serve_options.ts.
import { AcceptLoop } from "./_accept.ts";

import { Admission, type Verdict } from "./_admission.ts";
import { DeadlineSweep } from "./_deadline_sweep.ts";
import { closeQuietly, isDenoConnLike, setNoDelay } from "./_conn_io.ts";
import { addressKey, formatAddr, plainAddr } from "./_address.ts";
import type { ResolvedServeOptions } from "./_serve_options.ts";
import {
  Connection,
  type EndReason,
  LiveConnections,
} from "./_serve_connection.ts";
import { type Auth, cookbook, withSignal } from "./_serve_handshake.ts";
import { ServeReporter } from "./_serve_report.ts";
import { AuthenticationError } from "./errors.ts";
import type {
  ConnectionInfo,
  ServeListener,
  ServeOptions,
  Server,
  ServerConn,
  ServerStats,
} from "./server.ts";

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

/** What serve() runs for each authenticated connection. */
export type Handler<T> = (
  conn: T,
  info: ConnectionInfo,
) => void | Promise<void>;

/** The {@linkcode Server} that serve() returns. */
export class ServerImpl<T> implements Server {
  readonly addr: Deno.Addr;
  readonly finished: Promise<void>;
  #listener: ServeListener;
  #handler: Handler<T>;
  #ready: Promise<Auth<T>>;
  /** How connections are authenticated, once the secret is imported. */
  #auth: Auth<T> | undefined;
  /** The checked options: limits, deadlines, flags. */
  #limits: ResolvedServeOptions;
  #admission: Admission<Connection>;
  #reporter: ServeReporter;
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
  /** Connections whose task runs, for shutdown. */
  #live = new LiveConnections();
  #loop: AcceptLoop<ServerConn> | undefined;
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
    this.addr = plainAddr(listener.addr);
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
    this.#reporter = new ServeReporter(options, resolved.log);
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
      closeQuietly(this.#listener);
      this.#loop?.stop();
      // An infinite grace period waits for the handlers however long they
      // run (the signal in their ConnectionInfo has aborted).
      if (this.#live.size > 0 && this.#limits.gracePeriod !== Infinity) {
        this.#graceTimer = setTimeout(() => {
          this.#graceTimer = undefined;
          this.#graceOver = true;
          for (let c = this.#live.first; c !== undefined; c = c.nextLive) {
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
      closeQuietly(this.#listener);
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
          this.#reporter.error(
            error,
            { phase: "accept" },
            retryIn > 0 ? `retrying in ${retryIn} ms` : "skipping it",
          ),
      });
      await this.#loop.done;
    }
    if (this.#live.size > 0) await this.#live.idle();
    if (this.#graceTimer !== undefined) clearTimeout(this.#graceTimer);
    if (this.#abandonTimer !== undefined) clearTimeout(this.#abandonTimer);
    this.#reporter.flush();
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
      this.#reporter.line(
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
    this.#live.add(c);
    try {
      // Throws for a socket that died between accept and here. Copies:
      // Deno's addresses print as [Object: null prototype].
      c.remoteAddr = plainAddr(conn.remoteAddr);
      c.localAddr = plainAddr(conn.localAddr);
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
      this.#reporter.error(error, {
        phase: "accept",
        remoteAddr: c.remoteAddr,
      });
    }
    this.#close(c);
    this.#live.remove(c);
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
      let detail: (() => string) | undefined;
      if (this.#reporter.logging) {
        const { pending, key } = victim.entry!;
        const age = Math.round(this.#admission.clock.now() - victim.since);
        const limit = overHandshakes
          ? `maxHandshakes ${maxHandshakes}`
          : `maxConnections ${maxConnections}`;
        // Formatted only when printed: a flood costs a counter here.
        detail = () =>
          `closing the oldest of the ${pending} connections from ${key} that have not authenticated (the most of any address), after ${age} ms, to make room (${limit})`;
      }
      this.#reporter.refused(victim, "evicted", detail);
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
      let secretIndex: number | undefined;
      try {
        const auth = this.#auth!;
        if (auth.keys !== undefined && isDenoConnLike(c.conn)) {
          secretIndex = await cookbook(c.conn, auth.keys, auth.challengeLength);
          result = c.conn as unknown as T;
        } else {
          ({ result, secretIndex } = await withSignal(c, auth));
        }
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
        secretIndex,
      };
      this.#reporter.connected(info);
      try {
        await this.#handler(result, info);
      } catch (error) {
        // A handler that stopped because info.signal aborted, or whose
        // socket the server closed after the grace period, is not news.
        const expected = this.#closing &&
          (error === this.#stopping.signal.reason || this.#graceOver);
        if (!expected && !c.abandoned) {
          this.#reporter.error(error, {
            phase: "handler",
            remoteAddr: c.remoteAddr,
          });
        }
      } finally {
        this.#active -= 1;
      }
    } catch (error) {
      // A bug of ours; the connection still closes below.
      this.#reporter.error(error, {
        phase: "handshake",
        remoteAddr: c.remoteAddr,
      });
    } finally {
      this.#close(c);
      this.#live.remove(c);
    }
  }

  #handshakeFailed(c: Connection, error: unknown): void {
    if (c.ended !== undefined) return this.#reportEnded(c);
    if (error instanceof AuthenticationError) {
      // Counted (and the address paused) before its turn passes on.
      const { failures, delay } = this.#admission.failed(c);
      this.#reporter.authFailed({
        remoteAddr: c.remoteAddr!,
        localAddr: c.localAddr!,
        error,
        failures,
        delay,
      }, c.entry?.key);
    } else if (!this.#closing) {
      this.#reporter.error(
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
      return this.#refuseThrottled(
        c,
        `; no turn within the handshake deadline (${this.#limits.handshakeTimeout} ms)`,
      );
    }
    this.#reporter.error(
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
    if (!this.#reporter.logging) return this.#reporter.refused(c, reason);
    if (reason === "max-per-address") {
      const already = this.#admission.countOf(key).open - 1;
      return this.#reporter.refused(
        c,
        reason,
        () =>
          `${already} connections from ${key} already open (maxPerAddress ${already})`,
      );
    }
    const record = this.#admission.recordOf(key);
    const now = this.#admission.clock.now();
    this.#reporter.refused(
      c,
      reason,
      () =>
        `${key} is refused for ${
          Math.ceil(((record?.bannedUntil ?? 0) - now) / 1000)
        } s more after ${record?.failures ?? 0} authentication failures`,
    );
  }

  #refuseDropped(c: Connection): void {
    this.#refuseThrottled(
      c,
      ` and more than ${this.#limits.maxWaiting} of its connections wait (maxWaiting); closing the oldest, after ${
        Math.round(this.#admission.clock.now() - c.since)
      } ms`,
    );
  }

  /** Refuses a connection of a throttled address; `why` ends the line. */
  #refuseThrottled(c: Connection, why: string): void {
    const key = c.entry!.key;
    const failures = this.#admission.recordOf(key)?.failures ?? 0;
    this.#reporter.refused(
      c,
      "throttled",
      `${key} is throttled after ${failures} authentication failures${why}`,
    );
  }

  /**
   * Stops waiting for the tasks still running after the grace period and
   * its extra second (their connections are closed; the code that ignores
   * both is not ours to stop), reporting each.
   */
  #abandon(): void {
    this.#abandonTimer = undefined;
    this.#live.abandonAll((c) => {
      const what = c.phase === "handler" ? "handler" : "authenticator";
      this.#reporter.error(
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
    });
  }
}
