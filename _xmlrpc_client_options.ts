// Private: the checks of createXmlRpcClient()'s URL and options in
// xmlrpc.ts, turned into what a call needs: the URL without its user
// name and password (which become basic auth and never appear in a
// message), the request headers (custom ones, never those XML-RPC and
// HTTP framing need us to set), and the TLS material for
// `Deno.createHttpClient` (PEM text, or read from the `*File` paths, with
// a file path passed as PEM text named as such).

import { utf8 } from "./_bytes.ts";
import { maskUserinfo } from "./_xmlrpc_redact.ts";
import { quote } from "./_xmlrpc_rules.ts";
import type { CreateXmlRpcClientOptions } from "./xmlrpc.ts";

const CANNOT = "Cannot create the XML-RPC client";

/**
 * Headers the client sets itself (the body's type and framing, the
 * connection), which a caller's `headers` may not replace.
 */
const CONTROLLED = new Set([
  "host",
  "content-length",
  "content-type",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "expect",
]);

/** The URL with its user name and password removed, for messages. */
export function redactUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * Parses the client's URL: http(s), and its user name and password taken
 * out (returned as `userinfo`). A URL that does not parse is refused with
 * its userinfo masked.
 */
export function parseUrl(
  url: string | URL,
): { url: URL; userinfo?: { username: string; password: string } } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not the original error as the cause: it repeats the URL, password
    // included.
    throw new TypeError(
      `${CANNOT}: the URL ${quote(maskUserinfo(String(url)))} is not valid`,
    );
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    throw new TypeError(
      `${CANNOT}: expected an https:// or http:// URL, got ${
        quote(parsed.protocol)
      }`,
    );
  }
  if (parsed.username === "" && parsed.password === "") return { url: parsed };
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  const userinfo = {
    username: decode(parsed.username),
    password: decode(parsed.password),
  };
  parsed.username = "";
  parsed.password = "";
  return { url: parsed, userinfo };
}

