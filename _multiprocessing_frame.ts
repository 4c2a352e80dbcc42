// Private: the framing of multiprocessing.connection messages, as CPython's
// Connection._send_bytes() and _recv_bytes() do it on a socket: the length
// header (frameHeader) and a reader and writer of whole frames on one
// transport (FrameWire). Nothing here knows about authentication.
import { concat } from "./_bytes.ts";
import { closeQuietly } from "./_conn_io.ts";
import { ProtocolError } from "./errors.ts";

/** Largest length that fits the short (4-byte) header. */
export const SHORT_LENGTH_MAX = 0x7fffffff;

/**
 * The header announcing a payload of `size` bytes: `struct.pack("!i", size)`
 * up to 0x7fffffff, else `struct.pack("!i", -1) + struct.pack("!Q", size)`.
 */
export function frameHeader(size: number): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(
      `Cannot frame the message: expected a length of 0 or more bytes, got ${size}`,
    );
  }
  if (size <= SHORT_LENGTH_MAX) {
    const head = new Uint8Array(4);
    new DataView(head.buffer).setInt32(0, size);
    return head;
  }
  const head = new Uint8Array(12);
  const view = new DataView(head.buffer);
  view.setInt32(0, -1);
  view.setBigUint64(4, BigInt(size));
  return head;
}

/**
 * A fresh array of `n` bytes; a length the process cannot allocate (only
 * possible with no size limit) is the peer's error, not ours.
 */
function allocate(n: number, what: string): Uint8Array<ArrayBuffer> {
  try {
    return new Uint8Array(n);
  } catch (cause) {
    throw new ProtocolError(
      `Cannot read ${what}: the peer announced ${n} bytes, more than this process can allocate; set maxMessageSize`,
      "too-large",
      { cause },
    );
  }
}

/** What a wire runs over: a `Deno.Conn` fits. */
export interface Transport {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
}

/** Messages up to this size go out in one write with their header. */
const ONE_WRITE_MAX = 16384;

/**
 * Frames on one transport: buffered reads (a message that does not fit the
 * buffer is read straight into its own array) and writes queued whole, so
 * concurrent sends never interleave.
 *
 * The read buffer starts at `initialSize` bytes (small while the peer has
 * not authenticated) and takes its full size with
 * {@linkcode FrameWire.enlarge}.
 */
export class FrameWire {
  #transport: Transport;
  #buffer: Uint8Array;
  #start = 0;
  #end = 0;
  #eof = false;
  #pendingRead: Promise<unknown> | undefined;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(transport: Transport, initialSize: number) {
    this.#transport = transport;
    this.#buffer = new Uint8Array(initialSize);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Grows the read buffer to `size` bytes, keeping bytes not read yet. */
  enlarge(size: number): void {
    if (this.#buffer.byteLength >= size) return;
    const unread = this.#buffer.subarray(this.#start, this.#end);
    this.#buffer = new Uint8Array(size);
    this.#buffer.set(unread);
    this.#end = unread.byteLength;
    this.#start = 0;
  }

  async #read(into: Uint8Array): Promise<number | null> {
    const read = this.#transport.read(into);
    this.#pendingRead = read;
    try {
      return await read;
    } finally {
      this.#pendingRead = undefined;
    }
  }

  /** Reads exactly `n` bytes; null on a clean end of stream before the first. */
  async take(
    n: number,
    allowEof: boolean,
    what: string,
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    const out = allocate(n, what);
    let filled = Math.min(n, this.#end - this.#start);
    out.set(this.#buffer.subarray(this.#start, this.#start + filled));
    this.#start += filled;
    while (filled < n) {
      let count: number | null = null;
      if (!this.#eof) {
        if (n - filled >= this.#buffer.byteLength) {
          // Big: straight into the message, no read-ahead.
          count = await this.#read(out.subarray(filled));
          if (count !== null) filled += count;
        } else {
          this.#start = this.#end = 0;
          count = await this.#read(this.#buffer);
          if (count !== null) {
            this.#end = count;
            const used = Math.min(n - filled, count);
            out.set(this.#buffer.subarray(0, used), filled);
            this.#start = used;
            filled += used;
          }
        }
      }
      if (count === null) {
        this.#eof = true;
        if (filled === 0 && allowEof) return null;
        throw new ProtocolError(
          `Cannot read ${what}: the peer closed the connection after ${filled} of ${n} bytes`,
          "closed",
        );
      }
    }
    return out;
  }

  /**
   * Reads one message of at most `max` bytes (`Infinity`: no limit of our
   * own); null on a clean end of stream between messages. `tooLarge` builds
   * the error for a longer one, which is refused before anything is
   * allocated for it.
   */
  async readFrame(
    max: number,
    what: string,
    tooLarge: (size: number | bigint) => Error,
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    const head = await this.take(4, true, `the length of ${what}`);
    if (head === null) return null;
    let size = new DataView(head.buffer).getInt32(0);
    if (size === -1) {
      const long = await this.take(8, false, `the length of ${what}`);
      const big = new DataView(long!.buffer).getBigUint64(0);
      // No array can be longer than MAX_SAFE_INTEGER bytes, limit or not.
      if (big > BigInt(Math.min(max, Number.MAX_SAFE_INTEGER))) {
        throw tooLarge(big);
      }
      size = Number(big);
    } else if (size < 0) {
      throw new ProtocolError(
        `Cannot read ${what}: the peer sent the negative length ${size}; it does not speak the multiprocessing protocol`,
        "malformed",
      );
    }
    if (size > max) throw tooLarge(size);
    return (await this.take(size, false, what))!;
  }

  /** Queues one message (length then payload); resolves once it is written. */
  writeFrame(data: Uint8Array): Promise<void> {
    const size = data.byteLength;
    const head = frameHeader(size);
    // One write for small messages: no Nagle delay between the two parts.
    const parts = size <= ONE_WRITE_MAX ? [concat(head, data)] : [head, data];
    const write = this.#writing.then(async () => {
      if (this.#closed) {
        throw new Deno.errors.BadResource(
          "Cannot send the message: the connection is closed",
        );
      }
      for (const part of parts) {
        let offset = 0;
        while (offset < part.byteLength) {
          offset += await this.#transport.write(part.subarray(offset));
        }
      }
    });
    // A failed write fails its own caller; the queue goes on (and fails fast
    // if the socket is gone).
    this.#writing = write.catch(() => {});
    return write;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#transport);
  }

  /** Resolves when no read is in flight (after {@linkcode FrameWire.close}). */
  async settled(): Promise<void> {
    await this.#pendingRead?.catch(() => {});
    await this.#writing;
  }
}
