// Private: the framing of a Noise channel on any duplex byte stream: every
// Noise message, handshake or transport, travels as a 2-byte big-endian
// length and then the message. FrameIO reads frames into a buffer that
// grows with the bytes the peer actually sent, and writes whole frames.
import {
  byobReader,
  closeQuietly,
  type DenoConnLike,
  isDenoConnLike,
} from "./_conn_io.ts";
import { raceSignal } from "./_deadline.ts";
import { ProtocolError } from "./errors.ts";
import { MAX_MESSAGE_LENGTH } from "./_noise_state.ts";
import type { Duplex } from "./types.ts";

/** Smallest read buffer once the handshake is done. */
const INITIAL_READ_BUFFER = 16 * 1024;
/** Largest read buffer: room for two whole frames. */
const MAX_READ_BUFFER = 2 * (2 + MAX_MESSAGE_LENGTH);

/**
 * Frame reader and writer over a duplex stream: 2-byte big-endian length,
 * then the message. Reads ahead into its own buffer (the whole stream belongs
 * to Noise).
 *
 * A `Deno.Conn` (or `Deno.TlsConn`) is read and written with its own
 * `read`/`write`: its `readable` closes the whole socket when it reaches the
 * end of the stream, which would break half-closed connections. Any other
 * {@linkcode Duplex} is used through a BYOB reader and a writer held for the
 * lifetime of the channel.
 */
export class FrameIO {
  readonly conn: Duplex;
  #deno: DenoConnLike | undefined;
  #reader: ReadableStreamBYOBReader | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  // Starts with room for a handshake message (`initialSize`), takes
  // INITIAL_READ_BUFFER once the handshake is done (enlarge()), and
  // doubles, up to two whole frames, as large messages arrive.
  #buffer: Uint8Array<ArrayBuffer>;
  #start = 0;
  #end = 0;
  #closed = false;
  // Aborted by close(), so that a write into a stream whose sink never
  // returns still settles. (A Deno.Conn's pending ops fail on their own when
  // it closes, and reader.cancel() ends a pending stream read.)
  #closing = new AbortController();

  constructor(conn: Duplex, initialSize: number) {
    this.conn = conn;
    this.#buffer = new Uint8Array(initialSize);
    if (isDenoConnLike(conn)) {
      this.#deno = conn;
      return;
    }
    this.#reader = byobReader(conn.readable);
    try {
      this.#writer = conn.writable.getWriter();
    } catch (cause) {
      this.#reader.releaseLock();
      throw new TypeError(
        "Cannot start the Noise channel: the connection's writable stream is locked by another writer; release it first",
        { cause },
      );
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** After the handshake: at least INITIAL_READ_BUFFER, unread bytes kept. */
  enlarge(): void {
    if (this.#buffer.byteLength >= INITIAL_READ_BUFFER) return;
    const buffer = new Uint8Array(INITIAL_READ_BUFFER);
    buffer.set(this.#buffer.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buffer = buffer;
  }

  /** Reads some bytes into `buffer[end..]`; the count, or 0 at the end. */
  async #fill(): Promise<number> {
    const view = new Uint8Array(
      this.#buffer.buffer,
      this.#end,
      this.#buffer.byteLength - this.#end,
    );
    if (this.#deno) return (await this.#deno.read(view)) ?? 0;
    const { value, done } = await this.#reader!.read(view);
    if (value) this.#buffer = new Uint8Array(value.buffer);
    return done ? 0 : value!.byteLength;
  }

  /**
   * Reads `length` bytes as a view into the internal buffer, valid until the
   * next read. `null` when the stream ends before the first byte and
   * `eofOk`; a {@linkcode ProtocolError} `"closed"` when it ends midway.
   */
  async #take(
    length: number,
    eofOk: boolean,
    what: string,
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    while (this.#end - this.#start < length) {
      if (this.#start + length > this.#buffer.byteLength) {
        const have = this.#end - this.#start;
        if (
          length > this.#buffer.byteLength &&
          this.#end === this.#buffer.byteLength
        ) {
          // Grown only once full of bytes that arrived, so never to more
          // than twice what the peer sent: a length it announces costs
          // nothing until its bytes come.
          const grown = new Uint8Array(
            Math.min(this.#buffer.byteLength * 2, MAX_READ_BUFFER),
          );
          grown.set(this.#buffer.subarray(this.#start, this.#end));
          this.#buffer = grown;
          this.#start = 0;
          this.#end = have;
        } else if (this.#start > 0) {
          // Room at the front: the message will be contiguous.
          this.#buffer.copyWithin(0, this.#start, this.#end);
          this.#start = 0;
          this.#end = have;
        }
      }
      const count = await this.#fill();
      if (count === 0) {
        const have = this.#end - this.#start;
        if (have === 0 && eofOk) return null;
        throw new ProtocolError(
          `Cannot read ${what}: the peer closed the connection after ${have} of ${length} bytes`,
          "closed",
        );
      }
      this.#end += count;
    }
    const out = this.#buffer.subarray(this.#start, this.#start + length);
    this.#start += length;
    return out;
  }

  /** Reads a frame's length header, or `null` on a clean end of stream. */
  async readLength(what: string): Promise<number | null> {
    const header = await this.#take(2, true, what);
    if (header === null) return null;
    return (header[0] << 8) | header[1];
  }

  /** Reads a frame body of `length` bytes (a view valid until the next read). */
  async readBody(
    length: number,
    what: string,
  ): Promise<Uint8Array<ArrayBuffer>> {
    return (await this.#take(length, false, what))!;
  }

  /** Writes one frame: the length, then the message, in one write. */
  async writeFrame(message: Uint8Array): Promise<void> {
    const frame = new Uint8Array(2 + message.byteLength);
    frame[0] = message.byteLength >>> 8;
    frame[1] = message.byteLength & 0xff;
    frame.set(message, 2);
    if (this.#deno) {
      let offset = 0;
      while (offset < frame.byteLength) {
        offset += await this.#deno.write(frame.subarray(offset));
      }
      return;
    }
    await raceSignal(this.#writer!.write(frame), this.#closing.signal);
  }

  /** Half-closes: `closeWrite()` when the connection has it (TCP, TLS). */
  async closeWrite(): Promise<void> {
    if (this.#deno) return await this.#deno.closeWrite();
    const conn = this.conn as Partial<{ closeWrite(): Promise<void> }>;
    if (typeof conn.closeWrite === "function") {
      await raceSignal(this.#writer!.ready, this.#closing.signal);
      await conn.closeWrite();
    } else {
      await raceSignal(this.#writer!.close(), this.#closing.signal);
    }
  }

  /** Closes the connection (or, without `close()`, both streams). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new Error("the Noise connection is closed"));
    const closable = this.conn as Partial<{ close(): void }>;
    if (typeof closable.close === "function") {
      closeQuietly(this.conn);
    } else {
      this.#writer?.close().catch(() => {});
    }
    this.#reader?.cancel().catch(() => {});
  }
}
