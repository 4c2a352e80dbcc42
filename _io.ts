// Private I/O helpers: exact reads with deadlines, whole writes, signals.
import { ProtocolError } from "./errors.ts";

/** Default deadline, in milliseconds, for any wait on a peer. */
export const DEFAULT_TIMEOUT = 10_000;

/**
 * Checks a timeout option: a finite number of milliseconds, > 0.
 * `Infinity` is allowed and means "no deadline" (still abortable by signal).
 */
export function checkTimeout(timeout: number, what = "timeout"): number {
  if (typeof timeout !== "number" || Number.isNaN(timeout)) {
    throw new TypeError(
      `Cannot use ${what}: expected a number of milliseconds, got ${
        typeof timeout === "number" ? "NaN" : typeof timeout
      }`,
    );
  }
  if (timeout <= 0) {
    throw new RangeError(
      `Cannot use ${what}: expected more than 0 ms, got ${timeout}`,
    );
  }
  return timeout;
}

/**
 * Checks a duration option that may be 0 (a grace period, a delay): a
 * number of milliseconds, >= 0, `Infinity` allowed. Returns `fallback` when
 * the option is not set.
 */
export function checkMillis(
  value: number | undefined,
  fallback: number,
  what: string,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(
      `Cannot use ${what}: expected a number of milliseconds, got ${typeof value}`,
    );
  }
  if (value < 0) {
    throw new RangeError(
      `Cannot use ${what}: expected 0 or more ms, got ${value}`,
    );
  }
  return value;
}

/** A combined deadline + caller signal, with its timer cleared by dispose. */
export interface Deadline extends Disposable {
  /** Aborts on timeout (reason: TimeoutError) or when the caller's aborts. */
  readonly signal: AbortSignal;
}

/**
 * Creates a signal that aborts after `timeout` ms with a `TimeoutError`
 * naming `action`, or when `signal` aborts (with its reason). Dispose it to
 * clear the timer (so test sanitizers see no leaked timer).
 */
export function deadline(
  timeout: number,
  signal: AbortSignal | undefined,
  action: string,
): Deadline {
  checkTimeout(timeout);
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => controller.abort(signal!.reason);
  if (signal?.aborted) {
    controller.abort(signal.reason);
  } else {
    signal?.addEventListener("abort", onAbort, { once: true });
    if (Number.isFinite(timeout)) {
      timer = setTimeout(() => {
        controller.abort(
          new DOMException(
            `Cannot ${action}: timed out after ${timeout} ms waiting for the peer`,
            "TimeoutError",
          ),
        );
      }, timeout);
    }
  }
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    },
  };
}

/**
 * A {@linkcode deadline} for a call that by default waits as long as its
 * connection lives: `undefined` when `timeout` is `Infinity` and there is no
 * `signal`, so the call skips the race (`raceSignal(p, undefined)` is `p`).
 */
export function optionalDeadline(
  timeout: number,
  signal: AbortSignal | undefined,
  action: string,
): Deadline | undefined {
  checkTimeout(timeout);
  if (timeout === Infinity && !signal) return undefined;
  return deadline(timeout, signal, action);
}

/** Runs `fn` until it settles or `signal` aborts; rejects with the reason. */
export function raceSignal<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Gets a BYOB reader on `readable`, with a clear `TypeError` when it is
 * locked or not a byte stream.
 */
export function byobReader(
  readable: ReadableStream<Uint8Array<ArrayBuffer>>,
): ReadableStreamBYOBReader {
  try {
    return readable.getReader({ mode: "byob" });
  } catch (cause) {
    if (readable.locked) {
      throw new TypeError(
        "Cannot read from the connection: its readable stream is locked by another reader; release it first",
        { cause },
      );
    }
    throw new TypeError(
      "Cannot read from the connection: its readable stream is not a byte stream (BYOB reads are needed to leave later bytes unread)",
      { cause },
    );
  }
}

