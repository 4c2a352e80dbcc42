// Private: the one accept loop every connauth server runs (serve(),
// serveHttps(), listenMultiprocessing()).
//
// A failed accept is one of three things, and each is handled at once:
//
// - The listener is closed: the loop ends.
// - One connection failed (the client reset it while it waited in the
//   backlog, a network error passed on by the kernel): that connection is
//   skipped and the next accept starts right away. Deno 2 surfaces a
//   connection reset before accept as `Deno.errors.NotConnected` (its
//   getpeername() fails with ENOTCONN), so one client that connects and
//   resets must cost one failed accept, never a sleep.
// - The process ran out of something (file descriptors: EMFILE, ENFILE;
//   kernel memory: ENOBUFS, ENOMEM), or an error we cannot place: retrying
//   at once would spin on the same error, so the loop backs off, 5 ms
//   doubling to 1 s, each wait ended by its timer (or by stop()), and the
//   doubling forgotten after a successful accept or 2 s without such an
//   error. Deno 2.9.6 throws a plain `Error` with `code: "EMFILE"` and the
//   message "Too many open files (os error 24)".
//
// The hot path allocates nothing of its own: no timer, signal or closure
// per accept, only the promise the listener returns.
import { closeQuietly } from "./_conn_io.ts";

/** What a failed accept means for the loop. */
export type AcceptFailure = "closed" | "connection" | "exhausted";

/** A listener the loop can drive: `Deno.Listener` and `TlsListener` fit. */
export interface AcceptSource<C> {
  /** The next connection; rejects once the listener is closed. */
  accept(): Promise<C>;
  /** Stops listening (pending accepts reject). */
  close(): void;
}

/** What {@linkcode AcceptLoop} is told to do. */
export interface AcceptLoopOptions<C extends { close(): void }> {
  /** Where connections come from. {@linkcode AcceptLoop.stop} closes it. */
  listener: AcceptSource<C>;
  /**
   * Takes each accepted connection, synchronously. A throw closes that
   * connection and is reported to `onError`; the loop goes on.
   */
  onConnection(conn: C): void;
  /**
   * Asked before each accept: `false` pauses the loop (new clients wait in
   * the kernel's listen backlog) until {@linkcode AcceptLoop.wake}.
   */
  ready?(): boolean;
  /**
   * A failed accept, or an `onConnection` that threw. `retryIn` is how
   * long the loop waits before the next accept: 0 when the error named one
   * connection (skipped at once).
   */
  onError?(error: unknown, retryIn: number): void;
  /** Stops the loop (and closes the listener) when it aborts. */
  signal?: AbortSignal;
  /** The back-off's first and longest wait and its reset time, in ms (tests). */
  backoff?: { min: number; max: number; reset: number };
}

/** First back-off after the process ran out of descriptors, in ms. */
export const BACKOFF_MIN = 5;
/** Longest back-off, in ms. */
export const BACKOFF_MAX = 1000;
/** Quiet time after which the back-off starts over from the minimum, in ms. */
export const BACKOFF_RESET = 2000;

/**
 * Error codes that name one connection, never the listener: Linux's
 * accept(2) passes pending network errors of the new socket on as its own
 * (its man page says to treat them as EAGAIN), and Deno reads the peer's
 * address right after accept, which fails with ENOTCONN once it was reset.
 */
const CONNECTION_CODES = new Set([
  "ENOTCONN",
  "ECONNABORTED",
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EPROTO",
  "EPERM",
  "ENETDOWN",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EHOSTUNREACH",
  "ENONET",
  "ENOPROTOOPT",
  "EOPNOTSUPP",
]);

/**
 * Says what a failed accept means: `"closed"` (the listener is gone: stop),
 * `"connection"` (one connection failed: skip it at once) or `"exhausted"`
 * (out of descriptors or memory, or unknown: back off).
 */
export function classifyAcceptError(error: unknown): AcceptFailure {
  if (
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted
  ) {
    return "closed";
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && CONNECTION_CODES.has(code)) {
    return "connection";
  }
  if (
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.TimedOut ||
    error instanceof Deno.errors.NetworkUnreachable
  ) {
    return "connection";
  }
  // EMFILE, ENFILE, ENOBUFS, ENOMEM, and whatever we cannot place: an
  // error that is not one connection's may well come back on the next
  // accept, so never retry it in a tight loop.
  return "exhausted";
}

/**
 * Accepts connections until stopped, handing each to `onConnection`; see
 * the module comment for how failures are handled.
 */
export class AcceptLoop<C extends { close(): void }> {
  /** Settles once the loop has ended (it never rejects). */
  readonly done: Promise<void>;
  #listener: AcceptSource<C>;
  #onConnection: (conn: C) => void;
  #ready: (() => boolean) | undefined;
  #onError: ((error: unknown, retryIn: number) => void) | undefined;
  #signal: AbortSignal | undefined;
  #onAbort = () => this.stop();
  #stopped = false;
  /** Ends the current pause or back-off. */
  #resume: (() => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #backoff: { min: number; max: number; reset: number };
  #delay = 0;
  #lastExhausted = -Infinity;

  constructor(options: AcceptLoopOptions<C>) {
    this.#listener = options.listener;
    this.#onConnection = options.onConnection;
    this.#ready = options.ready;
    this.#onError = options.onError;
    this.#signal = options.signal;
    this.#backoff = options.backoff ?? {
      min: BACKOFF_MIN,
      max: BACKOFF_MAX,
      reset: BACKOFF_RESET,
    };
    if (this.#signal?.aborted) this.stop();
    else this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.done = this.#run();
  }

  /** True once {@linkcode AcceptLoop.stop} ran or the listener closed. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Resumes a loop paused by `ready()` (it asks `ready()` again). */
  wake(): void {
    if (this.#timer !== undefined) return; // a back-off ends by time only
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
  }

  /**
   * Ends the loop: closes the listener (which ends a pending accept), ends
   * a pause or back-off; a connection accepted after this is closed.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      if (this.#ready !== undefined && !this.#ready()) {
        await new Promise<void>((resolve) => this.#resume = resolve);
        continue;
      }
      let conn: C;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopped) break;
        const failure = classifyAcceptError(error);
        if (failure === "closed") break;
        if (failure === "connection") {
          this.#report(error, 0);
          continue;
        }
        await this.#backOff(error);
        continue;
      }
      if (this.#stopped) {
        closeQuietly(conn);
        break;
      }
      this.#delay = 0;
      try {
        this.#onConnection(conn);
      } catch (error) {
        closeQuietly(conn);
        this.#report(error, 0);
      }
    }
    this.#stopped = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }

  /** Waits out a back-off that grows while exhaustion lasts. */
  #backOff(error: unknown): Promise<void> {
    const { min, max, reset } = this.#backoff;
    const now = performance.now();
    this.#delay = this.#delay === 0 || now - this.#lastExhausted > reset
      ? min
      : Math.min(this.#delay * 2, max);
    this.#lastExhausted = now;
    const delay = this.#delay;
    this.#report(error, delay);
    if (this.#stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#resume = resolve;
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#resume = undefined;
        resolve();
      }, delay);
    });
  }

  #report(error: unknown, retryIn: number): void {
    if (this.#onError === undefined) return;
    try {
      this.#onError(error, retryIn);
    } catch {
      // a throwing hook must not stop the loop
    }
  }
}
