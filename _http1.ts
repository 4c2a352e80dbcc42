// A small, strict, bounded HTTP/1.1 server side for https.ts: parses
// requests from a byte stream (request line and headers under size and count
// limits, `Content-Length` or bounded `Transfer-Encoding: chunked` bodies),
// calls a `Request -> Response` handler and writes each response with a
// `Content-Length` in one write. Keep-alive (HTTP/1.1 by default, HTTP/1.0
// with `Connection: keep-alive`), pipelining (requests are answered in
// order, one at a time), a silence deadline and a whole-request deadline
// that both pause while the handler runs.
//
// Costs are linear in the bytes the client sent: received bytes are copied
// into one buffer that grows by doubling (a head trickled byte by byte is
// scanned once, never from the start again); a body is copied once into a
// buffer that grows with the bytes received, up to its `Content-Length` or
// `maxBodySize`, so a request holds at most a few times `maxBodySize` plus
// `maxHeaderSize`, however it is split. A chunked body may have at most
// `max(1024, maxBodySize / 16)` chunks and `maxBodySize + maxHeaderSize`
// bytes of framing (size lines, extensions, CRLFs); its trailers are
// validated like header lines and bounded by the header limits.
//
// Refusals: 400 (malformed request line, header or trailer line, a bare CR
// or LF, bad or duplicate Content-Length, Content-Length with
// Transfer-Encoding, chunked not the final transfer coding, a bad Host, a
// body that ends early), 408 (request deadline passed after some bytes), 413
// (body, chunk count or chunk framing over the limit), 414 (request line over
// the header limit), 431 (header or trailer section too large or too many
// lines), 501 (a transfer coding other than chunked, a method that a
// `Request` cannot carry: CONNECT, TRACE, TRACK, or a standard method not in
// upper case), 505 (HTTP version other than 1.0 / 1.1). Every refusal closes
// the connection: after a refusal sent before the request was read whole
// (all but 408), the server half-closes and reads and drops what the client
// still sends (RFC 9112, 9.6), for at most `lingerBytes`, `keepAliveTimeout`
// of silence and `requestTimeout` in all, so that the client reads the
// response instead of a reset. Private: not exported from mod.ts.

import { closeQuietly } from "./_conn_io.ts";

/** A connection to serve: the parts of a `Deno.Conn` / `TlsServerConn` used. */
export interface Http1Conn {
  readonly readable: ReadableStream<Uint8Array>;
  /** Closing it ends our side (a `TlsServerConn` half-closes). */
  readonly writable: WritableStream<Uint8Array>;
  close(): void;
  /** Half-closes, where closing `writable` would close it all (`Deno.Conn`). */
  closeWrite?(): Promise<void>;
}

/** Limits and deadlines, all already validated. */
export interface Http1Options {
  maxHeaderSize: number;
  maxHeaderCount: number;
  maxBodySize: number;
  /** Silence (no byte from the client) allowed while waiting on it, ms. */
  keepAliveTimeout: number;
  /** Added to keepAliveTimeout: the deadline for a whole request, ms. */
  requestTimeout: number;
  /**
   * After a refusal, most bytes read and dropped before closing; default
   * the larger of `maxBodySize` and {@linkcode LINGER_BYTES}.
   */
  lingerBytes?: number;
  /** `https://host:port/`, the scheme and the authority of request URLs. */
  base: string;
  /**
   * Called with an error no request should cause: a throw in parsing or in
   * the handler (the client gets 500 and the connection is closed).
   */
  onError?: (error: unknown) => void;
}

/** After a refusal, bytes read and dropped at least, before closing. */
export const LINGER_BYTES = 16 * 1024 * 1024;

/** A response, its body read whole. */
export interface Http1Response {
  status: number;
  headers: Iterable<[string, string]>;
  body: Uint8Array;
}

/**
 * Decides the response to one request; must not throw (answer 500 itself).
 */
export type Http1Handler = (request: Request) => Promise<Http1Response>;