/** The parts of a `Deno.Conn` (or `Deno.TlsConn`) used directly when present. */
export interface DenoConnLike {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/**
 * Tells a `Deno.Conn`-like object, read and written with its own
 * `read`/`write` (a sized read never takes more than asked), from other
 * duplex streams. Its methods skip the stream machinery (measured faster), and
 * its `readable` would close the whole socket at the end of the stream.
 */
export function isDenoConnLike(conn: unknown): conn is DenoConnLike {
  const candidate = conn as Partial<DenoConnLike> | null;
  return typeof candidate?.read === "function" &&
    typeof candidate.write === "function" &&
    typeof candidate.closeWrite === "function" &&
    typeof candidate.close === "function";
}

/** Where exact reads come from: a connection or its readable byte stream. */
export type ReadSource =
  | ReadableStream<Uint8Array<ArrayBuffer>>
  | { readonly readable: ReadableStream<Uint8Array<ArrayBuffer>> };

/** Where whole writes go: a connection or its writable stream. */
export type WriteTarget =
  | WritableStream<Uint8Array>
  | { readonly writable: WritableStream<Uint8Array> };

async function readExactDirect(
  conn: DenoConnLike,
  length: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const buffer = new Uint8Array(length);
  let offset = 0;
  while (offset < length) {
    const n = await raceSignal(conn.read(buffer.subarray(offset)), signal);
    if (n === null) {
      if (offset === 0) return null;
      throw new ProtocolError(
        `Cannot read ${what}: the peer closed the connection after ${offset} of ${length} bytes`,
        "closed",
      );
    }
    offset += n;
  }
  return buffer;
}

/**
 * Reads exactly `length` bytes, or returns `null` if the peer closes cleanly
 * before the first byte. A close after some but not all bytes is a
 * {@linkcode ProtocolError} with reason `"closed"`. Never reads past
 * `length`: later bytes stay in the stream for the next reader.
 *
 * `source` is a connection or a readable byte stream; a `Deno.Conn` is read
 * with its own `read` into a sized buffer. After an abort the connection is
 * in an undefined state (a read may still be pending): close it.
 *
 * `what` names the thing being read, for error messages
 * ("the challenge", "the reply").
 */
export async function readExactOrEof(
  source: ReadSource,
  length: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<Uint8Array<ArrayBuffer> | null> {
  let buffer = new Uint8Array(length);
  if (length === 0) return buffer;
  signal?.throwIfAborted();
  if (isDenoConnLike(source)) {
    return await readExactDirect(source, length, signal, what);
  }
  const readable = source instanceof ReadableStream ? source : source.readable;
  const reader = byobReader(readable);
  const onAbort = () => reader.releaseLock();
  signal?.addEventListener("abort", onAbort, { once: true });
  let offset = 0;
  try {
    while (offset < length) {
      const view = new Uint8Array(buffer.buffer, offset, length - offset);
      const { value, done } = await reader.read(view);
      if (value) buffer = new Uint8Array(value.buffer);
      if (done) {
        if (offset === 0) return null;
        throw new ProtocolError(
          `Cannot read ${what}: the peer closed the connection after ${offset} of ${length} bytes`,
          "closed",
        );
      }
      offset += value.byteLength;
    }
    return buffer;
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    try {
      reader.releaseLock();
    } catch {
      // already released by abort
    }
  }
}

/**
 * Reads exactly `length` bytes; a close before all of them (even before the
 * first) is a {@linkcode ProtocolError} with reason `"closed"`.
 */
export async function readExact(
  source: ReadSource,
  length: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = await readExactOrEof(source, length, signal, what);
  if (bytes === null) {
    throw new ProtocolError(
      `Cannot read ${what}: the peer closed the connection after 0 of ${length} bytes`,
      "closed",
    );
  }
  return bytes;
}

/**
 * Writes all of `data` to a connection or a writable stream (a `Deno.Conn`
 * with its own `write`), rejecting with the signal's reason on abort.
 */
export async function writeAll(
  target: WriteTarget,
  data: Uint8Array,
  signal?: AbortSignal,
): Promise<void> {
  signal?.throwIfAborted();
  if (isDenoConnLike(target)) {
    let offset = 0;
    while (offset < data.byteLength) {
      offset += await raceSignal(target.write(data.subarray(offset)), signal);
    }
    return;
  }
  const writable = target instanceof WritableStream ? target : target.writable;
  const writer = writable.getWriter();
  try {
    await raceSignal(writer.write(data), signal);
  } finally {
    writer.releaseLock();
  }
}

const encoder = new TextEncoder();

/** UTF-8 encodes a string into an ArrayBuffer-backed array. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text) as Uint8Array<ArrayBuffer>;
}

/** Copies any byte view into a fresh ArrayBuffer-backed Uint8Array. */
export function copyBytes(data: ArrayBufferView): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(data.byteLength);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return out;
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let total = 0;
  for (const part of parts) total += part.byteLength;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** Describes an address for logs: `127.0.0.1:5000`, `[::1]:5000`. */
export function formatAddr(addr: Deno.Addr | undefined): string {
  if (!addr) return "unknown";
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
  }
  if ("path" in addr) return `${addr.transport}:${addr.path}`;
  return addr.transport;
}

/**
 * Closes a connection if it can be closed, ignoring "already closed" (Deno
 * closes a conn's resource itself after a read error such as a reset).
 * Never throws.
 */
export function closeQuietly(conn: unknown): void {
  const closable = conn as Partial<{ close(): void }> | null | undefined;
  if (typeof closable?.close !== "function") return;
  try {
    closable.close();
  } catch {
    // already closed
  }
}
