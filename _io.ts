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
      `Cannot use ${what}: expected a number of milliseconds, got ${typeof timeout}`,
    );
  }
  if (timeout <= 0) {
    throw new RangeError(
      `Cannot use ${what}: expected more than 0 ms, got ${timeout}`,
    );
  }
  return timeout;
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

/**
 * Reads exactly `length` bytes, or returns `null` if the peer closes cleanly
 * before the first byte. A close after some but not all bytes is a
 * {@linkcode ProtocolError} with reason `"closed"`. Never reads past
 * `length`: later bytes stay in the stream for the next reader.
 *
 * `what` names the thing being read, for error messages
 * ("the challenge", "the reply").
 */
export async function readExactOrEof(
  readable: ReadableStream<Uint8Array<ArrayBuffer>>,
  length: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<Uint8Array<ArrayBuffer> | null> {
  let buffer = new Uint8Array(length);
  if (length === 0) return buffer;
  signal?.throwIfAborted();
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
  readable: ReadableStream<Uint8Array<ArrayBuffer>>,
  length: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = await readExactOrEof(readable, length, signal, what);
  if (bytes === null) {
    throw new ProtocolError(
      `Cannot read ${what}: the peer closed the connection after 0 of ${length} bytes`,
      "closed",
    );
  }
  return bytes;
}

/** Writes all of `data`, rejecting with the signal's reason on abort. */
export async function writeAll(
  writable: WritableStream<Uint8Array>,
  data: Uint8Array,
  signal?: AbortSignal,
): Promise<void> {
  signal?.throwIfAborted();
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
 * Closes a connection, ignoring "already closed" (Deno closes a conn's
 * resource itself after a read error such as a reset).
 */
export function closeQuietly(conn: { close(): void } | undefined): void {
  try {
    conn?.close();
  } catch {
    // already closed
  }
}
