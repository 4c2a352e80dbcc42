// Private: Http1Reader, the buffered reading of HTTP/1.1 requests from a
// byte stream for _http1_session.ts: request heads (handed to parseHead()
// of _http1_parse.ts), `Content-Length` and chunked bodies with their
// trailers, and the dropping of what a refused client still sends.
//
// Longer than one concept usually takes (about 400 lines) because it is one
// class: reading heads, lines and bodies all move the same private cursor
// over the same buffer, and splitting them would expose it.
//
// Costs are linear in the bytes the client sent: received bytes are copied
// into one buffer that grows by doubling (a head trickled byte by byte is
// scanned once, never from the start again); a body is copied once into a
// buffer that grows with the bytes received, up to its `Content-Length` or
// `maxBodySize`. A chunked body may have at most `max(1024, maxBodySize /
// 16)` chunks and `maxBodySize + maxHeaderSize` bytes of framing (size
// lines, extensions, CRLFs); its trailers are validated like header lines
// and bounded by the header limits.

import {
  bareCrOrLf,
  chunkSize,
  fieldLine,
  HttpRefusal,
  parseHead,
  type RequestHead,
} from "./_http1_parse.ts";

/** The connection failed under us (a reset, a write to a closed peer). */
export class ConnectionGone extends Error {
  constructor(cause: unknown) {
    super("Cannot serve the connection: it failed", { cause });
    this.name = "ConnectionGone";
  }
}

const CR = 13;
const LF = 10;
/** Longest chunk-size line (size and extensions), in bytes. */
const CHUNK_LINE_MAX = 1024;
/** First size of a body buffer; it doubles as bytes arrive. */
const FIRST_BODY_BUFFER = 16 * 1024;
const EMPTY = new Uint8Array(0);
const latin1 = new TextDecoder("latin1");

function endedEarly(): HttpRefusal {
  return new HttpRefusal(
    400,
    "Cannot read the request body: the client closed the connection before the end of the body",
  );
}

/** A buffer for one body: grows by doubling with the bytes, up to `cap`. */
class BodyBuffer {
  #bytes: Uint8Array;
  #cap: number;
  size = 0;

  constructor(cap: number) {
    this.#cap = cap;
    this.#bytes = new Uint8Array(Math.min(cap, FIRST_BODY_BUFFER));
  }

