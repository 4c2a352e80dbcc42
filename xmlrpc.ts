/**
 * XML-RPC as Python's `xmlrpc.client` speaks it: a strict, bounded codec, a
 * `Request` -> `Response` handler that dispatches registered methods, and a
 * client on `fetch` that reuses connections and can present a client
 * certificate (mutual TLS).
 *
 * ## The JavaScript <-> XML-RPC mapping
 *
 * | JavaScript | XML-RPC | back to JavaScript |
 * | --- | --- | --- |
 * | integer `number` in -2^31..2^31-1 | `<int>` | `number` |
 * | other finite `number` | `<double>` | `number` |
 * | `bigint` in -2^31..2^31-1 | `<int>` | `number` |
 * | `boolean` | `<boolean>` | `boolean` |
 * | `string` | `<string>` | `string` |
 * | `Date` (UTC, whole seconds) | `<dateTime.iso8601>` | `Date` |
 * | `Uint8Array` | `<base64>` | `Uint8Array` |
 * | `null`, `undefined` | `<nil/>` | `null` |
 * | `Array` | `<array>` | `Array` |
 * | plain object | `<struct>` | plain object |
 *
 * Decoding also accepts `<i4>`, a bare `<value>text</value>` (a string) and
 * `<value/>` (the empty string). A struct member whose value is `undefined`
 * is left out, as `JSON.stringify` does. `NaN`, `Infinity`, integers outside
 * the `int` range given as `bigint`, strings holding characters that XML 1.0
 * cannot carry (send those as `Uint8Array`), class instances and cycles are
 * refused with a `TypeError` or `RangeError` when encoding. A `Date` loses
 * its milliseconds, as XML-RPC carries whole seconds; a `dateTime.iso8601`
 * without a zone (the only form Python sends) is read as UTC, one with a
 * zone is converted to UTC and refused when that moves it outside the years
 * 0000 to 9999 (it could not be encoded again, so a stored copy could never
 * be read back).
 *
 * ## Hostile input
 *
 * The decoder is hand-written and accepts exactly the XML that XML-RPC
 * needs. It refuses a DOCTYPE (so no entity declarations, no external
 * entities, no expansion), any entity reference other than the five
 * predefined ones and numeric character references, processing
 * instructions, encodings other than UTF-8, bodies over `maxBodySize`
 * (1 MiB by default), nesting deeper than `maxDepth` (64 by default) and
 * numbers out of range. Every refusal is a
 * {@linkcode ProtocolError}; {@linkcode createXmlRpcHandler} answers it with an
 * XML-RPC fault (HTTP 413 for an oversized body), and its scanning is
 * linear in the input, so hostile input cannot make it hang. A body that
 * stops arriving is answered with HTTP 408 after `bodyTimeout` (30 s by
 * default); closing that client's socket is the HTTP server's part
 * (`serveHttps()` does; `Deno.serve` has no request deadline of its own). A
 * method that throws, or a hook that does, costs the client a fault, never
 * the server.
 *
 * @example A server and a client
 * ```ts
 * import { createXmlRpcClient, createXmlRpcHandler } from "./xmlrpc.ts";
 *
 * const handler = createXmlRpcHandler({
 *   add: (a, b) => Number(a) + Number(b),
 * });
 * await using server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   handler,
 * );
 * await using client = createXmlRpcClient(`http://127.0.0.1:${server.addr.port}/`);
 * console.log(await client.call("add", 2, 3)); // 5
 * ```
 *
 * @module
 */
import { ProtocolError } from "./errors.ts";
import { checkTimeout } from "./_options.ts";
import { deadline, DEFAULT_TIMEOUT, raceSignal } from "./_deadline.ts";
import { utf8 } from "./_bytes.ts";

/** A value XML-RPC can carry, as the decoder returns it. */
export type XmlRpcValue =
  | string
  | number
  | boolean
  | null
  | Date
  | Uint8Array
  | XmlRpcValue[]
  | XmlRpcStruct;

/** An XML-RPC `<struct>`: a plain object of values. */
export interface XmlRpcStruct {
  /** A struct member. */
  [member: string]: XmlRpcValue;
}

/** A decoded `<methodCall>`. */
export interface XmlRpcCall {
  /** The `<methodName>`. */
  method: string;
  /** The `<params>`, in order. */
  params: XmlRpcValue[];
}

/** Default maximum body size, in bytes: 1 MiB. */
const DEFAULT_MAX_BODY_SIZE = 1024 * 1024;

/** Default maximum nesting of arrays and structs. */
const DEFAULT_MAX_DEPTH = 64;

/** Default deadline for receiving a request body, in milliseconds. */
const DEFAULT_BODY_TIMEOUT = 30_000;

/**
 * Well-known fault codes (the "specification for fault code
 * interoperability" that Python's `xmlrpc.client` also lists), plus `1`, the
 * code Python's `SimpleXMLRPCServer` uses for an exception in a method.
 */
export const XmlRpcFaultCode = {
  /** An exception thrown by a method (Python's server uses 1 too). */
  APPLICATION: 1,
  /** The request is not well-formed XML-RPC. */
  NOT_WELLFORMED: -32700,
  /** The request's encoding is not UTF-8. */
  UNSUPPORTED_ENCODING: -32701,
  /** No such method. */
  METHOD_NOT_FOUND: -32601,
  /** The method exists but the parameters do not fit it. */
  INVALID_PARAMS: -32602,
  /** The server failed to encode the result. */
  INTERNAL_ERROR: -32603,
} as const;

/**
 * An XML-RPC fault: the error a server answers with. Throw one from a method
 * registered with {@linkcode createXmlRpcHandler} to choose the code; the client
 * from {@linkcode createXmlRpcClient} throws one when the server answers a fault.
 *
 * @example Refuse a call with a fault
 * ```ts
 * import { XmlRpcFault } from "./xmlrpc.ts";
 *
 * const fault = new XmlRpcFault(1, "KeyError: 'missing'");
 * console.log(fault.faultCode, fault.faultString);
 * ```
 */
export class XmlRpcFault extends Error {
  /** The fault's `faultCode`. */
  readonly faultCode: number;
  /** The fault's `faultString`. */
  readonly faultString: string;

  /**
   * Creates a fault.
   *
   * @param faultCode The code (an `int`).
   * @param faultString The human-readable message.
   * @param options The standard error options (`cause`).
   */
  constructor(faultCode: number, faultString: string, options?: ErrorOptions) {
    super(`XML-RPC fault ${faultCode}: ${faultString}`, options);
    this.name = "XmlRpcFault";
    this.faultCode = faultCode;
    this.faultString = faultString;
  }
}

