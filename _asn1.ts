// Private ASN.1 DER helpers for certs.ts, _tls_identity.ts and the tests: a
// writer for the handful of types an X.509 certificate needs, and a strict,
// minimal reader for walking a certificate we (or a peer) wrote. Not a
// general ASN.1 library: the reader refuses indefinite lengths, high tag
// numbers and every other BER form with a TypeError.
// One concept, DER, in both directions (about 280 lines): the writer and
// the reader share the tag table and the length rules.
import { concat } from "./_bytes.ts";

/** Universal and context tags used by X.509. */
export const TAG = Object.freeze({
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
});

function lengthBytes(length: number): Uint8Array<ArrayBuffer> {
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/**
 * One TLV: a tag, a DER length and the contents. The tag is one byte, or
 * the bytes of a high-tag-number identifier (`Uint8Array.of(0x1f, 0x81,
 * 0x00)`) written as given (only tests write those).
 */
export function tlv(
  tag: number | Uint8Array,
  ...contents: Uint8Array[]
): Uint8Array<ArrayBuffer> {
  const body = concat(...contents);
  return concat(
    typeof tag === "number" ? Uint8Array.of(tag) : tag,
    lengthBytes(body.byteLength),
    body,
  );
}

/** SEQUENCE of already-encoded elements. */
export function sequence(...items: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return tlv(TAG.SEQUENCE, ...items);
}

/** SET of already-encoded elements, sorted as DER requires. */
export function set(...items: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const sorted = [...items].sort(compareBytes);
  return tlv(TAG.SET, ...sorted);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * INTEGER from an unsigned big-endian magnitude: leading zeros stripped, one
 * 0x00 added when the top bit is set, so the value stays positive.
 */
export function unsignedInteger(
  magnitude: Uint8Array,
): Uint8Array<ArrayBuffer> {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const digits = magnitude.subarray(start);
  if (digits.length === 0) return tlv(TAG.INTEGER, Uint8Array.of(0));
  return digits[0] & 0x80
    ? tlv(TAG.INTEGER, Uint8Array.of(0), digits)
    : tlv(TAG.INTEGER, digits);
}

/** INTEGER from a small non-negative number. */
export function smallInteger(value: number): Uint8Array<ArrayBuffer> {
  const bytes: number[] = [];
  for (let n = value; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return unsignedInteger(Uint8Array.from(bytes.length ? bytes : [0]));
}

/** BOOLEAN (DER: 0xff for true). */
export function boolean(value: boolean): Uint8Array<ArrayBuffer> {
  return tlv(TAG.BOOLEAN, Uint8Array.of(value ? 0xff : 0x00));
}

/** OBJECT IDENTIFIER from dotted form ("1.2.840.10045.4.3.2"). */
export function oid(dotted: string): Uint8Array<ArrayBuffer> {
  const arcs = dotted.split(".").map(Number);
  if (
    arcs.length < 2 || arcs.some((arc) => !Number.isSafeInteger(arc) || arc < 0)
  ) {
    throw new TypeError(
      `Cannot encode OID "${dotted}": expected dotted decimal`,
    );
  }
  const out: number[] = [];
  const values = [arcs[0] * 40 + arcs[1], ...arcs.slice(2)];
  for (const value of values) {
    const group: number[] = [value & 0x7f];
    for (let n = Math.floor(value / 128); n > 0; n = Math.floor(n / 128)) {
      group.unshift(0x80 | (n & 0x7f));
    }
    out.push(...group);
  }
  return tlv(TAG.OID, Uint8Array.from(out));
}

/** UTF8String. */
export function utf8String(text: string): Uint8Array<ArrayBuffer> {
  return tlv(TAG.UTF8_STRING, new TextEncoder().encode(text));
}

/** OCTET STRING. */
export function octetString(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return tlv(TAG.OCTET_STRING, bytes);
}

/** BIT STRING of whole bytes (no unused bits). */
export function bitString(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return tlv(TAG.BIT_STRING, Uint8Array.of(0), bytes);
}

/**
 * BIT STRING for a NamedBitList (keyUsage): bit 0 is the most significant
 * bit of the first byte; DER drops trailing zero bits.
 */
export function namedBits(bits: number[]): Uint8Array<ArrayBuffer> {
  if (bits.length === 0) return tlv(TAG.BIT_STRING, Uint8Array.of(0));
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3] |= 0x80 >> (bit & 7);
  const unused = 7 - (highest & 7);
  return tlv(TAG.BIT_STRING, Uint8Array.of(unused), bytes);
}

/**
 * X.509 Time: UTCTime for 1950 through 2049, GeneralizedTime otherwise
 * (RFC 5280 4.1.2.5), whole seconds in UTC.
 */
export function time(date: Date): Uint8Array<ArrayBuffer> {
  const year = date.getUTCFullYear();
  const two = (n: number) => String(n).padStart(2, "0");
  const rest = two(date.getUTCMonth() + 1) + two(date.getUTCDate()) +
    two(date.getUTCHours()) + two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) + "Z";
  if (year >= 1950 && year < 2050) {
    return tlv(TAG.UTC_TIME, ascii(two(year % 100) + rest));
  }
  if (year < 0 || year > 9999) {
    throw new RangeError(
      `Cannot encode time: year ${year} is outside 0000-9999`,
    );
  }
  return tlv(TAG.GENERALIZED_TIME, ascii(String(year).padStart(4, "0") + rest));
}

function ascii(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(text) as Uint8Array<ArrayBuffer>;
}

/** Context-specific constructed [n] wrapping (EXPLICIT tagging). */
export function explicit(
  n: number,
  ...contents: Uint8Array[]
): Uint8Array<ArrayBuffer> {
  return tlv(0xa0 | n, ...contents);
}

/** Context-specific primitive [n] with raw contents (IMPLICIT tagging). */
export function implicit(
  n: number,
  contents: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return tlv(0x80 | n, contents);
}

/** A parsed TLV: where its header and contents lie in the buffer. */
export interface Node {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the contents. */
  end: number;
}

/**
 * Reads the TLV at `offset`; throws TypeError on anything not DER-shaped: a
 * truncated header or contents, a high tag number, an indefinite length, a
 * length in more bytes than it needs (BER, not DER) or over 4 bytes.
 */
export function readNode(
  bytes: Uint8Array,
  offset: number,
  limit = bytes.length,
): Node {
  if (offset + 2 > limit) throw malformed("truncated header");
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw malformed("high tag number");
  let length = bytes[offset + 1];
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw malformed("unsupported length");
    if (contentStart + count > limit) throw malformed("truncated length");
    if (bytes[contentStart] === 0) throw malformed("non-minimal length");
    length = 0;
    for (let i = 0; i < count; i++) {
      length = length * 256 + bytes[contentStart + i];
    }
    if (length < 0x80) throw malformed("non-minimal length");
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw malformed("truncated contents");
  return { tag, start: offset, contentStart, end };
}

/** The child TLVs of a constructed node. */
export function children(bytes: Uint8Array, node: Node): Node[] {
  const out: Node[] = [];
  for (let offset = node.contentStart; offset < node.end;) {
    const child = readNode(bytes, offset, node.end);
    out.push(child);
    offset = child.end;
  }
  return out;
}

/** The whole TLV (header and contents) of a node. */
export function raw(bytes: Uint8Array, node: Node): Uint8Array {
  return bytes.subarray(node.start, node.end);
}

/** The contents of a node. */
export function contents(bytes: Uint8Array, node: Node): Uint8Array {
  return bytes.subarray(node.contentStart, node.end);
}

/**
 * Decodes an OBJECT IDENTIFIER's contents to dotted form. Throws TypeError
 * on an empty or truncated OID, an arc with a leading 0x80 byte (not DER)
 * or an arc too large to hold exactly.
 */
export function decodeOid(body: Uint8Array): string {
  const values: number[] = [];
  let value = 0;
  let fresh = true;
  for (const byte of body) {
    if (fresh && byte === 0x80) throw malformed("non-minimal OID arc");
    fresh = false;
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw malformed("OID arc too large");
    if (!(byte & 0x80)) {
      values.push(value);
      value = 0;
      fresh = true;
    }
  }
  if (values.length === 0) throw malformed("empty OID");
  if (!fresh) throw malformed("truncated OID");
  const first = values[0] < 80 ? Math.floor(values[0] / 40) : 2;
  return [first, values[0] - first * 40, ...values.slice(1)].join(".");
}

function malformed(detail: string): TypeError {
  return new TypeError(`Cannot parse DER: ${detail}`);
}
