// Private: the encoding of XML-RPC documents for xmlrpc.ts: a
// `<methodCall>`, a `<methodResponse>` carrying one value, a fault, each
// value by the mapping xmlrpc.ts documents. Refuses (TypeError,
// RangeError) what XML-RPC cannot carry: NaN, Infinity, a bigint outside
// the `<i8>` range, characters XML 1.0 cannot carry, class instances,
// nesting past `maxDepth` (which also catches cycles). xmlrpc.ts imports
// this file: what comes from it (XmlRpcDouble) is used only inside
// functions.

import {
  checkMaxDepth,
  FORBIDDEN_CHARS,
  I8_MAX,
  I8_MIN,
  INT_MAX,
  INT_MIN,
  INT_RANGE,
  METHOD_NAME,
} from "./_xmlrpc_rules.ts";
import { XmlRpcDouble, type XmlRpcEncodeOptions } from "./xmlrpc.ts";

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

/**
 * A double as Python's `repr(float)` writes the common ones: `3.0` for a
 * whole number below 1e16, JavaScript's shortest form (`0.1`, `1e+300`)
 * otherwise.
 */
function formatDouble(value: number): string {
  if (!Number.isFinite(value)) {
    throw new RangeError(
      `Cannot encode the number ${value}: XML-RPC has no NaN or Infinity`,
    );
  }
  if (Object.is(value, -0)) return "-0.0";
  return Number.isInteger(value) && Math.abs(value) < 1e16
    ? value.toFixed(1)
    : String(value);
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
      if (value < I8_MIN || value > I8_MAX) {
        throw new RangeError(
          `Cannot encode the bigint ${value}: XML-RPC integers end at <i8>, -9223372036854775808 to 9223372036854775807; send it as a string`,
        );
      }
      out.push(
        value >= INT_RANGE[0] && value <= INT_RANGE[1]
          ? `<value><int>${value}</int></value>`
          : `<value><i8>${value}</i8></value>`,
      );
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
  if (value instanceof XmlRpcDouble) {
    out.push(`<value><double>${formatDouble(value.value)}</double></value>`);
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

/** Encodes a `<methodCall>` (see encodeMethodCall() in xmlrpc.ts). */
export function encodeCall(
  method: string,
  params: readonly unknown[],
  options: XmlRpcEncodeOptions,
): string {
  checkMethodName(method);
  const maxDepth = checkMaxDepth(options.maxDepth);
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
 * Encodes a successful `<methodResponse>` carrying `value` (see
 * encodeMethodResponse() in xmlrpc.ts).
 */
export function encodeResponse(
  value: unknown,
  options: XmlRpcEncodeOptions,
): string {
  const maxDepth = checkMaxDepth(options.maxDepth);
  const out = [`<?xml version="1.0"?><methodResponse><params><param>`];
  encodeValue(value, out, 0, maxDepth);
  out.push("</param></params></methodResponse>");
  return out.join("");
}

/**
 * The `<value>` of a fault struct: `faultCode` must be an int; characters
 * XML cannot carry in `faultString` become U+FFFD, so a fault can always be
 * sent.
 */
function faultValue(faultCode: number, faultString: string): string {
  if (
    !Number.isInteger(faultCode) || faultCode < INT_MIN || faultCode > INT_MAX
  ) {
    throw new RangeError(
      `Cannot encode the fault: faultCode must be an int, got ${faultCode}`,
    );
  }
  const text = String(faultString).toWellFormed()
    .replace(new RegExp(FORBIDDEN_CHARS.source, "g"), "\uFFFD");
  return `<value><struct><member><name>faultCode</name><value><int>${faultCode}</int></value></member><member><name>faultString</name><value><string>${
    escapeText(text, "the fault string")
  }</string></value></member></struct></value>`;
}

/** Encodes a fault `<methodResponse>` (see encodeFault() in xmlrpc.ts). */
export function encodeFaultResponse(
  faultCode: number,
  faultString: string,
): string {
  return `<?xml version="1.0"?><methodResponse><fault>${
    faultValue(faultCode, faultString)
  }</fault></methodResponse>`;
}

/** A fault, as a multicall answer carries it. */
export interface FaultAnswer {
  faultCode: number;
  faultString: string;
}

/** One answer in a `system.multicall` response: a value, or a fault. */
export type MulticallAnswer = { value: unknown } | FaultAnswer;

/**
 * The `<value>` of one multicall answer: a one-element array holding the
 * value, or a fault struct, as Python's `system.multicall` answers. The
 * value may nest 2 levels less than `maxDepth` (it sits in two arrays).
 *
 * @throws {TypeError|RangeError} When the value cannot be encoded.
 */
export function encodeMulticallAnswer(
  answer: MulticallAnswer,
  options: XmlRpcEncodeOptions,
): string {
  if (!("value" in answer)) {
    return faultValue(answer.faultCode, answer.faultString);
  }
  const maxDepth = checkMaxDepth(options.maxDepth);
  const out = ["<value><array><data>"];
  encodeValue(answer.value, out, 2, maxDepth);
  out.push("</data></array></value>");
  return out.join("");
}

/** A `<methodResponse>` carrying an array of already encoded `<value>`s. */
export function encodeArrayResponse(values: readonly string[]): string {
  return `<?xml version="1.0"?><methodResponse><params><param><value><array><data>${
    values.join("")
  }</data></array></value></param></params></methodResponse>`;
}