/** Limits for {@linkcode decodeMethodCall} and {@linkcode decodeMethodResponse}. */
export interface XmlRpcDecodeOptions {
  /**
   * Largest document accepted, in bytes (UTF-8).
   *
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * Deepest nesting of arrays and structs accepted (at most 1000).
   *
   * @default {64}
   */
  maxDepth?: number;
}

/** Limits for the encoders. */
export interface XmlRpcEncodeOptions {
  /**
   * Deepest nesting of arrays and structs written (also catches cycles).
   *
   * @default {64}
   */
  maxDepth?: number;
}

// ---------------------------------------------------------------------------
// Encoding

const INT_MIN = -2147483648;
const INT_MAX = 2147483647;
// Characters XML 1.0 cannot carry, even as a character reference. Lone
// surrogates never reach us from a fatal TextDecoder; strings we encode are
// checked with isWellFormed().
// deno-lint-ignore no-control-regex
const FORBIDDEN_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

function escapeText(text: string, what: string): string {
  if (FORBIDDEN_CHARS.test(text) || !text.isWellFormed()) {
    throw new RangeError(
      `Cannot encode ${what}: it holds a character XML 1.0 cannot carry (a control character, U+FFFE, U+FFFF or a lone surrogate); send such data as a Uint8Array (base64)`,
    );
  }
  if (!/[&<>\r]/.test(text)) return text;
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;").replaceAll("\r", "&#13;");
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

function encodeDate(date: Date): string {
  const time = date.getTime();
  if (Number.isNaN(time)) {
    throw new RangeError("Cannot encode a Date: it is an invalid date");
  }
  const year = date.getUTCFullYear();
  if (year < 0 || year > 9999) {
    throw new RangeError(
      `Cannot encode a Date: year ${year} is outside 0000 to 9999`,
    );
  }
  return `${pad(year, 4)}${pad(date.getUTCMonth() + 1)}${
    pad(date.getUTCDate())
  }T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${
    pad(date.getUTCSeconds())
  }`;
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function encodeValue(
  value: unknown,
  out: string[],
  depth: number,
  maxDepth: number,
): void {
  switch (typeof value) {
    case "string":
      out.push(
        "<value><string>",
        escapeText(value, "a string"),
        "</string></value>",
      );
      return;
    case "number":
      if (Number.isInteger(value) && value >= INT_MIN && value <= INT_MAX) {
        out.push(
          `<value><int>${Object.is(value, -0) ? 0 : value}</int></value>`,
        );
      } else if (Number.isFinite(value)) {
        out.push(`<value><double>${value}</double></value>`);
      } else {
        throw new RangeError(
          `Cannot encode the number ${value}: XML-RPC has no NaN or Infinity`,
        );
      }
      return;
    case "bigint":
      if (value < BigInt(INT_MIN) || value > BigInt(INT_MAX)) {
        throw new RangeError(
          `Cannot encode the bigint ${value}: XML-RPC <int> holds -2147483648 to 2147483647; send it as a string or a number (double)`,
        );
      }
      out.push(`<value><int>${value}</int></value>`);
      return;
    case "boolean":
      out.push(`<value><boolean>${value ? 1 : 0}</boolean></value>`);
      return;
    case "undefined":
      out.push("<value><nil/></value>");
      return;
    case "object":
      break;
    default:
      throw new TypeError(
        `Cannot encode a ${typeof value}: XML-RPC has no such type`,
      );
  }
  if (value === null) {
    out.push("<value><nil/></value>");
    return;
  }
  if (value instanceof Date) {
    out.push(
      `<value><dateTime.iso8601>${
        encodeDate(value)
      }</dateTime.iso8601></value>`,
    );
    return;
  }
  if (value instanceof Uint8Array) {
    out.push(`<value><base64>${value.toBase64()}</base64></value>`);
    return;
  }
  if (depth >= maxDepth) {
    throw new RangeError(
      `Cannot encode the value: arrays and structs nest deeper than ${maxDepth} (or hold a cycle)`,
    );
  }
  if (Array.isArray(value)) {
    out.push("<value><array><data>");
    for (const item of value) encodeValue(item, out, depth + 1, maxDepth);
    out.push("</data></array></value>");
    return;
  }
  if (!isPlainObject(value)) {
    const name = value.constructor?.name ?? "object";
    throw new TypeError(
      `Cannot encode a ${name}: only plain objects become an XML-RPC struct; convert it first`,
    );
  }
  out.push("<value><struct>");
  for (const [name, member] of Object.entries(value)) {
    if (member === undefined) continue;
    out.push(
      "<member><name>",
      escapeText(name, "a struct member name"),
      "</name>",
    );
    encodeValue(member, out, depth + 1, maxDepth);
    out.push("</member>");
  }
  out.push("</struct></value>");
}

const METHOD_NAME = /^[A-Za-z0-9_.:/]{1,256}$/;

function checkMethodName(method: string): void {
  if (typeof method !== "string" || !METHOD_NAME.test(method)) {
    throw new TypeError(
      `Cannot encode the method name: expected 1 to 256 of A-Z a-z 0-9 _ . : /, got ${
        typeof method === "string"
          ? JSON.stringify(method.slice(0, 64))
          : typeof method
      }`,
    );
  }
}

/**
 * Encodes a `<methodCall>`.
 *
 * @param method The method name (A-Z, a-z, 0-9, `_`, `.`, `:`, `/`).
 * @param params The parameters, mapped as the module documentation says.
 * @param options Encoding limits.
 * @returns The XML document.
 * @throws {TypeError} When the name is invalid or a value has no XML-RPC type.
 * @throws {RangeError} When a number, date or string cannot be carried, or
 * nesting is deeper than `maxDepth`.
 *
 * @example
 * ```ts
 * import { encodeMethodCall } from "./xmlrpc.ts";
 *
 * console.log(encodeMethodCall("set", ["colour", { r: 1, g: 0.5 }]));
 * ```
 */
export function encodeMethodCall(
  method: string,
  params: readonly unknown[] = [],
  options: XmlRpcEncodeOptions = {},
): string {
  checkMethodName(method);
  const maxDepth = checkLimit(
    options.maxDepth ?? DEFAULT_MAX_DEPTH,
    "maxDepth",
  );
  const out = [
    `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>`,
  ];
  for (const param of params) {
    out.push("<param>");
    encodeValue(param, out, 0, maxDepth);
    out.push("</param>");
  }
  out.push("</params></methodCall>");
  return out.join("");
}

/**
 * Encodes a successful `<methodResponse>` carrying one value.
 *
 * @param value The result, mapped as the module documentation says.
 * @param options Encoding limits.
 * @returns The XML document.
 * @throws {TypeError} When a value has no XML-RPC type.
 * @throws {RangeError} When a number, date or string cannot be carried, or
 * nesting is deeper than `maxDepth`.
 *
 * @example
 * ```ts
 * import { encodeMethodResponse } from "./xmlrpc.ts";
 *
 * console.log(encodeMethodResponse([1, "two", null]));
 * ```
 */
export function encodeMethodResponse(
  value: unknown,
  options: XmlRpcEncodeOptions = {},
): string {
  const maxDepth = checkLimit(
    options.maxDepth ?? DEFAULT_MAX_DEPTH,
    "maxDepth",
  );
  const out = [`<?xml version="1.0"?><methodResponse><params><param>`];
  encodeValue(value, out, 0, maxDepth);
  out.push("</param></params></methodResponse>");
  return out.join("");
}

/**
 * Encodes a fault `<methodResponse>`.
 *
 * @param faultCode The code: an integer in the `int` range.
 * @param faultString The message (characters XML cannot carry are replaced
 * by U+FFFD, so a fault can always be sent).
 * @returns The XML document.
 * @throws {RangeError} When `faultCode` is not an `int`.
 *
 * @example
 * ```ts
 * import { encodeFault } from "./xmlrpc.ts";
 *
 * console.log(encodeFault(1, "KeyError: 'missing'"));
 * ```
 */
export function encodeFault(faultCode: number, faultString: string): string {
  if (
    !Number.isInteger(faultCode) || faultCode < INT_MIN || faultCode > INT_MAX
  ) {
    throw new RangeError(
      `Cannot encode the fault: faultCode must be an int, got ${faultCode}`,
    );
  }
  const text = String(faultString).toWellFormed()
    .replace(new RegExp(FORBIDDEN_CHARS.source, "g"), "\uFFFD");
  return `<?xml version="1.0"?><methodResponse><fault><value><struct><member><name>faultCode</name><value><int>${faultCode}</int></value></member><member><name>faultString</name><value><string>${
    escapeText(text, "the fault string")
  }</string></value></member></struct></value></fault></methodResponse>`;
}

// ---------------------------------------------------------------------------
// Decoding

// The decoder recurses once per level: keep far below the engine's stack.
const MAX_MAX_DEPTH = 1000;

function checkLimit(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot use ${what}: expected a positive integer, got ${value}`,
    );
  }
  if (what === "maxDepth" && value > MAX_MAX_DEPTH) {
    throw new RangeError(
      `Cannot use maxDepth: at most ${MAX_MAX_DEPTH}, got ${value}`,
    );
  }
  return value;
}

function isXmlSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

function isNameChar(code: number): boolean {
  return (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x30 && code <= 0x39) || code === 0x5f || code === 0x3a ||
    code === 0x2e || code === 0x2d || code > 0x7f;
}

function isValidXmlChar(code: number): boolean {
  return code === 0x9 || code === 0xa || code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff);
}

const PREDEFINED: Record<string, string> = {
  lt: "<",
  gt: ">",
  amp: "&",
  quot: '"',
  apos: "'",
};

function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

/** The refusal of a declared encoding other than UTF-8 (fault -32701). */
class UnsupportedEncoding extends ProtocolError {}

interface Tag {
  name: string;
  kind: "open" | "close" | "empty";
}

/** A recursive-descent reader of exactly the XML that XML-RPC uses. */
class Reader {
  readonly #s: string;
  readonly #maxDepth: number;
  #i = 0;
  #depth = 0;

  constructor(text: string, maxDepth: number) {
    this.#s = text;
    this.#maxDepth = maxDepth;
  }

  fail(detail: string, reason: "malformed" | "too-large" = "malformed"): never {
    throw new ProtocolError(
      `Cannot decode the XML-RPC message: ${detail} (at offset ${this.#i})`,
      reason,
    );
  }

  /** Checks the prolog: an optional XML declaration, in UTF-8. */
  prolog(): void {
    const s = this.#s;
    if (s.startsWith("<?xml") && isXmlSpace(s.charCodeAt(5))) {
      const end = s.indexOf("?>");
      if (end < 0) this.fail("the XML declaration is not closed");
      const decl = s.slice(0, end);
      const match = /encoding\s*=\s*["']([^"']*)["']/.exec(decl);
      if (match && !/^(utf-?8|us-ascii|ascii)$/i.test(match[1])) {
        throw new UnsupportedEncoding(
          `Cannot decode the XML-RPC message: the encoding ${
            quote(match[1])
          } is not supported; send UTF-8`,
          "malformed",
        );
      }
      this.#i = end + 2;
    }
  }

  /** Skips whitespace and comments; refuses DTDs and processing instructions. */
  misc(): void {
    const s = this.#s;
    while (this.#i < s.length) {
      if (isXmlSpace(s.charCodeAt(this.#i))) {
        this.#i++;
      } else if (s.startsWith("<!--", this.#i)) {
        this.#comment();
      } else if (s.startsWith("<!", this.#i) || s.startsWith("<?", this.#i)) {
        this.#refuseMarkup();
      } else {
        return;
      }
    }
  }

  #comment(): void {
    const end = this.#s.indexOf("-->", this.#i + 4);
    if (end < 0) this.fail("a comment is not closed");
    if (this.#s.slice(this.#i + 4, end).includes("--")) {
      this.fail("a comment contains '--'");
    }
    this.#i = end + 3;
  }

  #refuseMarkup(): never {
    const s = this.#s;
    if (s.startsWith("<!DOCTYPE", this.#i)) {
      this.fail(
        "a DOCTYPE is not allowed (no document type, entity declarations or external entities)",
      );
    }
    if (s.startsWith("<!ENTITY", this.#i)) {
      this.fail("an entity declaration is not allowed");
    }
    if (s.startsWith("<?", this.#i)) {
      this.fail("a processing instruction is not allowed here");
    }
    this.fail("a markup declaration ('<!') is not allowed");
  }

  /** Decodes character data: entity and character references. */
  chars(raw: string): string {
    if (raw.includes("\r")) {
      raw = raw.replaceAll("\r\n", "\n").replaceAll("\r", "\n");
    }
    let amp = raw.indexOf("&");
    if (amp < 0) return raw;
    let out = "";
    let from = 0;
    while (amp >= 0) {
      const semi = raw.indexOf(";", amp);
      if (semi < 0 || semi - amp > 12) {
        this.fail(
          "an '&' does not start a reference; write it as &amp;",
        );
      }
      const name = raw.slice(amp + 1, semi);
      let char = Object.hasOwn(PREDEFINED, name) ? PREDEFINED[name] : undefined;
      if (char === undefined) {
        const code = /^#[0-9]{1,7}$/.test(name)
          ? parseInt(name.slice(1), 10)
          : /^#x[0-9A-Fa-f]{1,6}$/.test(name)
          ? parseInt(name.slice(2), 16)
          : -1;
        if (code < 0) {
          this.fail(
            `the entity ${
              quote(`&${name};`)
            } is not allowed: only &lt; &gt; &amp; &quot; &apos; and numeric character references are`,
          );
        }
        if (!isValidXmlChar(code)) {
          this.fail(
            `the character reference ${
              quote(`&${name};`)
            } names a character XML 1.0 does not allow`,
          );
        }
        char = String.fromCodePoint(code);
      }
      out += raw.slice(from, amp) + char;
      from = semi + 1;
      amp = raw.indexOf("&", from);
    }
    return out + raw.slice(from);
  }

  /** Reads character data (with CDATA sections and comments) up to a tag. */
  text(): string {
    const s = this.#s;
    let out = "";
    for (;;) {
      const lt = s.indexOf("<", this.#i);
      if (lt < 0) {
        this.#i = s.length;
        this.fail("the document ends inside an element");
      }
      out += this.chars(s.slice(this.#i, lt));
      this.#i = lt;
      if (s.startsWith("<![CDATA[", lt)) {
        const end = s.indexOf("]]>", lt + 9);
        if (end < 0) this.fail("a CDATA section is not closed");
        out += s.slice(lt + 9, end).replaceAll("\r\n", "\n").replaceAll(
          "\r",
          "\n",
        );
        this.#i = end + 3;
      } else if (s.startsWith("<!--", lt)) {
        this.#comment();
      } else if (s.startsWith("<!", lt) || s.startsWith("<?", lt)) {
        this.#refuseMarkup();
      } else {
        return out;
      }
    }
  }

  /** Reads the tag at the cursor (after misc()). */
  tag(): Tag {
    const s = this.#s;
    if (this.#i >= s.length) {
      this.fail("the document ends where a tag was expected");
    }
    if (s.charCodeAt(this.#i) !== 0x3c) {
      this.fail(
        `expected a tag, found text ${quote(s.slice(this.#i, this.#i + 20))}`,
      );
    }
    let j = this.#i + 1;
    const close = s.charCodeAt(j) === 0x2f;
    if (close) j++;
    const start = j;
    while (j < s.length && isNameChar(s.charCodeAt(j))) j++;
    if (j === start) {
      this.#i = j;
      this.fail("expected an element name after '<'");
    }
    const name = s.slice(start, j);
    let kind: Tag["kind"] = close ? "close" : "open";
    for (;;) {
      const spaceStart = j;
      while (j < s.length && isXmlSpace(s.charCodeAt(j))) j++;
      const code = s.charCodeAt(j);
      if (code === 0x3e) { // >
        j++;
        break;
      }
      if (!close && code === 0x2f && s.charCodeAt(j + 1) === 0x3e) { // />
        kind = "empty";
        j += 2;
        break;
      }
      // An attribute: XML-RPC has none; accept and ignore well-formed ones.
      if (close || j === spaceStart || !isNameChar(code)) {
        this.#i = j;
        this.fail(
          `the tag <${close ? "/" : ""}${name.slice(0, 40)}> is malformed`,
        );
      }
      while (j < s.length && isNameChar(s.charCodeAt(j))) j++;
      while (j < s.length && isXmlSpace(s.charCodeAt(j))) j++;
      if (s.charCodeAt(j) !== 0x3d) {
        this.#i = j;
        this.fail(`an attribute in <${name.slice(0, 40)}> has no value`);
      }
      j++;
      while (j < s.length && isXmlSpace(s.charCodeAt(j))) j++;
      const q = s[j];
      if (q !== '"' && q !== "'") {
        this.#i = j;
        this.fail(`an attribute value in <${name.slice(0, 40)}> is not quoted`);
      }
      const end = s.indexOf(q, j + 1);
      if (end < 0) {
        this.#i = j;
        this.fail("an attribute value is not closed");
      }
      const value = s.slice(j + 1, end);
      if (value.includes("<")) {
        this.#i = j;
        this.fail("an attribute value contains '<'");
      }
      this.chars(value);
      j = end + 1;
    }
    this.#i = j;
    return { name, kind };
  }

  /** Reads an opening tag named `name`; returns true if it is `<name/>`. */
  open(name: string): boolean {
    this.misc();
    const at = this.#i;
    const tag = this.tag();
    if (tag.name !== name || tag.kind === "close") {
      this.#i = at;
      this.fail(`expected <${name}>, found ${describe(tag)}`);
    }
    return tag.kind === "empty";
  }

  /** Reads the closing tag `</name>`. */
  close(name: string): void {
    this.misc();
    const at = this.#i;
    const tag = this.tag();
    if (tag.name !== name || tag.kind !== "close") {
      this.#i = at;
      this.fail(`expected </${name}>, found ${describe(tag)}`);
    }
  }

  /** True when the next tag (after misc) closes an element. */
  atClose(): boolean {
    this.misc();
    return this.#s.startsWith("</", this.#i);
  }

  /** Reads the text content of a leaf element whose open tag was `tag`. */
  leaf(tag: Tag): string {
    if (tag.kind === "empty") return "";
    const text = this.text();
    this.close(tag.name);
    return text;
  }

  end(): void {
    this.misc();
    if (this.#i < this.#s.length) this.fail("content after the root element");
  }

  value(): XmlRpcValue {
    if (this.open("value")) return "";
    const text = this.text();
    const at = this.#i;
    const tag = this.tag();
    if (tag.kind === "close") {
      if (tag.name !== "value") {
        this.#i = at;
        this.fail(`expected </value>, found ${describe(tag)}`);
      }
      return text; // bare text is a string
    }
    if (!/^[ \t\n\r]*$/.test(text)) {
      this.#i = at;
      this.fail("a <value> mixes text with a typed value");
    }
    const value = this.typed(tag);
    this.close("value");
    return value;
  }

  typed(tag: Tag): XmlRpcValue {
    switch (tag.name) {
      case "string":
        return this.leaf(tag);
      case "int":
      case "i4": {
        const text = this.leaf(tag).trim();
        if (!/^[+-]?[0-9]{1,32}$/.test(text)) {
          this.fail(`<${tag.name}> holds ${quote(text)}, not an integer`);
        }
        const n = Number(text);
        if (n < INT_MIN || n > INT_MAX) {
          this.fail(
            `<${tag.name}> ${quote(text)} is outside -2147483648 to 2147483647`,
          );
        }
        return n === 0 ? 0 : n;
      }
      case "boolean": {
        const text = this.leaf(tag).trim();
        if (text !== "0" && text !== "1") {
          this.fail(`<boolean> holds ${quote(text)}; expected 0 or 1`);
        }
        return text === "1";
      }
      case "double": {
        const text = this.leaf(tag).trim();
        if (
          text.length > 400 ||
          !/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$/.test(text)
        ) {
          this.fail(`<double> holds ${quote(text)}, not a number`);
        }
        const n = Number(text);
        if (!Number.isFinite(n)) {
          this.fail(`<double> ${quote(text)} is out of range`);
        }
        return n;
      }
      case "dateTime.iso8601":
        return this.date(this.leaf(tag).trim());
      case "base64": {
        const text = this.leaf(tag).replace(/[ \t\n\r]+/g, "");
        if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
          this.fail("<base64> does not hold valid base64");
        }
        let bytes: Uint8Array | undefined;
        try {
          bytes = Uint8Array.fromBase64(text);
        } catch {
          // reported below
        }
        if (bytes === undefined) {
          this.fail("<base64> does not hold valid base64");
        }
        return bytes;
      }
      case "nil": {
        if (this.leaf(tag).trim() !== "") this.fail("<nil> is not empty");
        return null;
      }
      case "array":
        return this.array(tag);
      case "struct":
        return this.struct(tag);
      default:
        this.fail(`unknown value type <${tag.name.slice(0, 40)}>`);
    }
  }

  date(text: string): Date {
    const m =
      /^([0-9]{4})-?([0-9]{2})-?([0-9]{2})T([0-9]{2}):?([0-9]{2}):?([0-9]{2})(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?$/
        .exec(text);
    if (!m) {
      this.fail(
        `<dateTime.iso8601> holds ${quote(text)}; expected YYYYMMDDTHH:MM:SS`,
      );
    }
    const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
    if (
      month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
      minute > 59 || second > 59
    ) {
      this.fail(`<dateTime.iso8601> ${quote(text)} is not a valid time`);
    }
    const ms = m[7] ? Math.floor(Number(m[7]) * 1000) : 0;
    const date = new Date(0);
    date.setUTCFullYear(year, month - 1, day);
    date.setUTCHours(hour, minute, second, ms);
    if (date.getUTCDate() !== day) {
      this.fail(`<dateTime.iso8601> ${quote(text)} is not a valid date`);
    }
    let time = date.getTime();
    const zone = m[8];
    if (zone && zone !== "Z") {
      const sign = zone[0] === "-" ? -1 : 1;
      const hh = Number(zone.slice(1, 3));
      const mm = Number(zone.slice(-2));
      if (hh > 23 || mm > 59) {
        this.fail(`<dateTime.iso8601> ${quote(text)} has an invalid zone`);
      }
      time -= sign * (hh * 60 + mm) * 60_000;
    }
    // Checked in UTC, after the offset: a date outside the years 0000 to
    // 9999 could not be encoded again (a stored value never read back).
    const utcYear = new Date(time).getUTCFullYear();
    if (utcYear < 0 || utcYear > 9999) {
      this.fail(
        `<dateTime.iso8601> ${
          quote(text)
        } is outside the years 0000 to 9999 once its zone offset is applied (in UTC)`,
      );
    }
    return new Date(time);
  }

  #enter(): void {
    if (++this.#depth > this.#maxDepth) {
      this.fail(
        `arrays and structs nest deeper than ${this.#maxDepth}`,
        "too-large",
      );
    }
  }

  array(tag: Tag): XmlRpcValue[] {
    if (tag.kind === "empty") this.fail("<array/> has no <data>");
    this.#enter();
    const items: XmlRpcValue[] = [];
    if (!this.open("data")) {
      while (!this.atClose()) items.push(this.value());
      this.close("data");
    }
    this.close("array");
    this.#depth--;
    return items;
  }

  struct(tag: Tag): XmlRpcStruct {
    const struct: XmlRpcStruct = {};
    if (tag.kind === "empty") return struct;
    this.#enter();
    while (!this.atClose()) {
      if (this.open("member")) this.fail("<member/> has no name and value");
      const nameTag = this.#i;
      const name = this.open("name")
        ? ""
        : this.leaf({ name: "name", kind: "open" });
      if (Object.hasOwn(struct, name)) {
        this.#i = nameTag;
        this.fail(`the struct member ${quote(name)} appears twice`);
      }
      // defineProperty: a member named "__proto__" stays a plain member.
      Object.defineProperty(struct, name, {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.close("member");
    }
    this.close("struct");
    this.#depth--;
    return struct;
  }
}

function describe(tag: Tag): string {
  const name = tag.name.slice(0, 40);
  return tag.kind === "close" ? `</${name}>` : `<${name}>`;
}

/** The length of `text` in UTF-8, without encoding it. */
function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    // 2 bytes below U+0800; a surrogate is half of a 4-byte pair (a lone
    // one is refused later anyway); 3 bytes for the rest of the BMP.
    bytes += code < 0x800 || (code >= 0xd800 && code <= 0xdfff) ? 1 : 2;
  }
  return bytes;
}

/**
 * The size of `body` in UTF-8 bytes, as a refusal states it, when it is over
 * `max`; else null. A UTF-16 code unit is 1 to 3 bytes (a surrogate pair 4
 * for 2 units): a string is counted only when its length cannot decide.
 */
function oversize(body: string | Uint8Array, max: number): string | null {
  if (typeof body !== "string") {
    return body.byteLength > max ? String(body.byteLength) : null;
  }
  if (body.length > max) return `more than ${max}`;
  if (body.length * 3 <= max) return null;
  const bytes = utf8Length(body);
  return bytes > max ? String(bytes) : null;
}

function toText(
  body: string | Uint8Array,
  options: XmlRpcDecodeOptions,
): { text: string; maxDepth: number } {
  const maxBodySize = checkLimit(
    options.maxBodySize ?? DEFAULT_MAX_BODY_SIZE,
    "maxBodySize",
  );
  const maxDepth = checkLimit(
    options.maxDepth ?? DEFAULT_MAX_DEPTH,
    "maxDepth",
  );
  const size = oversize(body, maxBodySize);
  if (size !== null) {
    throw new ProtocolError(
      `Cannot decode the XML-RPC message: it is ${size} bytes, over the ${maxBodySize}-byte limit (maxBodySize)`,
      "too-large",
    );
  }
  let text: string;
  if (typeof body === "string") {
    text = body.charCodeAt(0) === 0xfeff ? body.slice(1) : body;
  } else {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    } catch (cause) {
      throw new ProtocolError(
        "Cannot decode the XML-RPC message: it is not valid UTF-8",
        "malformed",
        { cause },
      );
    }
  }
  const bad = FORBIDDEN_CHARS.exec(text);
  if (bad || !text.isWellFormed()) {
    throw new ProtocolError(
      `Cannot decode the XML-RPC message: it holds a character XML 1.0 does not allow${
        bad
          ? ` (U+${
            bad[0].charCodeAt(0).toString(16).padStart(4, "0").toUpperCase()
          } at offset ${bad.index})`
          : ""
      }`,
      "malformed",
    );
  }
  return { text, maxDepth };
}

/**
 * Decodes a `<methodCall>`.
 *
 * @param body The document, as text or UTF-8 bytes.
 * @param options Limits.
 * @returns The method name and the parameters.
 * @throws {ProtocolError} When the document is not strict XML-RPC, is over a
 * limit (`"too-large"`), or holds a DOCTYPE, a disallowed entity or an
 * out-of-range number (`"malformed"`).
 *
 * @example
 * ```ts
 * import { decodeMethodCall } from "./xmlrpc.ts";
 *
 * const call = decodeMethodCall(
 *   "<methodCall><methodName>get</methodName><params>" +
 *     "<param><value>colour</value></param></params></methodCall>",
 * );
 * console.log(call.method, call.params); // get [ "colour" ]
 * ```
 */
export function decodeMethodCall(
  body: string | Uint8Array,
  options: XmlRpcDecodeOptions = {},
): XmlRpcCall {
  const { text, maxDepth } = toText(body, options);
  const reader = new Reader(text, maxDepth);
  reader.prolog();
  if (reader.open("methodCall")) reader.fail("<methodCall/> is empty");
  if (reader.open("methodName")) reader.fail("<methodName/> is empty");
  const method = reader.leaf({ name: "methodName", kind: "open" });
  if (!METHOD_NAME.test(method)) {
    reader.fail(
      `the method name ${quote(method)} is not 1 to 256 of A-Z a-z 0-9 _ . : /`,
    );
  }
  const params: XmlRpcValue[] = [];
  if (!reader.atClose() && !reader.open("params")) {
    while (!reader.atClose()) {
      if (reader.open("param")) reader.fail("<param/> has no value");
      params.push(reader.value());
      reader.close("param");
    }
    reader.close("params");
  }
  reader.close("methodCall");
  reader.end();
  return { method, params };
}

/**
 * Decodes a `<methodResponse>`: returns its value, or throws its fault.
 *
 * @param body The document, as text or UTF-8 bytes.
 * @param options Limits.
 * @returns The returned value.
 * @throws {XmlRpcFault} When the response is a fault.
 * @throws {ProtocolError} When the document is not strict XML-RPC or is
 * over a limit.
 *
 * @example
 * ```ts
 * import { decodeMethodResponse, encodeMethodResponse } from "./xmlrpc.ts";
 *
 * console.log(decodeMethodResponse(encodeMethodResponse({ ok: true })));
 * ```
 */
export function decodeMethodResponse(
  body: string | Uint8Array,
  options: XmlRpcDecodeOptions = {},
): XmlRpcValue {
  const { text, maxDepth } = toText(body, options);
  const reader = new Reader(text, maxDepth);
  reader.prolog();
  if (reader.open("methodResponse")) reader.fail("<methodResponse/> is empty");
  reader.misc();
  const tag = reader.tag();
  let result: XmlRpcValue;
  if (tag.name === "params" && tag.kind === "open") {
    if (reader.open("param")) reader.fail("<param/> has no value");
    result = reader.value();
    reader.close("param");
    reader.close("params");
    reader.close("methodResponse");
    reader.end();
    return result;
  }
  if (tag.name !== "fault" || tag.kind !== "open") {
    reader.fail(`expected <params> or <fault>, found ${describe(tag)}`);
  }
  const fault = reader.value();
  reader.close("fault");
  reader.close("methodResponse");
  reader.end();
  if (
    fault === null || typeof fault !== "object" || Array.isArray(fault) ||
    fault instanceof Date || fault instanceof Uint8Array ||
    typeof fault.faultCode !== "number" || typeof fault.faultString !== "string"
  ) {
    throw new ProtocolError(
      "Cannot decode the XML-RPC message: a <fault> must be a struct with an int faultCode and a string faultString",
      "malformed",
    );
  }
  throw new XmlRpcFault(fault.faultCode, fault.faultString);
}

// ---------------------------------------------------------------------------
// Bounded bodies

class TooLarge extends ProtocolError {}

/** Most bytes of an HTTP error's body the client reads for its message. */
const ERROR_BODY_LIMIT = 4096;

/**
 * Reads a body, refusing before buffering more than `max` bytes; with
 * `truncate`, keeps the first `max` bytes of a longer body instead and
 * cancels the rest. Stops with the signal's reason when `signal` aborts.
 */
async function readBody(
  message: Request | Response,
  max: number,
  what: string,
  truncate = false,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    new TooLarge(
      `Cannot read ${what}: it is ${size} bytes, over the ${max}-byte limit (maxBodySize)`,
      "too-large",
    );
  const body = message.body;
  const contentLength = message.headers.get("content-length");
  const declared = contentLength === null ? NaN : Number(contentLength);
  if (declared > max && !truncate) {
    await body?.cancel().catch(() => {});
    throw tooLarge(contentLength!);
  }
  if (body === null) return new Uint8Array(0);
  if (/^[0-9]+$/.test(contentLength ?? "") && declared <= max) {
    // A declared length within the limit: the HTTP layer (hyper, node)
    // enforces the framing, so the body cannot run past it. Read it whole,
    // which is much faster than chunk by chunk; still check, for a
    // hand-made Request whose header does not match its body.
    const bytes = await raceSignal(message.bytes(), signal);
    if (bytes.byteLength > max) {
      if (truncate) return bytes.subarray(0, max);
      throw tooLarge(String(bytes.byteLength));
    }
    return bytes;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  const onAbort = () => reader.cancel(signal!.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const { value, done } = await raceSignal(reader.read(), signal);
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        await reader.cancel().catch(() => {});
        if (!truncate) throw tooLarge(`more than ${max}`);
        chunks.push(value.subarray(0, value.byteLength - (size - max)));
        size = max;
        break;
      }
      chunks.push(value);
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Handler

/**
 * A method registered with {@linkcode createXmlRpcHandler}. It receives the
 * decoded parameters, which come from the network: check their types.
 * Return any value the mapping allows (`undefined` becomes `<nil/>`); throw
 * an {@linkcode XmlRpcFault} to choose the fault, any other error becomes
 * fault 1 with `"<name>: <message>"`, as Python's server does.
 */
export type XmlRpcMethod = (...params: XmlRpcValue[]) => unknown;

/** Options for {@linkcode createXmlRpcHandler}. */
export interface CreateXmlRpcHandlerOptions {
  /**
   * Largest request body accepted, in bytes; a bigger one is answered with
   * HTTP 413 before it is buffered.
   *
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * Deepest nesting of arrays and structs accepted.
   *
   * @default {64}
   */
  maxDepth?: number;
  /**
   * Deadline for receiving the request body, in milliseconds, from the
   * moment the handler is called (`Infinity` for none). A client that sends
   * it slower (or stops halfway) is answered with HTTP 408 and
   * `connection: close`, and what it sent is dropped: it cannot hold the
   * handler. Closing its socket is the HTTP server's part: `serveHttps()`
   * does, after its `requestTimeout`; `Deno.serve` has no such deadline, so
   * put a proxy with one in front of it for untrusted clients. The methods
   * themselves are not bounded by it.
   *
   * @default {30000}
   */
  bodyTimeout?: number;
  /**
   * Answer `system.listMethods` with the registered names.
   *
   * @default {true}
   */
  introspection?: boolean;
  /**
   * Called with every error a method throws that is not an
   * {@linkcode XmlRpcFault}, and with encoding failures, for logging.
   * Exceptions thrown by the hook are ignored: the client still gets its
   * fault.
   *
   * @default {undefined}
   */
  onError?: (error: unknown, method: string) => void;
}

const XML_HEADERS = { "content-type": "text/xml; charset=utf-8" };

function xmlResponse(xml: string): Response {
  const body = utf8(xml);
  return new Response(body, {
    headers: { ...XML_HEADERS, "content-length": String(body.byteLength) },
  });
}

function faultResponse(code: number, message: string): Response {
  return xmlResponse(encodeFault(code, message));
}

/**
 * What a fault says about a thrown value: `"<name>: <message>"` for an
 * `Error` (just the message with `withName` false), its string form for
 * anything else. Never throws, whatever was thrown (a null-prototype
 * object, a getter that throws).
 */
function describeThrown(error: unknown, withName: boolean): string {
  try {
    if (error instanceof Error) {
      return withName
        ? `${String(error.name)}: ${String(error.message)}`
        : String(error.message);
    }
    return withName ? `Error: ${String(error)}` : String(error);
  } catch {
    return withName
      ? "Error: a thrown value with no string form"
      : "a thrown value with no string form";
  }
}

/**
 * Creates a `Request` -> `Response` handler serving `methods` over XML-RPC:
 * give it to `Deno.serve`, or to an HTTPS server that requires client
 * certificates (see `examples/kv_server.ts`).
 *
 * Only `POST` is served (else HTTP 405). A body over `maxBodySize` is
 * answered with HTTP 413 without being buffered, one that has not arrived
 * within `bodyTimeout` with HTTP 408; any other refusal (not
 * XML-RPC, a DOCTYPE, a disallowed entity, nesting over `maxDepth`, an
 * out-of-range number) with fault -32700; an unknown method with fault
 * -32601; an error thrown by a method with its {@linkcode XmlRpcFault}, or
 * fault 1 carrying `"<name>: <message>"` (as Python's `SimpleXMLRPCServer`
 * does, so do not put secrets in error messages); a result that cannot be
 * encoded with fault -32603.
 *
 * @param methods The methods, by name (own properties only).
 * @param options Limits and hooks.
 * @returns The handler.
 * @throws {RangeError} When a limit is not a positive integer, or
 * `bodyTimeout` is not above 0.
 * @throws {TypeError} When a method is not a function.
 *
 * @example Serve two methods
 * ```ts
 * import { encodeMethodCall, decodeMethodResponse, createXmlRpcHandler } from "./xmlrpc.ts";
 *
 * const handler = createXmlRpcHandler({
 *   echo: (value) => value,
 *   now: () => new Date(),
 * });
 * const response = await handler(
 *   new Request("http://localhost/", {
 *     method: "POST",
 *     body: encodeMethodCall("echo", [[1, "a", null]]),
 *   }),
 * );
 * console.log(decodeMethodResponse(await response.text()));
 * ```
 */
export function createXmlRpcHandler(
  methods: Record<string, XmlRpcMethod>,
  options: CreateXmlRpcHandlerOptions = {},
): (request: Request) => Promise<Response> {
  const maxBodySize = checkLimit(
    options.maxBodySize ?? DEFAULT_MAX_BODY_SIZE,
    "maxBodySize",
  );
  const maxDepth = checkLimit(
    options.maxDepth ?? DEFAULT_MAX_DEPTH,
    "maxDepth",
  );
  const bodyTimeout = checkTimeout(
    options.bodyTimeout,
    DEFAULT_BODY_TIMEOUT,
    "bodyTimeout",
  );
  const introspection = options.introspection ?? true;
  const hook = options.onError;
  const onError = (error: unknown, method: string): void => {
    try {
      hook?.(error, method);
    } catch {
      // A failing hook must not cost the client its answer.
    }
  };
  const table = new Map<string, XmlRpcMethod>();
  for (const [name, fn] of Object.entries(methods)) {
    if (typeof fn !== "function") {
      throw new TypeError(
        `Cannot register the method ${
          quote(name)
        }: expected a function, got ${typeof fn}`,
      );
    }
    table.set(name, fn);
  }
  if (introspection && !table.has("system.listMethods")) {
    const names = [...table.keys(), "system.listMethods"].sort();
    table.set("system.listMethods", () => names);
  }

  return async (request: Request): Promise<Response> => {
    if (request.method !== "POST") {
      await request.body?.cancel().catch(() => {});
      return new Response(
        "Cannot serve the request: XML-RPC accepts only POST\n",
        { status: 405, headers: { allow: "POST" } },
      );
    }
    let call: XmlRpcCall;
    // Not request.signal: Deno.serve aborts it after every response, and a
    // client that goes away fails the body read on its own.
    const limit = deadline(
      bodyTimeout,
      undefined,
      "read the XML-RPC request body",
    );
    try {
      const body = await readBody(
        request,
        maxBodySize,
        "the request body",
        false,
        limit.signal,
      );
      call = decodeMethodCall(body, { maxBodySize, maxDepth });
    } catch (error) {
      if (limit.signal.aborted && error === limit.signal.reason) {
        return new Response(`${(error as DOMException).message}\n`, {
          status: 408,
          headers: { connection: "close" },
        });
      }
      if (error instanceof TooLarge) {
        return new Response(`${error.message}\n`, {
          status: 413,
          headers: { connection: "close" },
        });
      }
      if (error instanceof ProtocolError) {
        return faultResponse(
          error instanceof UnsupportedEncoding
            ? XmlRpcFaultCode.UNSUPPORTED_ENCODING
            : XmlRpcFaultCode.NOT_WELLFORMED,
          error.message,
        );
      }
      throw error; // the connection failed while reading
    } finally {
      limit[Symbol.dispose]();
    }
    const fn = table.get(call.method);
    if (fn === undefined) {
      return faultResponse(
        XmlRpcFaultCode.METHOD_NOT_FOUND,
        `Cannot call ${quote(call.method)}: no such method`,
      );
    }
    let result: unknown;
    try {
      result = await fn(...call.params);
    } catch (error) {
      if (
        error instanceof XmlRpcFault && Number.isInteger(error.faultCode) &&
        error.faultCode >= INT_MIN && error.faultCode <= INT_MAX
      ) {
        return faultResponse(error.faultCode, error.faultString);
      }
      onError(error, call.method);
      return faultResponse(
        XmlRpcFaultCode.APPLICATION,
        describeThrown(error, true),
      );
    }
    try {
      return xmlResponse(encodeMethodResponse(result, { maxDepth }));
    } catch (error) {
      onError(error, call.method);
      return faultResponse(
        XmlRpcFaultCode.INTERNAL_ERROR,
        `Cannot encode the result of ${quote(call.method)}: ${
          describeThrown(error, false)
        }`,
      );
    }
  };
}

// ---------------------------------------------------------------------------
// Client

/** Options for {@linkcode createXmlRpcClient}. */
export interface CreateXmlRpcClientOptions {
  /**
   * PEM certificates trusted to sign the server's certificate, in addition
   * to Deno's default roots (its bundled Mozilla roots, or the system store
   * with `DENO_TLS_CA_STORE=system`); for a development CA from
   * `deno task certs`.
   *
   * @default {[]}
   */
  caCerts?: string[];
  /**
   * PEM client certificate chain to present (mutual TLS); needs `key`.
   *
   * @default {undefined}
   */
  cert?: string;
  /**
   * PEM private key of `cert`.
   *
   * @default {undefined}
   */
  key?: string;
  /**
   * Deadline for each call, in milliseconds (connect, send, answer).
   *
   * @default {10000}
   */
  timeout?: number;
  /**
   * Aborts every call in flight and every later one.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Largest response body accepted, in bytes.
   *
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * Deepest nesting of arrays and structs accepted in a response.
   *
   * @default {64}
   */
  maxDepth?: number;
}

/**
 * An XML-RPC client from {@linkcode createXmlRpcClient}. It keeps its
 * connections alive between calls; close it (or `await using` it) when
 * done.
 */
export interface XmlRpcClient extends AsyncDisposable, Disposable {
  /** The server's URL. */
  readonly url: URL;
  /**
   * Calls `method` with `params`.
   *
   * @param method The method name.
   * @param params The parameters.
   * @returns The value the server returned.
   * @throws {XmlRpcFault} When the server answers a fault.
   * @throws {ProtocolError} When the server answers something that is not
   * XML-RPC, or an HTTP error status.
   * @throws {DOMException} `TimeoutError` after `timeout`, or the signal's
   * reason.
   */
  call(method: string, ...params: unknown[]): Promise<XmlRpcValue>;
  /** Closes the pooled connections. */
  close(): void;
}

class Client implements XmlRpcClient {
  readonly url: URL;
  readonly #http: Deno.HttpClient;
  readonly #timeout: number;
  readonly #signal?: AbortSignal;
  readonly #decode: XmlRpcDecodeOptions;
  #closed = false;

  constructor(url: URL, options: CreateXmlRpcClientOptions) {
    this.url = url;
    this.#timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
    this.#signal = options.signal;
    this.#decode = {
      maxBodySize: checkLimit(
        options.maxBodySize ?? DEFAULT_MAX_BODY_SIZE,
        "maxBodySize",
      ),
      maxDepth: checkLimit(options.maxDepth ?? DEFAULT_MAX_DEPTH, "maxDepth"),
    };
    if ((options.cert === undefined) !== (options.key === undefined)) {
      throw new TypeError(
        "Cannot create the XML-RPC client: cert and key go together; pass both or neither",
      );
    }
    this.#http = options.cert !== undefined
      ? Deno.createHttpClient({
        caCerts: options.caCerts,
        cert: options.cert,
        key: options.key!,
      })
      : Deno.createHttpClient({ caCerts: options.caCerts });
  }

  async call(method: string, ...params: unknown[]): Promise<XmlRpcValue> {
    if (this.#closed) {
      throw new TypeError(
        `Cannot call ${quote(method)}: the XML-RPC client is closed`,
      );
    }
    const body = encodeMethodCall(method, params);
    using d = deadline(this.#timeout, this.#signal, `call ${quote(method)}`);
    try {
      const response = await fetch(this.url, {
        method: "POST",
        headers: { "content-type": "text/xml" },
        body,
        client: this.#http,
        signal: d.signal,
      });
      if (response.status !== 200) {
        // Only the start, for the message: an error page can be endless.
        const head = await readBody(
          response,
          ERROR_BODY_LIMIT,
          "the error body",
          true,
        );
        const detail = new TextDecoder().decode(head).slice(0, 200).trim();
        throw new ProtocolError(
          `Cannot call ${
            quote(method)
          }: the server answered HTTP ${response.status}${
            detail ? `: ${detail}` : ""
          }`,
          response.status === 413 ? "too-large" : "malformed",
        );
      }
      const bytes = await readBody(
        response,
        this.#decode.maxBodySize!,
        "the response body",
      );
      return decodeMethodResponse(bytes, this.#decode);
    } catch (error) {
      if (d.signal.aborted) throw d.signal.reason;
      throw error;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#http.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/**
 * Creates an XML-RPC client for `url` on `fetch`, with its own connection
 * pool (`Deno.createHttpClient`): calls reuse kept-alive connections, and
 * `caCerts`, `cert` and `key` set the trusted CAs and the client
 * certificate for mutual TLS.
 *
 * @param url The server's URL (`https://` or `http://`).
 * @param options TLS material, deadline, signal and limits.
 * @returns The client; close it when done.
 * @throws {TypeError} When `url` is not http(s), or only one of `cert` and
 * `key` is given.
 * @throws {RangeError} When `timeout` or a limit is out of range.
 *
 * @example Call a server, catch a fault
 * ```ts
 * import { XmlRpcFault, createXmlRpcClient, createXmlRpcHandler } from "./xmlrpc.ts";
 *
 * const store = new Map<string, unknown>();
 * await using server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   createXmlRpcHandler({
 *     get(key) {
 *       if (!store.has(String(key))) {
 *         throw new XmlRpcFault(1, `KeyError: '${key}'`);
 *       }
 *       return store.get(String(key));
 *     },
 *   }),
 * );
 * await using client = createXmlRpcClient(`http://127.0.0.1:${server.addr.port}/`, {
 *   timeout: 5000,
 * });
 * try {
 *   await client.call("get", "missing");
 * } catch (error) {
 *   if (!(error instanceof XmlRpcFault)) throw error;
 *   console.log(error.faultCode, error.faultString); // 1 KeyError: 'missing'
 * }
 * ```
 */
export function createXmlRpcClient(
  url: string | URL,
  options: CreateXmlRpcClientOptions = {},
): XmlRpcClient {
  const parsed = new URL(url);
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    throw new TypeError(
      `Cannot create the XML-RPC client: expected an https:// or http:// URL, got ${
        quote(parsed.protocol)
      }`,
    );
  }
  return new Client(parsed, options);
}
