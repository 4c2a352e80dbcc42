// Private: the pure parsing of HTTP/1.1 requests (RFC 9112) for the server
// in _http1_session.ts: a request head (request line and header lines) into
// a RequestHead, one header or trailer line, and a chunk-size line. No I/O:
// everything it does not accept is thrown as an HttpRefusal carrying the
// status to answer with (400, 431, 501 or 505). (About 320 lines: each
// RFC 9112 rule a head must pass, with its message.)

/** A request refused before the handler saw it, with the status to send. */
export class HttpRefusal extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpRefusal";
    this.status = status;
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

/** The refusal of a line that does not end in CRLF. */
export function bareCrOrLf(): HttpRefusal {
  return new HttpRefusal(
    400,
    "Cannot parse the request: a bare CR or LF (lines end with CRLF)",
  );
}

/**
 * Parses one header or trailer line (`what`: "header" or "trailer") into
 * its name and trimmed value.
 */
export function fieldLine(line: string, what: string): [string, string] {
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

/** Parses the request line: method, target and HTTP minor version. */
function requestLine(
  line: string,
): { method: string; target: string; minor: 0 | 1 } {
  const parts = line.split(" ");
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
  return { method, target, minor };
}

/** Checks the Host headers: their count for the version, and the syntax. */
function checkHost(hosts: number, host: string | null, minor: 0 | 1): void {
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
}

/**
 * The body's length from its Transfer-Encoding and Content-Length values
 * (null when absent): -1 for chunked, else the length (0 without either).
 */
function bodyLength(
  transferEncoding: string | null,
  contentLength: string | null,
  minor: 0 | 1,
): number {
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
    return -1;
  }
  if (contentLength === null) return 0;
  if (!/^\d{1,15}$/.test(contentLength)) {
    throw new HttpRefusal(
      400,
      `Cannot parse the request: Content-Length ${
        JSON.stringify(contentLength)
      } is not a decimal number`,
    );
  }
  return Number(contentLength);
}

/**
 * Parses a request head (request line and header lines, no final CRLF).
 * Pure: throws an HttpRefusal for anything it does not accept.
 */
export function parseHead(text: string, maxHeaderCount: number): RequestHead {
  const lines = text.split("\r\n");
  if (/[\r\n]/.test(text.replaceAll("\r\n", ""))) throw bareCrOrLf();
  const { method, target, minor } = requestLine(lines[0]);
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
  checkHost(hosts, host, minor);
  const length = bodyLength(transferEncoding, contentLength, minor);
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
export function chunkSize(
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
