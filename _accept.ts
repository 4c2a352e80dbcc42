// Private: the one accept loop every connauth server runs (serve(),
// serveHttps(), listenMultiprocessing()), and the per-address accounting
// that serve() and serveHttps() share.
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
import { parseIp } from "./_tls_identity.ts";

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

function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

// ---------------------------------------------------------------------------
// Per-address accounting

/**
 * Checks an `ipv6Prefix` option: a whole number of bits from 1 to 128;
 * `fallback` when it is not set.
 */
export function checkIpv6Prefix(
  value: number | undefined,
  fallback: number,
): number {
  const prefix = value ?? fallback;
  if (typeof prefix !== "number") {
    throw new TypeError(
      `Cannot use ipv6Prefix: expected a number of bits, got ${typeof prefix}`,
    );
  }
  if (!Number.isInteger(prefix) || prefix < 1 || prefix > 128) {
    throw new RangeError(
      `Cannot use ipv6Prefix: expected a whole number of bits from 1 to 128, got ${prefix}`,
    );
  }
  return prefix;
}

/**
 * The name limits and throttling count a peer under: its IPv4 address; its
 * IPv6 address cut to `ipv6Prefix` bits (`2001:db8:1:2::/64`), whole when
 * link-local, as IPv4 when IPv4-mapped; `"unix"` for every Unix socket peer;
 * `"vsock:<cid>"`.
 */
export function addressKey(addr: Deno.Addr, ipv6Prefix: number): string {
  switch (addr.transport) {
    case "tcp":
    case "udp":
      return ipKey(addr.hostname, ipv6Prefix);
    case "unix":
    case "unixpacket":
      return "unix";
    case "vsock":
      return `vsock:${addr.cid}`;
    default:
      return String((addr as { transport: unknown }).transport);
  }
}

function ipKey(hostname: string, ipv6Prefix: number): string {
  const host = hostname.toLowerCase();
  if (!host.includes(":")) return host;
  const zone = host.indexOf("%");
  const bytes = parseIp(zone < 0 ? host : host.slice(0, zone));
  if (bytes?.length !== 16) return host;
  const groups = Array.from(
    { length: 8 },
    (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1],
  );
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return bytes.subarray(12).join(".");
  }
  // Every host on a link shares fe80::/64: keep link-local addresses whole,
  // zone included.
  if ((groups[0] & 0xffc0) === 0xfe80) return host;
  if (ipv6Prefix >= 128) return formatIpv6(groups);
  const masked = groups.map((group, i) => {
    const keep = Math.min(Math.max(ipv6Prefix - 16 * i, 0), 16);
    return group & ((0xffff << (16 - keep)) & 0xffff);
  });
  return `${formatIpv6(masked)}/${ipv6Prefix}`;
}

/** IPv6 groups as text, the longest run of zero groups shortened to `::`. */
function formatIpv6(groups: number[]): string {
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > bestLength) {
      best = i;
      bestLength = end - i;
    }
    i = end === i ? i + 1 : end;
  }
  const hex = groups.map((group) => group.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${
    hex.slice(best + bestLength).join(":")
  }`;
}

/** Open connections per address key; a key at 0 is forgotten. */
export class AddressCounts {
  #counts = new Map<string, number>();

  /** Counts one more connection from `key`; returns the new count. */
  add(key: string): number {
    const count = (this.#counts.get(key) ?? 0) + 1;
    this.#counts.set(key, count);
    return count;
  }

  /** Counts one connection from `key` less. */
  remove(key: string): void {
    const count = this.#counts.get(key);
    if (count === undefined) return;
    if (count <= 1) this.#counts.delete(key);
    else this.#counts.set(key, count - 1);
  }

  /** Addresses with a connection open. */
  get size(): number {
    return this.#counts.size;
  }
}
