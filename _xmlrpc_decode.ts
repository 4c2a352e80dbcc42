// Private: the decoding of XML-RPC documents for xmlrpc.ts: a
// `<methodCall>` into its method name and parameters, a `<methodResponse>`
// into its value or its fault (thrown as an XmlRpcFault), each value by the
// mapping xmlrpc.ts documents. The XML itself is read by XmlReader
// (_xml_reader.ts); the size and the nesting are bounded (`maxBodySize`,
// `maxDepth`). xmlrpc.ts imports this file: what comes from it
// (XmlRpcFault) is used only inside functions. (About 400 lines: one
// decoder per XML-RPC type, and the checks of the document as a whole.)

import { ProtocolError } from "./errors.ts";
import { checkLimit } from "./_options.ts";
import { describe, type Tag, XmlReader } from "./_xml_reader.ts";
import {
  checkMaxDepth,
  DEFAULT_MAX_BODY_SIZE,
  FORBIDDEN_CHARS,
  I8_RANGE,
  INT_RANGE,
  METHOD_NAME,
  quote,
} from "./_xmlrpc_rules.ts";
import {
  type XmlRpcCall,
  type XmlRpcDecodeOptions,
  XmlRpcFault,
  type XmlRpcStruct,
  type XmlRpcValue,
} from "./xmlrpc.ts";

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** `<int>`/`<i4>` text: a sign and up to 32 digits, range-checked after. */
const INT_TEXT = /^[+-]?[0-9]{1,32}$/;
/** `<i8>` text: a sign and up to 40 digits, range-checked after. */
const I8_TEXT = /^[+-]?[0-9]{1,40}$/;

/** Decodes XML-RPC values at the reader's cursor, bounding their nesting. */
class ValueDecoder {
  readonly #r: XmlReader;
  readonly #maxDepth: number;
  #depth = 0;

  constructor(reader: XmlReader, maxDepth: number) {
    this.#r = reader;
    this.#maxDepth = maxDepth;
  }

  /** Reads a `<value>` element. */
  value(): XmlRpcValue {
    if (this.#r.open("value")) return "";
    const text = this.#r.text();
    const at = this.#r.offset;
    const tag = this.#r.tag();
    if (tag.kind === "close") {
      if (tag.name !== "value") {
        this.#r.failAt(at, `expected </value>, found ${describe(tag)}`);
      }
      return text; // bare text is a string
    }
    if (!/^[ \t\n\r]*$/.test(text)) {
      this.#r.failAt(at, "a <value> mixes text with a typed value");
    }
    const value = this.typed(tag);
    this.#r.close("value");
    return value;
  }

  typed(tag: Tag): XmlRpcValue {
    // Apache XML-RPC writes its extensions with a prefix (`<ex:nil/>`,
    // `<ex:i8>`); Python reads them by their local name, so do we.
    const local = /^[A-Za-z_][A-Za-z0-9_.-]*:(nil|i8)$/.exec(tag.name)?.[1];
    switch (local ?? tag.name) {
      case "string":
        return this.#r.leaf(tag);
      case "int":
      case "i4": {
        const n = Number(
          this.#integer(tag, INT_TEXT, INT_RANGE[0], INT_RANGE[1]),
        );
        return n === 0 ? 0 : n;
      }
      case "i8": {
        const n = this.#integer(tag, I8_TEXT, I8_RANGE[0], I8_RANGE[1]);
        // A number when it is exact as one, else a bigint.
        return n >= MIN_SAFE && n <= MAX_SAFE ? Number(n) : n;
      }
      case "boolean": {
        const text = this.#r.leaf(tag).trim();
        if (text !== "0" && text !== "1") {
          this.#r.fail(`<boolean> holds ${quote(text)}; expected 0 or 1`);
        }
        return text === "1";
      }
      case "double": {
        const text = this.#r.leaf(tag).trim();
        if (
          text.length > 400 ||
          !/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$/.test(text)
        ) {
          this.#r.fail(`<double> holds ${quote(text)}, not a number`);
        }
        const n = Number(text);
        if (!Number.isFinite(n)) {
          this.#r.fail(`<double> ${quote(text)} is out of range`);
        }
        return n;
      }
      case "dateTime.iso8601":
        return this.date(this.#r.leaf(tag).trim());
      case "base64": {
        const text = this.#r.leaf(tag).replace(/[ \t\n\r]+/g, "");
        if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
          this.#r.fail("<base64> does not hold valid base64");
        }
        let bytes: Uint8Array | undefined;
        try {
          bytes = Uint8Array.fromBase64(text);
        } catch {
          // reported below
        }
        if (bytes === undefined) {
          this.#r.fail("<base64> does not hold valid base64");
        }
        return bytes;
      }
      case "nil": {
        if (this.#r.leaf(tag).trim() !== "") this.#r.fail("<nil> is not empty");
        return null;
      }
      case "array":
        return this.array(tag);
      case "struct":
        return this.struct(tag);
      default:
        this.#r.fail(`unknown value type <${tag.name.slice(0, 40)}>`);
    }
  }

  date(text: string): Date {
    const m =
      /^([0-9]{4})-?([0-9]{2})-?([0-9]{2})T([0-9]{2}):?([0-9]{2}):?([0-9]{2})(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?$/
        .exec(text);
    if (!m) {
      this.#r.fail(
        `<dateTime.iso8601> holds ${quote(text)}; expected YYYYMMDDTHH:MM:SS`,
      );
    }
    const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
    if (
      month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
      minute > 59 || second > 59
    ) {
      this.#r.fail(`<dateTime.iso8601> ${quote(text)} is not a valid time`);
    }
    const ms = m[7] ? Math.floor(Number(m[7]) * 1000) : 0;
    const date = new Date(0);
    date.setUTCFullYear(year, month - 1, day);
    date.setUTCHours(hour, minute, second, ms);
    if (date.getUTCDate() !== day) {
      this.#r.fail(`<dateTime.iso8601> ${quote(text)} is not a valid date`);
    }
    let time = date.getTime();
    const zone = m[8];
    if (zone && zone !== "Z") {
      const sign = zone[0] === "-" ? -1 : 1;
      const hh = Number(zone.slice(1, 3));
      const mm = Number(zone.slice(-2));
      if (hh > 23 || mm > 59) {
        this.#r.fail(`<dateTime.iso8601> ${quote(text)} has an invalid zone`);
      }
      time -= sign * (hh * 60 + mm) * 60_000;
    }
    // Checked in UTC, after the offset: a date outside the years 0000 to
    // 9999 could not be encoded again (a stored value never read back).
    const utcYear = new Date(time).getUTCFullYear();
    if (utcYear < 0 || utcYear > 9999) {
      this.#r.fail(
        `<dateTime.iso8601> ${
          quote(text)
        } is outside the years 0000 to 9999 once its zone offset is applied (in UTC)`,
      );
    }
    return new Date(time);
  }

  /**
   * The integer in `tag`, written as `pattern` allows (a bounded count of
   * digits, so BigInt() costs little), within `min` to `max`.
   */
  #integer(tag: Tag, pattern: RegExp, min: bigint, max: bigint): bigint {
    const text = this.#r.leaf(tag).trim();
    if (!pattern.test(text)) {
      this.#r.fail(`<${tag.name}> holds ${quote(text)}, not an integer`);
    }
    const n = BigInt(text);
    if (n < min || n > max) {
      this.#r.fail(`<${tag.name}> ${quote(text)} is outside ${min} to ${max}`);
    }
    return n;
  }