/** A request refused before the handler saw it. */
export class HttpRefusal extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpRefusal";
    this.status = status;
  }
}

/** The connection failed under us (a reset, a write to a closed peer). */
class ConnectionGone extends Error {
  constructor(cause: unknown) {
    super("Cannot serve the connection: it failed", { cause });
    this.name = "ConnectionGone";
  }
}

/** The parsed head of a request. */
export interface RequestHead {
  method: string;
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: 0 | 1;
  /** Header names as sent, values trimmed, in order. */
  headers: [string, string][];
  /** The Host header's value (checked: host and optional port), or null. */
  host: string | null;
  /** Body length, or -1 for a chunked body. */
  contentLength: number;
  keepAlive: boolean;
  expectContinue: boolean;
}

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TARGET = /^[\x21-\x7e]+$/;
// Field values: visible ASCII, obs-text, space and tab; no other controls.
// deno-lint-ignore no-control-regex
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
// A Host value: uri-host [":" port] (RFC 9110, 7.2), no userinfo.
const HOST =
  /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?$/;
// Methods a `Request` upper-cases (so "post" would be served as POST) and
// methods it refuses to carry.
const NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
const FORBIDDEN = new Set(["CONNECT", "TRACE", "TRACK"]);
const CR = 13;
const LF = 10;
/** Longest chunk-size line (size and extensions), in bytes. */
const CHUNK_LINE_MAX = 1024;
/** First size of a body buffer; it doubles as bytes arrive. */
const FIRST_BODY_BUFFER = 16 * 1024;
const EMPTY = new Uint8Array(0);
const latin1 = new TextDecoder("latin1");

/** Parses one header or trailer line into its name and trimmed value. */
function fieldLine(line: string, what: string): [string, string] {
  const colon = line.indexOf(":");
  const name = colon > 0 ? line.slice(0, colon) : "";
  if (!TOKEN.test(name)) {
    throw new HttpRefusal(
      400,
      line.startsWith(" ") || line.startsWith("\t")
        ? `Cannot parse the request: folded ${what} lines are not accepted`
        : `Cannot parse the request: a ${what} line is not NAME: VALUE`,
    );
  }
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
  if (BAD_VALUE.test(value)) {
    throw new HttpRefusal(
      400,
      `Cannot parse the request: ${what} "${name}" holds a control character`,
    );
  }
  return [name, value];
}

/**
 * Parses a request head (request line and header lines, no final CRLF).
 * Pure: throws an HttpRefusal for anything it does not accept.
 */