  /** Appends `bytes`; the caller keeps `size + bytes.length <= cap`. */
  push(bytes: Uint8Array): void {
    const need = this.size + bytes.length;
    if (need > this.#bytes.length) {
      const grown = new Uint8Array(
        Math.min(this.#cap, Math.max(2 * this.#bytes.length, need)),
      );
      grown.set(this.#bytes.subarray(0, this.size));
      this.#bytes = grown;
    }
    this.#bytes.set(bytes, this.size);
    this.size = need;
  }

  /** The body: a view of `size` bytes (a `Request` copies its body). */
  bytes(): Uint8Array {
    return this.#bytes.subarray(0, this.size);
  }
}

/** Buffered reads from a byte stream, with a hook called on every chunk. */
export class Http1Reader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  // Unconsumed bytes are #buffer[#start, #end). Appends copy each received
  // byte once (amortized): the buffer doubles when full, and is compacted
  // only when that frees at least half of it. A chunk that arrives when
  // nothing is held becomes the buffer as it is (#owned false: it is never
  // written to).
  #buffer: Uint8Array = EMPTY;
  #owned = false;
  #start = 0;
  #end = 0;
  #onBytes: () => void;

  constructor(readable: ReadableStream<Uint8Array>, onBytes: () => void) {
    this.#reader = readable.getReader();
    this.#onBytes = onBytes;
  }

  /** Bytes received and not consumed yet. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** The next chunk from the stream, or null on EOF. */
  async #read(): Promise<Uint8Array | null> {
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await this.#reader.read();
    } catch (error) {
      throw new ConnectionGone(error);
    }
    if (result.done) return null;
    this.#onBytes();
    return result.value;
  }

  #append(chunk: Uint8Array): void {
    const size = chunk.length;
    const held = this.#end - this.#start;
    if (size === 0) return;
    if (held === 0) {
      this.#buffer = chunk;
      this.#owned = false;
      this.#start = 0;
      this.#end = size;
      return;
    }
    if (!this.#owned || this.#end + size > this.#buffer.length) {
      if (this.#owned && held + size <= this.#buffer.length >> 1) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(
          Math.max(2 * this.#buffer.length, held + size, 4096),
        );
        grown.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = grown;
        this.#owned = true;
      }
      this.#start = 0;
      this.#end = held;
    }
    this.#buffer.set(chunk, this.#end);
    this.#end += size;
  }

  /** Reads one more chunk into the buffer; false on EOF. */
  async #fill(): Promise<boolean> {
    const chunk = await this.#read();
    if (chunk === null) return false;
    this.#append(chunk);
    return true;
  }

  #skip(n: number): void {
    this.#start += n;
    if (this.#start === this.#end) {
      this.#buffer = EMPTY;
      this.#owned = false;
      this.#start = this.#end = 0;
    }
  }

  /**
   * Reads the next request head; null on a clean EOF before its first byte.
   * Throws an HttpRefusal for a bad or oversized head, as soon as the bytes
   * show it (a bare LF does not wait for a CRLF CRLF that never comes).
   * Each byte is checked once, however the head is split into chunks.
   */
  async readHead(
    maxHeaderSize: number,
    maxHeaderCount: number,
  ): Promise<RequestHead | null> {
    let skipped = 0; // empty lines before the request line (RFC 9112, 2.2)
    let scanned = 0; // head bytes checked
    let lineStart = 0; // where the line being checked starts
    let requestLineEnd = -1;
    scan: while (true) {
      const buffer = this.#buffer;
      const start = this.#start;
      const limit = Math.min(this.#end - start, maxHeaderSize);
      for (let i = scanned; i < limit; i++) {
        const byte = buffer[start + i];
        const afterCr = i > 0 && buffer[start + i - 1] === CR;
        if (byte !== LF) {
          if (afterCr) throw bareCrOrLf();
          continue;
        }
        if (!afterCr) throw bareCrOrLf();
        if (i - 1 === lineStart) {
          if (lineStart === 0) {
            // An empty line before the request line: drop it.
            skipped += 2;
            if (skipped > maxHeaderSize) {
              throw new HttpRefusal(
                400,
                `Cannot parse the request: over ${maxHeaderSize} bytes of empty lines before the request line`,
              );
            }
            this.#skip(2);
            scanned = 0;
            continue scan;
          }
          const text = latin1.decode(
            buffer.subarray(start, start + lineStart - 2),
          );
          this.#skip(i + 1);
          return parseHead(text, maxHeaderCount);
        }
        if (requestLineEnd < 0) requestLineEnd = i - 1;
        lineStart = i + 1;
      }
      scanned = limit;
      if (scanned >= maxHeaderSize) break;
      if (!(await this.#fill())) {
        if (this.buffered === 0) return null;
        throw new HttpRefusal(
          400,
          "Cannot parse the request: the client closed the connection in the middle of the headers",
        );
      }
    }
    if (requestLineEnd < 0) {
      throw new HttpRefusal(
        414,
        `Cannot serve the request: the request line is over the ${maxHeaderSize}-byte limit`,
      );
    }
    throw new HttpRefusal(
      431,
      `Cannot serve the request: the headers are over the ${maxHeaderSize}-byte limit`,
    );
  }

  /**
   * Makes the buffer hold a whole line of at most `max` bytes before its
   * CRLF, checking each byte once; returns the line's length. Throws
   * `tooLong()` for a longer line, a 400 for a bare CR or LF or an EOF.
   */
  async #line(max: number, tooLong: () => HttpRefusal): Promise<number> {
    let scanned = 0;
    while (true) {
      const buffer = this.#buffer;
      const start = this.#start;
      const limit = Math.min(this.#end - start, max + 2);
      for (let i = scanned; i < limit; i++) {
        const byte = buffer[start + i];
        const afterCr = i > 0 && buffer[start + i - 1] === CR;
        if (byte === LF) {
          if (!afterCr) throw bareCrOrLf();
          return i - 1;
        }
        if (afterCr) throw bareCrOrLf();
      }
      scanned = limit;
      if (scanned >= max + 2) throw tooLong();
      if (!(await this.#fill())) throw endedEarly();
    }
  }

  /** Copies the next `n` bytes into `body`, reading as needed. */
  async #copy(n: number, body: BodyBuffer): Promise<void> {
    const now = Math.min(this.buffered, n);
    if (now > 0) {
      body.push(this.#buffer.subarray(this.#start, this.#start + now));
      this.#skip(now);
    }
    let left = n - now;
    // The buffer is empty now: chunks go straight into the body.
    while (left > 0) {
      const chunk = await this.#read();
      if (chunk === null) throw endedEarly();
      if (chunk.length <= left) {
        body.push(chunk);
        left -= chunk.length;
      } else {
        body.push(chunk.subarray(0, left));
        this.#append(chunk.subarray(left));
        left = 0;
      }
    }
  }

  /**
   * Reads a body of `length` bytes (-1: chunked), at most `maxBodySize`
   * bytes; a chunked body's trailers are bounded by the header limits.
   */
  async readBody(
    length: number,
    limits: {
      maxBodySize: number;
      maxHeaderSize: number;
      maxHeaderCount: number;
    },
  ): Promise<Uint8Array> {
    const max = limits.maxBodySize;
    if (length === 0) return new Uint8Array(0);
    if (length > 0) {
      if (length > max) {
        throw new HttpRefusal(
          413,
          `Cannot serve the request: the body is ${length} bytes, over the ${max}-byte limit`,
        );
      }
      const body = new BodyBuffer(length);
      await this.#copy(length, body);
      return body.bytes();
    }
    const body = new BodyBuffer(max);
    const maxChunks = Math.max(1024, Math.ceil(max / 16));
    const maxFraming = max + limits.maxHeaderSize;
    let chunks = 0;
    let framing = 0;
    while (true) {
      const line = await this.#line(
        CHUNK_LINE_MAX,
        () =>
          new HttpRefusal(
            400,
            `Cannot read the request body: a chunk-size line is over ${CHUNK_LINE_MAX} bytes`,
          ),
      );
      const size = chunkSize(this.#buffer, this.#start, line, max);
      this.#skip(line + 2);
      framing += line + 2;
      if (size === 0) break;
      if (++chunks > maxChunks) {
        throw new HttpRefusal(
          413,
          `Cannot serve the request: the body comes in over ${maxChunks} chunks; send bigger chunks`,
        );
      }
      if (body.size + size > max) {
        throw new HttpRefusal(
          413,
          `Cannot serve the request: the body is over the ${max}-byte limit`,
        );
      }
      if (framing + 2 > maxFraming) {
        throw new HttpRefusal(
          413,
          `Cannot serve the request: the chunk framing is over ${maxFraming} bytes; send fewer extensions or bigger chunks`,
        );
      }
      await this.#copy(size, body);
      while (this.buffered < 2) {
        if (!(await this.#fill())) throw endedEarly();
      }
      if (
        this.#buffer[this.#start] !== CR || this.#buffer[this.#start + 1] !== LF
      ) {
        throw new HttpRefusal(
          400,
          "Cannot read the request body: a chunk is longer than its size",
        );
      }
      this.#skip(2);
      framing += 2;
    }
    // Trailers: checked like header lines, bounded like them, and dropped.
    let trailerBytes = 0;
    for (let count = 0;; count++) {
      const tooLarge = () =>
        new HttpRefusal(
          431,
          `Cannot read the request body: the trailers are over the ${limits.maxHeaderSize}-byte limit`,
        );
      const room = limits.maxHeaderSize - trailerBytes - 2;
      if (room < 0) throw tooLarge();
      const line = await this.#line(room, tooLarge);
      const text = latin1.decode(
        this.#buffer.subarray(this.#start, this.#start + line),
      );
      this.#skip(line + 2);
      trailerBytes += line + 2;
      if (line === 0) break;
      if (count >= limits.maxHeaderCount) {
        throw new HttpRefusal(
          431,
          `Cannot read the request body: over ${limits.maxHeaderCount} trailer lines`,
        );
      }
      fieldLine(text, "trailer");
    }
    return body.bytes();
  }

  /**
   * Reads and drops what the client sends until it closes (or resets), or
   * `max` bytes are dropped.
   */
  async discard(max: number): Promise<void> {
    let dropped = this.buffered;
    this.#skip(this.buffered);
    while (dropped < max) {
      const chunk = await this.#read();
      if (chunk === null) return;
      dropped += chunk.length;
    }
  }

  /** Stops reading. */
  cancel(): void {
    this.#reader.cancel().catch(() => {});
  }
}