/** The `authorization` header for basic auth (RFC 7617, UTF-8). */
function basic(
  auth: { username: string; password: string },
  source: string,
): string {
  if (
    typeof auth !== "object" || auth === null ||
    typeof auth.username !== "string" || typeof auth.password !== "string"
  ) {
    throw new TypeError(
      `${CANNOT}: ${source} must be { username: string, password: string }`,
    );
  }
  if (auth.username.includes(":")) {
    throw new TypeError(
      `${CANNOT}: the basic-auth user name holds ":", which basic auth cannot carry (RFC 7617)`,
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(auth.username + auth.password)) {
    throw new TypeError(
      `${CANNOT}: the basic-auth user name or password holds a control character`,
    );
  }
  return `Basic ${utf8(`${auth.username}:${auth.password}`).toBase64()}`;
}

/**
 * What is wrong with a `headers` option `Headers` refused: which header's
 * name (by position) or value (by name), never repeating either.
 */
function invalidHeaders(init: unknown): string {
  const shape =
    "headers must be a Headers, an array of [name, value] pairs or an object of names to values";
  let pairs: unknown[];
  try {
    pairs = typeof init === "object" && init !== null &&
        Symbol.iterator in init
      ? [...(init as Iterable<unknown>)]
      : Object.entries(init as object);
  } catch {
    return shape;
  }
  for (const [index, pair] of pairs.entries()) {
    if (!Array.isArray(pair) || pair.length !== 2) return shape;
    const [name, value] = pair;
    try {
      new Headers([[name, ""]]);
    } catch {
      return `headers holds an invalid header name (header ${
        index + 1
      }; a name is letters, digits and !#$%&'*+-.^_\`|~, no spaces or colons); it is not shown`;
    }
    try {
      new Headers([[name, value]]);
    } catch {
      return `headers holds an invalid header value for ${
        quote(String(name).toLowerCase())
      } (no CR, LF or NUL, no character above U+00FF); it is not shown`;
    }
  }
  return shape;
}

/**
 * The headers every call sends: the caller's `headers`, checked (none the
 * client controls), then `content-type` and, with `basicAuth` or a URL
 * user name, `authorization`. Header values never appear in a message.
 */
export function requestHeaders(
  options: CreateXmlRpcClientOptions,
  userinfo: { username: string; password: string } | undefined,
): Headers {
  let headers: Headers;
  try {
    headers = new Headers(options.headers);
  } catch {
    // Not the runtime's error as the cause: it quotes the value (a token,
    // say) or the name (which may be "authorization: Bearer ..." by
    // mistake).
    throw new TypeError(`${CANNOT}: ${invalidHeaders(options.headers)}`);
  }
  for (const name of headers.keys()) {
    if (CONTROLLED.has(name)) {
      throw new TypeError(
        `${CANNOT}: headers may not set ${
          quote(name)
        }; the client sets it itself`,
      );
    }
  }
  if (options.basicAuth !== undefined && userinfo !== undefined) {
    throw new TypeError(
      `${CANNOT}: the URL holds a user name and basicAuth is given too; pass the credentials once, in basicAuth`,
    );
  }
  const auth = options.basicAuth ?? userinfo;
  if (auth !== undefined) {
    if (headers.has("authorization")) {
      throw new TypeError(
        `${CANNOT}: headers sets "authorization" and basic auth is given too; pass one`,
      );
    }
    headers.set(
      "authorization",
      basic(auth, userinfo ? "the URL's user name" : "basicAuth"),
    );
  }
  headers.set("content-type", "text/xml");
  return headers;
}

/** PEM text holds a block; anything else is a mistake we can name. */
function isPem(text: string): boolean {
  return text.includes("-----BEGIN");
}

/** A single line that reads as a file name or path. */
function looksLikePath(text: string): boolean {
  return text.length <= 4096 && !/[\r\n]/.test(text) &&
    (/\.(pem|crt|cer|key)$/i.test(text) || /^(\/|\.{1,2}\/|~\/)/.test(text) ||
      /^[A-Za-z]:\\/.test(text));
}

/**
 * One PEM text option, checked: a file path passed as text is named as
 * such, with the `*File` option to use (a `key` is never quoted: it may be
 * a secret in another format).
 */
function pemText(
  value: unknown,
  option: string,
  fileOption: string,
  secret: boolean,
): string {
  if (typeof value !== "string") {
    throw new TypeError(
      `${CANNOT}: ${option} must be PEM text, got ${typeof value}`,
    );
  }
  if (isPem(value)) return value;
  if (looksLikePath(value)) {
    throw new TypeError(
      `${CANNOT}: ${option} ${
        secret ? "" : `${quote(value)} `
      }looks like a file path, not PEM text; pass it as ${fileOption}`,
    );
  }
  throw new TypeError(
    `${CANNOT}: ${option} must be PEM text ("-----BEGIN ..."); to read it from a file, pass ${fileOption}`,
  );
}

/**
 * A PEM file, read now (the client is created synchronously). Only a
 * regular file: a named pipe nobody writes to, or a device, would block
 * the whole process in a synchronous read.
 */
function pemFile(path: unknown, option: string, textOption: string): string {
  if (typeof path !== "string") {
    throw new TypeError(
      `${CANNOT}: ${option} must be a path string, got ${typeof path}`,
    );
  }
  let text: string;
  try {
    if (!Deno.statSync(path).isFile) {
      throw new TypeError(
        `${CANNOT}: ${option} ${
          quote(path)
        } is not a regular file (a named pipe or a device would block the process, which reads it synchronously); read it yourself and pass its text as ${textOption}`,
      );
    }
    text = Deno.readTextFileSync(path);
  } catch (cause) {
    if (cause instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(
        `${CANNOT}: ${option} ${quote(path)} does not exist; check the path`,
        { cause },
      );
    }
    throw cause;
  }
  if (!isPem(text)) {
    throw new TypeError(
      `${CANNOT}: ${option} ${
        quote(path)
      } holds no PEM block ("-----BEGIN ...")`,
    );
  }
  return text;
}

/** `text` or the contents of `file`, at most one of them; else undefined. */
function either(
  options: CreateXmlRpcClientOptions,
  textOption: "cert" | "key",
  fileOption: "certFile" | "keyFile",
): string | undefined {
  const text = options[textOption];
  const file = options[fileOption];
  if (text !== undefined && file !== undefined) {
    throw new TypeError(
      `${CANNOT}: pass ${textOption} (PEM text) or ${fileOption} (a path), not both`,
    );
  }
  if (file !== undefined) return pemFile(file, fileOption, textOption);
  if (text === undefined) return undefined;
  return pemText(text, textOption, fileOption, textOption === "key");
}

/**
 * The TLS options of `Deno.createHttpClient`: trusted CAs (`caCerts` and/or
 * `caFile`) and the client certificate (`cert`/`certFile` with
 * `key`/`keyFile`).
 */
export function tlsOptions(
  options: CreateXmlRpcClientOptions,
): { caCerts: string[]; cert?: string; key?: string } {
  const caCerts: string[] = [];
  if (options.caCerts !== undefined && options.caFile !== undefined) {
    throw new TypeError(
      `${CANNOT}: pass caCerts (PEM texts) or caFile (a path), not both`,
    );
  }
  if (options.caCerts !== undefined) {
    if (!Array.isArray(options.caCerts)) {
      throw new TypeError(
        `${CANNOT}: caCerts must be an array of PEM texts; for a file, pass caFile`,
      );
    }
    for (const pem of options.caCerts) {
      caCerts.push(pemText(pem, "caCerts", "caFile", false));
    }
  }
  if (options.caFile !== undefined) {
    caCerts.push(pemFile(options.caFile, "caFile", "caCerts"));
  }
  const cert = either(options, "cert", "certFile");
  const key = either(options, "key", "keyFile");
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError(
      `${CANNOT}: cert and key go together; pass both or neither (or certFile and keyFile)`,
    );
  }
  return { caCerts, cert, key };
}