export function parseHead(text: string, maxHeaderCount: number): RequestHead {
  const lines = text.split("\r\n");
  const requestLine = lines[0];
  if (/[\r\n]/.test(text.replaceAll("\r\n", ""))) {
    throw new HttpRefusal(
      400,
      "Cannot parse the request: a bare CR or LF (lines end with CRLF)",
    );
  }
  const parts = requestLine.split(" ");
  if (
    parts.length !== 3 || !TOKEN.test(parts[0]) || !TARGET.test(parts[1])
  ) {
    throw new HttpRefusal(
      400,
      "Cannot parse the request: the request line is not METHOD SP TARGET SP HTTP/1.1",
    );
  }
  const [method, target, version] = parts;
  let minor: 0 | 1;
  if (version === "HTTP/1.1") minor = 1;
  else if (version === "HTTP/1.0") minor = 0;
  else if (/^HTTP\/\d\.\d$/.test(version)) {
    throw new HttpRefusal(
      505,
      `Cannot serve the request: ${version} is not supported; use HTTP/1.1`,
    );
  } else {
    throw new HttpRefusal(
      400,
      "Cannot parse the request: the request line does not end in HTTP/1.x",
    );
  }
  // Methods are case-sensitive (RFC 9110, 9.1), but a `Request` upper-cases
  // six of them: "post" is not POST, and cannot be handed on as itself.
  const upper = method.toUpperCase();
  if (FORBIDDEN.has(upper) || (NORMALIZED.has(upper) && method !== upper)) {
    throw new HttpRefusal(
      501,
      `Cannot serve the request: method ${
        JSON.stringify(method)
      } is not supported${
        FORBIDDEN.has(upper)
          ? ""
          : `; methods are case-sensitive: send ${upper}`
      }`,
    );
  }
  if (
    !target.startsWith("/") && !/^https?:\/\//i.test(target) &&
    !(target === "*" && method === "OPTIONS")
  ) {
    throw new HttpRefusal(
      400,
      "Cannot parse the request: the target must be a path (/...) or an absolute URL",
    );
  }
  if (lines.length - 1 > maxHeaderCount) {
    throw new HttpRefusal(
      431,
      `Cannot serve the request: ${
        lines.length - 1
      } header lines, over the limit of ${maxHeaderCount}`,
    );
  }
  const headers: [string, string][] = [];
  let contentLength: string | null = null;
  let transferEncoding: string | null = null;
  let connection = "";
  let hosts = 0;
  let host: string | null = null;
  let expectContinue = false;
  for (let i = 1; i < lines.length; i++) {
    const [name, value] = fieldLine(lines[i], "header");
    headers.push([name, value]);
    switch (name.toLowerCase()) {
      case "content-length":
        if (contentLength !== null) {
          throw new HttpRefusal(
            400,
            "Cannot parse the request: Content-Length is sent twice",
          );
        }
        contentLength = value;
        break;
      case "transfer-encoding":
        transferEncoding = transferEncoding === null
          ? value
          : `${transferEncoding}, ${value}`;
        break;
      case "connection":
        connection += `,${value.toLowerCase()}`;
        break;
      case "host":
        hosts++;
        host = value;
        break;
      case "expect":
        if (value.toLowerCase() === "100-continue") expectContinue = true;
        break;
    }
  }
  if (hosts > 1 || (minor === 1 && hosts !== 1)) {
    throw new HttpRefusal(
      400,
      `Cannot parse the request: ${
        minor === 1
          ? "HTTP/1.1 needs exactly one Host header"
          : "HTTP/1.0 allows one Host header at most"
      }, got ${hosts}`,
    );
  }
  // RFC 9112, 3.2: a Host that is not host[:port] is a 400. An empty one
  // names no authority: request URLs then take the server's.
  if (host !== null && host !== "" && !HOST.test(host)) {
    throw new HttpRefusal(
      400,
      `Cannot parse the request: the Host header ${
        JSON.stringify(host)
      } is not a host and optional port`,
    );
  }
  let length = 0;
  if (transferEncoding !== null) {
    if (contentLength !== null || minor === 0) {
      throw new HttpRefusal(
        400,
        "Cannot parse the request: Transfer-Encoding with Content-Length or on HTTP/1.0",
      );
    }
    // RFC 9112, 6.3: unless chunked is the final coding (and only there),
    // the body's length cannot be known: 400. Other codings: 501.
    const codings = transferEncoding.split(",").map((coding) =>
      coding.trim().toLowerCase()
    ).filter((coding) => coding !== "");
    const chunked = codings.filter((coding) => coding === "chunked").length;
    if (chunked !== 1 || codings.at(-1) !== "chunked") {
      throw new HttpRefusal(
        400,
        `Cannot parse the request: Transfer-Encoding ${
          JSON.stringify(transferEncoding)
        } does not end in chunked (once), so the body's length is unknown`,
      );
    }
    if (codings.length > 1) {
      throw new HttpRefusal(
        501,
        `Cannot serve the request: transfer coding ${
          JSON.stringify(transferEncoding)
        } is not supported; send Content-Length or chunked`,
      );
    }
    length = -1;
  } else if (contentLength !== null) {
    if (!/^\d{1,15}$/.test(contentLength)) {
      throw new HttpRefusal(
        400,
        `Cannot parse the request: Content-Length ${
          JSON.stringify(contentLength)
        } is not a decimal number`,
      );
    }
    length = Number(contentLength);
  }
  const tokens = connection.split(",").map((token) => token.trim());
  const keepAlive = tokens.includes("close")
    ? false
    : minor === 1 || tokens.includes("keep-alive");
  return {
    method,
    target,
    minor,
    headers,
    host,
    contentLength: length,
    keepAlive,
    expectContinue,
  };
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

function bareCrOrLf(): HttpRefusal {
  return new HttpRefusal(
    400,
    "Cannot parse the request: a bare CR or LF (lines end with CRLF)",
  );
}

function endedEarly(): HttpRefusal {
  return new HttpRefusal(
    400,
    "Cannot read the request body: the client closed the connection before the end of the body",
  );
}

/** The value of a hex digit, or -1. */
function hexDigit(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1;
}

/**
 * The size on a chunk-size line `bytes[start, start + length)`: hex digits,
 * then optional blanks and `;` extensions (visible characters, blanks and
 * obs-text). A size over `max` is returned as `max + 1`.
 */
function chunkSize(
  bytes: Uint8Array,
  start: number,
  length: number,
  max: number,
): number {
  let size = 0;
  let i = 0;
  while (i < length) {
    const digit = hexDigit(bytes[start + i]);
    if (digit < 0) break;
    size = Math.min(size * 16 + digit, max + 1);
    i++;
  }
  let ok = i > 0;
  while (
    ok && i < length && (bytes[start + i] === 0x20 || bytes[start + i] === 0x09)
  ) i++;
  if (ok && i < length) {
    ok = bytes[start + i] === 0x3b; // ;
    for (i++; ok && i < length; i++) {
      const byte = bytes[start + i];
      ok = byte === 0x09 || (byte >= 0x20 && byte !== 0x7f);
    }
  }
  if (!ok) {
    throw new HttpRefusal(
      400,
      "Cannot read the request body: a chunk size is not hexadecimal",
    );
  }
  return size;
}

let dateSecond = 0;
let dateText = "";
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/**
 * Encodes a response head and body into one buffer. Header values are
 * ByteStrings (code points up to 0xFF), written one byte each.
 */
export function encodeResponse(
  status: number,
  headers: Iterable<[string, string]>,
  body: Uint8Array | null,
  bodyLength: number,
  connection: "close" | "keep-alive" | null,
): Uint8Array {
  let head = `HTTP/1.1 ${status} ${
    REASONS[status] ?? "Status"
  }\r\ndate: ${httpDate()}\r\n`;
  for (const [name, value] of headers) {
    if (
      name === "content-length" || name === "connection" ||
      name === "transfer-encoding" || name === "keep-alive"
    ) continue;
    head += `${name}: ${value}\r\n`; // set-cookie comes once per cookie
  }
  if (status !== 204 && status !== 304) {
    head += `content-length: ${bodyLength}\r\n`;
  }
  if (connection !== null) head += `connection: ${connection}\r\n`;
  head += "\r\n";
  const size = body === null ? 0 : body.length;
  const out = new Uint8Array(head.length + size);
  for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i);
  if (body !== null) out.set(body, head.length);
  return out;
}

