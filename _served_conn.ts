// Private: the connection serve()'s handler gets with the Cookbook
// handshake (AuthenticatedConn): a Deno.Conn as it is, or a stream-only
// connection (those of tls.ts listeners) given read() and write() over its
// streams, so that a handler's code is a connect() client's code.
import { byobReader } from "./_conn_io.ts";
import type { AuthenticatedConn, ServerConn } from "./server.ts";

/**
 * `conn` itself when it has `read` and `write` (a `Deno.Conn`: no cost),
 * else a view of it that adds them over its streams. The view is a Proxy,
 * so everything else of the connection (a TLS peer's identity, its class)
 * is still there.
 */
export function withReadWrite(conn: ServerConn): AuthenticatedConn {
  if (typeof conn.read === "function" && typeof conn.write === "function") {
    return conn as AuthenticatedConn;
  }
  const io = new StreamIo(conn);
  const read = (buffer: Uint8Array) => io.read(buffer);
  const write = (data: Uint8Array) => io.write(data);
  // Each method bound once: `conn.close === conn.close`, and a handler's
  // calls allocate nothing.
  type Method = (...args: unknown[]) => unknown;
  const bound = new Map<PropertyKey, [Method, Method]>();
  return new Proxy(conn, {
    get(target, property) {
      if (property === "read") return read;
      if (property === "write") return write;
      // The handler takes the stream over: read() lets go of it.
      if (property === "readable") io.releaseReader();
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function" || property === "constructor") {
        return value;
      }
      // Methods run on the connection itself (its #private fields).
      const cached = bound.get(property);
      if (cached !== undefined && cached[0] === value) return cached[1];
      const method = (value as Method).bind(target);
      bound.set(property, [value as Method, method]);
      return method;
    },
    // Setters run on the connection itself too.
    set(target, property, value) {
      return Reflect.set(target, property, value, target);
    },
    has(target, property) {
      return property === "read" || property === "write" ||
        Reflect.has(target, property);
    },
  }) as AuthenticatedConn;
}

/**
 * `read()` and `write()` of a `Deno.Conn`, over a connection's streams.
 * The reader is kept between reads (a new one per read costs several
 * microseconds) and let go when the handler asks for `readable` (see
 * {@linkcode withReadWrite}); a writer is held only while writes are under
 * way, so that `writable` is free between them, as a `Deno.Conn`'s is.
 */
class StreamIo {
  #conn: ServerConn;
  /** Reused by BYOB reads (each read hands it back). */
  #scratch: ArrayBuffer | undefined = undefined;
  #reader: ReadableStreamBYOBReader | undefined = undefined;
  #reads = 0;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined = undefined;
  #writes = 0;

  constructor(conn: ServerConn) {
    this.#conn = conn;
  }

  /** Reads what is there, up to `buffer`'s length; null at the end. */
  async read(buffer: Uint8Array): Promise<number | null> {
    if (buffer.byteLength === 0) return 0;
    const reader = this.#reader ??= byobReader(this.#conn.readable);
    this.#reads += 1;
    try {
      let scratch = this.#scratch;
      this.#scratch = undefined;
      if (scratch === undefined || scratch.byteLength < buffer.byteLength) {
        scratch = new ArrayBuffer(buffer.byteLength);
      }
      const { value, done } = await reader.read(
        new Uint8Array(scratch, 0, buffer.byteLength),
      );
      if (value !== undefined) this.#scratch = value.buffer;
      if (done || value === undefined) return null;
      buffer.set(value);
      return value.byteLength;
    } finally {
      this.#reads -= 1;
    }
  }

  /**
   * Writes all of `data` (a stream takes a whole chunk). Writes that
   * overlap, as a `Deno.Conn` allows, share one writer and go out in the
   * order called; the last to finish lets go of it.
   */
  async write(data: Uint8Array): Promise<number> {
    const writer = this.#writer ??= this.#conn.writable.getWriter();
    this.#writes += 1;
    try {
      await writer.write(data);
    } finally {
      this.#writes -= 1;
      if (this.#writes === 0) {
        writer.releaseLock();
        this.#writer = undefined;
      }
    }
    return data.byteLength;
  }

  /** Lets go of the reader, unless a read is under way. */
  releaseReader(): void {
    if (this.#reader === undefined || this.#reads > 0) return;
    this.#reader.releaseLock();
    this.#reader = undefined;
  }
}
