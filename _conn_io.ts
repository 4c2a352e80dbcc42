// Private: exact reads and whole writes on a connection, directly on a
// Deno.Conn (its own read/write) or through its byte streams; the error for
// a peer that closed too early; and the two socket settings that never
// throw (a close, Nagle's algorithm off).
import { ProtocolError } from "./errors.ts";
import { raceSignal } from "./_deadline.ts";

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

/**
 * The {@linkcode ProtocolError} (reason `"closed"`) for a peer that closed
 * the connection after `got` of the `length` bytes of `what`.
 */
export function closedEarly(
  what: string,
  got: number,
  length: number,
): ProtocolError {
  return new ProtocolError(
    `Cannot read ${what}: the peer closed the connection after ${got} of ${length} bytes`,
    "closed",
  );
}

/**
 * The end of the stream after `got` of `length` bytes of `what`: `null`
 * (a clean close) before the first byte, else {@linkcode closedEarly}.
 */
function endOfStream(what: string, got: number, length: number): null {
  if (got === 0) return null;
  throw closedEarly(what, got, length);
}

/** Where exact reads come from: a connection or its readable byte stream. */
export type ReadSource =
  | ReadableStream<Uint8Array<ArrayBuffer>>
  | { readonly readable: ReadableStream<Uint8Array<ArrayBuffer>> };

/** Where whole writes go: a connection or its writable stream. */
export type WriteTarget =
  | WritableStream<Uint8Array>
  | { readonly writable: WritableStream<Uint8Array> };

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
  let offset = 0;
  if (isDenoConnLike(source)) {
    while (offset < length) {
      const view = buffer.subarray(offset);
      const n = await raceSignal(source.read(view), signal);
      if (n === null) return endOfStream(what, offset, length);
      offset += n;
    }
    return buffer;
  }
  const readable = source instanceof ReadableStream ? source : source.readable;
  const reader = byobReader(readable);
  const onAbort = () => reader.releaseLock();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    while (offset < length) {
      const view = new Uint8Array(buffer.buffer, offset, length - offset);
      const { value, done } = await reader.read(view);
      if (value) buffer = new Uint8Array(value.buffer);
      if (done) return endOfStream(what, offset, length);
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
  if (bytes === null) throw closedEarly(what, 0, length);
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

/**
 * Turns off Nagle's algorithm on a TCP connection (`setNoDelay(true)`);
 * does nothing on a connection without it (a Unix socket, a stream-only
 * connection) or one that already died (its next read or write says so).
 * Never throws.
 */
export function setNoDelay(conn: object): void {
  const tcp = conn as Partial<Pick<Deno.TcpConn, "setNoDelay">>;
  if (typeof tcp.setNoDelay !== "function") return;
  try {
    tcp.setNoDelay(true);
  } catch {
    // A socket that already died: its next read or write reports it.
  }
}