  #enter(): void {
    if (++this.#depth > this.#maxDepth) {
      this.#r.fail(
        `arrays and structs nest deeper than ${this.#maxDepth}`,
        "too-large",
      );
    }
  }

  array(tag: Tag): XmlRpcValue[] {
    if (tag.kind === "empty") this.#r.fail("<array/> has no <data>");
    this.#enter();
    const items: XmlRpcValue[] = [];
    if (!this.#r.open("data")) {
      while (!this.#r.atClose()) items.push(this.value());
      this.#r.close("data");
    }
    this.#r.close("array");
    this.#depth--;
    return items;
  }

  struct(tag: Tag): XmlRpcStruct {
    const struct: XmlRpcStruct = {};
    if (tag.kind === "empty") return struct;
    this.#enter();
    while (!this.#r.atClose()) {
      if (this.#r.open("member")) {
        this.#r.fail("<member/> has no name and value");
      }
      const nameTag = this.#r.offset;
      const name = this.#r.open("name")
        ? ""
        : this.#r.leaf({ name: "name", kind: "open" });
      if (Object.hasOwn(struct, name)) {
        this.#r.failAt(
          nameTag,
          `the struct member ${quote(name)} appears twice`,
        );
      }
      // defineProperty: a member named "__proto__" stays a plain member.
      Object.defineProperty(struct, name, {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.#r.close("member");
    }
    this.#r.close("struct");
    this.#depth--;
    return struct;
  }
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

/**
 * The document as text, checked against `maxBodySize` before it is decoded
 * from UTF-8 and for characters XML 1.0 does not allow; a reader on it,
 * with its prolog read and its root element `root` opened, and a value
 * decoder bounded by `maxDepth`.
 */
function openDocument(
  body: string | Uint8Array,
  options: XmlRpcDecodeOptions,
  root: string,
): { reader: XmlReader; values: ValueDecoder } {
  const maxBodySize = checkLimit(
    options.maxBodySize,
    DEFAULT_MAX_BODY_SIZE,
    "maxBodySize",
  );
  const maxDepth = checkMaxDepth(options.maxDepth);
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
  const reader = new XmlReader(text);
  reader.prolog();
  if (reader.open(root)) reader.fail(`<${root}/> is empty`);
  return { reader, values: new ValueDecoder(reader, maxDepth) };
}

/** Decodes a `<methodCall>` (see decodeMethodCall() in xmlrpc.ts). */
export function decodeCall(
  body: string | Uint8Array,
  options: XmlRpcDecodeOptions,
): XmlRpcCall {
  const { reader, values } = openDocument(body, options, "methodCall");
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
      params.push(values.value());
      reader.close("param");
    }
    reader.close("params");
  }
  reader.close("methodCall");
  reader.end();
  return { method, params };
}

/**
 * Decodes a `<methodResponse>`: returns its value, or throws its fault (see
 * decodeMethodResponse() in xmlrpc.ts).
 */
export function decodeResponse(
  body: string | Uint8Array,
  options: XmlRpcDecodeOptions,
): XmlRpcValue {
  const { reader, values } = openDocument(body, options, "methodResponse");
  reader.misc();
  const tag = reader.tag();
  let result: XmlRpcValue;
  if (tag.name === "params" && tag.kind === "open") {
    if (reader.open("param")) reader.fail("<param/> has no value");
    result = values.value();
    reader.close("param");
    reader.close("params");
    reader.close("methodResponse");
    reader.end();
    return result;
  }
  if (tag.name !== "fault" || tag.kind !== "open") {
    reader.fail(`expected <params> or <fault>, found ${describe(tag)}`);
  }
  const fault = values.value();
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