function plainRefusal(
  status: number,
  message: string,
): [number, [string, string][], Uint8Array] {
  const body = new TextEncoder().encode(`${message}\n`);
  return [status, [["content-type", "text/plain; charset=utf-8"]], body];
}

/** The state of one served connection, for shutdown. */
export interface Http1Session {
  /** Closes now if waiting for a request, else after the current response. */
  drain(): void;
  /** Closes now. */
  abort(): void;
  /**
   * Settles when the connection is done: served to the end, or closed (by
   * `abort()`, say) even if the handler it was waiting on never settles.
   */
  readonly done: Promise<void>;
}

/**
 * Serves requests on `conn` until the client closes, a deadline passes, a
 * request is refused, or `drain()` / `abort()`. Closes `conn` at the end.
 * `refuseAll` refuses every request of the connection (the allow-list).
 * Never rejects: a throw in parsing or in `handler` (which should not
 * throw) is passed to `options.onError` and answered with 500.
 */
export function serveHttp1(
  conn: Http1Conn,
  options: Http1Options,
  handler: Http1Handler,
  refuseAll: HttpRefusal | null,
): Http1Session {
  let draining = false;
  let closed = false;
  let waiting = false; // between requests, no byte of the next one yet
  let lingering = false; // refused and half-closed: reading to drop
  // Deadlines as times (0: off), checked by one timer per connection that
  // is re-armed only when it fires: moving a deadline costs no timer call.
  let silenceAt = 0;
  let requestAt = 0;
  let writeAt = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const writer = conn.writable.getWriter();
  writer.closed.catch(() => {});
  const lingerBytes = options.lingerBytes ??
    Math.max(options.maxBodySize, LINGER_BYTES);
  // Settles `done` when the connection is closed, even while a handler that
  // never settles holds the loop: shutdown must not wait on it.
  const gone = Promise.withResolvers<void>();
  const report = (error: unknown) => {
    try {
      options.onError?.(error);
    } catch {
      // a throwing hook must not stop the server
    }
  };

  const close = () => {
    if (closed) return;
    closed = true;
    gone.resolve();
    clearTimeout(timer);
    // A Deno.Conn throws on a second close (cancelling its readable may
    // close it): closeQuietly.
    closeQuietly(conn);
    reader.cancel();
  };
  const timedOut = () => {
    if (closed) return;
    if (!lingering && (!waiting || reader.buffered > 0)) {
      // Part of a request came, too slowly: say so (best effort), then close.
      const [status, headers, body] = plainRefusal(
        408,
        "Cannot serve the request: the request did not arrive in time",
      );
      writer.write(encodeResponse(status, headers, body, body.length, "close"))
        .catch(() => {});
    }
    close();
  };
  const tick = () => {
    timer = undefined;
    if (closed) return;
    const now = performance.now();
    if (writeAt !== 0 && now >= writeAt) return close();
    if (
      (silenceAt !== 0 && now >= silenceAt) ||
      (requestAt !== 0 && now >= requestAt)
    ) return timedOut();
    schedule();
  };
  const schedule = () => {
    if (timer !== undefined || closed) return;
    let next = Infinity;
    for (const at of [silenceAt, requestAt, writeAt]) {
      if (at !== 0 && at < next) next = at;
    }
    if (next === Infinity) return;
    timer = setTimeout(tick, Math.max(0, Math.ceil(next - performance.now())));
  };
  const armSilence = () => {
    silenceAt = performance.now() + options.keepAliveTimeout;
    schedule();
  };
  const reader = new Http1Reader(conn.readable, () => {
    waiting = false;
    if (silenceAt !== 0) armSilence();
  });
  const pause = () => {
    silenceAt = 0;
    requestAt = 0;
  };
  const send = async (bytes: Uint8Array) => {
    // A client that does not read gets keepAliveTimeout to take the response.
    writeAt = performance.now() + options.keepAliveTimeout;
    schedule();
    try {
      await writer.write(bytes);
    } catch (error) {
      throw new ConnectionGone(error);
    } finally {
      writeAt = 0;
    }
  };
  // RFC 9112, 9.6: closing with unread bytes makes the kernel send a reset,
  // which can destroy the response before the client reads it. So
  // half-close, then read and drop what the client still sends until it
  // closes, for at most lingerBytes, keepAliveTimeout of silence and
  // requestTimeout in all.
  const linger = async () => {
    lingering = true;
    if (draining) return; // shutting down: close now
    requestAt = performance.now() + options.requestTimeout;
    armSilence();
    try {
      // Not awaited: a client that reads only once it has sent everything
      // would never let it finish while nothing reads its bytes.
      const ended = typeof conn.closeWrite === "function"
        ? conn.closeWrite()
        : writer.close();
      ended.catch(() => {});
      await reader.discard(lingerBytes);
    } catch {
      // a reset: nothing more to drop
    }
  };

  const loop = async () => {
    while (!closed) {
      waiting = reader.buffered === 0;
      if (draining && waiting) break;
      requestAt = performance.now() + options.keepAliveTimeout +
        options.requestTimeout;
      armSilence();
      let head: RequestHead | null = null;
      let response: [number, Iterable<[string, string]>, Uint8Array];
      let keepAlive = false;
      let complete = false; // the whole request (head and body) was read
      let broken = false; // a bug: close without reading any further
      try {
        head = await reader.readHead(
          options.maxHeaderSize,
          options.maxHeaderCount,
        );
        if (head === null) break;
        if (refuseAll) throw refuseAll;
        if (
          head.expectContinue && head.minor === 1 && head.contentLength !== 0
        ) {
          if (head.contentLength > options.maxBodySize) {
            await reader.readBody(head.contentLength, options);
          }
          await send(new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n"));
        }
        const body = await reader.readBody(head.contentLength, options);
        complete = true;
        // The whole request is in: the rest is our time, not the client's.
        pause();
        keepAlive = head.keepAlive && !draining;
        const result = await handler(makeRequest(head, body, options.base));
        response = [result.status, result.headers, result.body];
      } catch (error) {
        if (error instanceof ConnectionGone || closed) break;
        keepAlive = false;
        if (error instanceof HttpRefusal) {
          response = plainRefusal(error.status, error.message);
        } else {
          report(error);
          broken = true;
          response = plainRefusal(
            500,
            "Cannot serve the request: the server failed",
          );
        }
      }
      pause();
      if (closed) break;
      const [status, headers, bytes] = response;
      keepAlive &&= !draining;
      const headRequest = head?.method === "HEAD";
      const noBody = headRequest || status === 204 || status === 304;
      await send(
        encodeResponse(
          status,
          headers,
          noBody ? null : bytes,
          bytes.length,
          keepAlive ? (head?.minor === 0 ? "keep-alive" : null) : "close",
        ),
      );
      if (!keepAlive) {
        // Bytes the client may still send: the rest of a refused request,
        // or requests pipelined after a last one.
        if (!broken && (!complete || reader.buffered > 0)) await linger();
        break;
      }
    }
  };
  const served = loop().catch((error) => {
    // A reset or a write to a closed peer: gone, nothing to answer. Else a
    // bug (a response that cannot be encoded, say): report it.
    if (!(error instanceof ConnectionGone)) report(error);
  });
  const done = Promise.race([served, gone.promise]).finally(close);
  return {
    drain() {
      draining = true;
      if (lingering || (waiting && reader.buffered === 0)) close();
    },
    abort: close,
    done,
  };
}

/**
 * The request's URL (RFC 9112, 3.3): the connection's scheme; for a path
 * (origin-form), the Host header's authority (the server's address when
 * there is none), so that a path starting with `//` stays a path; an
 * absolute URL (absolute-form) as sent.
 */
function requestUrl(head: RequestHead, base: string): URL {
  const server = new URL(base);
  const authority = head.host ? head.host : server.host;
  try {
    if (head.target.startsWith("/")) {
      return new URL(`${server.protocol}//${authority}${head.target}`);
    }
    if (head.target === "*") {
      return new URL(`${server.protocol}//${authority}/*`);
    }
    return new URL(head.target);
  } catch {
    throw new HttpRefusal(
      400,
      "Cannot serve the request: the URL is malformed",
    );
  }
}

function makeRequest(
  head: RequestHead,
  body: Uint8Array,
  base: string,
): Request {
  const url = requestUrl(head, base);
  let headers: Headers;
  try {
    headers = new Headers(head.headers);
  } catch {
    throw new HttpRefusal(
      400,
      "Cannot serve the request: a header is malformed",
    );
  }
  const hasBody = head.method !== "GET" && head.method !== "HEAD";
  return new Request(url, {
    method: head.method,
    headers,
    body: hasBody ? body as Uint8Array<ArrayBuffer> : null,
  });
}
