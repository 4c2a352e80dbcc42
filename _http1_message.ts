// Private: the bridge between HTTP/1.1 on the wire and the web-standard
// `Request` the handler of _http1_session.ts sees: makeRequest() builds a
// `Request` from a parsed head and its body, encodeResponse() writes a
// response (status line, headers, `Content-Length`, body) into one buffer.

import { HttpRefusal, type RequestHead } from "./_http1_parse.ts";

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

let dateSecond = 0;
let dateText = "";
/** The `Date` header's value, formatted once a second. */
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

/** A plain-text response (status, headers, body) for a refusal. */
export function plainRefusal(
  status: number,
  message: string,
): [number, [string, string][], Uint8Array] {
  const body = new TextEncoder().encode(`${message}\n`);
  return [status, [["content-type", "text/plain; charset=utf-8"]], body];
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

/**
 * The `Request` for a parsed head and its body (none for GET and HEAD);
 * `base` gives the scheme, and the authority when there is no Host.
 */
export function makeRequest(
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
