// The identity in a certificate, in openssl's notation, and client
// allow-lists over it; shared by tls.ts (refusing at the TLS layer), https.ts
// (answering HTTP 403), and certs.ts and server.ts (IP address text).
// Private: not exported from mod.ts.
import type { PeerIdentity, TlsAllowList } from "./tls.ts";
import { children, contents, decodeOid, type Node, readNode } from "./_asn1.ts";

/** IPv4 or IPv6 text (brackets allowed) to bytes; null when not an IP. */
export function parseIp(text: string): Uint8Array<ArrayBuffer> | null {
  const v4 = parseIpv4(text);
  if (v4) return v4;
  const name = text.startsWith("[") && text.endsWith("]")
    ? text.slice(1, -1)
    : text;
  if (!name.includes(":")) return null;
  return parseIpv6(name);
}

function parseIpv4(text: string): Uint8Array<ArrayBuffer> | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (const [i, part] of parts.entries()) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return null;
    bytes[i] = Number(part);
  }
  return bytes;
}

function parseIpv6(text: string): Uint8Array<ArrayBuffer> | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const groups = part.split(":");
    for (const [i, group] of groups.entries()) {
      if (i === groups.length - 1 && group.includes(".")) {
        const v4 = parseIpv4(group);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(group)) {
        out.push(parseInt(group, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...new Array(missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

/**
 * An IP address as openssl prints it in a SAN: dotted IPv4, or IPv6 as eight
 * uppercase hex groups without zero compression (`FD00:0:0:0:0:0:0:5`).
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  if (bytes.length !== 16) return `<invalid length=${bytes.length}>`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16).toUpperCase());
  }
  return groups.join(":");
}

// ---------------------------------------------------------------------------
// Reading a DER certificate
//
// This reader is the only source of a peer's identity. It is strict: a
// certificate it cannot read unambiguously (malformed or BER-only DER, a
// name attribute that is not one type and one value, an empty RDN, a common
// name or SAN that does not decode exactly, an impossible time, two
// instances of one extension, ...) is refused with a TypeError naming what
// is wrong, never guessed at. Its messages hold no bytes of the certificate.

const OID_COMMON_NAME = "2.5.4.3";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_EXT_KEY_USAGE = "2.5.29.37";

function unreadable(detail: string): TypeError {
  return new TypeError(`Cannot read the certificate: ${detail}`);
}

/** One extension: its OID, criticality and the node its OCTET STRING holds. */
interface Extension {
  id: string;
  critical: boolean;
  /** The single DER value inside the OCTET STRING. */
  value: Node;
}

/** The TBSCertificate fields of a DER certificate. */
interface TbsFields {
  serial: Node;
  issuer: Node;
  notBefore: Node;
  notAfter: Node;
  subject: Node;
  extensions: Extension[];
}

function expectTag(node: Node | undefined, tag: number, what: string): Node {
  if (node?.tag !== tag) throw unreadable(`malformed ${what}`);
  return node;
}

/** The one DER value that fills `[start, end)` exactly. */
function single(der: Uint8Array, start: number, end: number, what: string) {
  const node = readNode(der, start, end);
  if (node.end !== end) throw unreadable(`trailing bytes after ${what}`);
  return node;
}

function tbsFields(der: Uint8Array): TbsFields {
  const certificate = expectTag(
    single(der, 0, der.length, "the certificate"),
    0x30,
    "Certificate",
  );
  const parts = children(der, certificate);
  if (parts.length !== 3) throw unreadable("malformed Certificate");
  const fields = children(der, expectTag(parts[0], 0x30, "TBSCertificate"));
  let index = 0;
  if (fields[0]?.tag === 0xa0) {
    const version = children(der, fields[0]);
    if (version.length !== 1 || version[0].tag !== 0x02) {
      throw unreadable("malformed version");
    }
    index = 1;
  }
  const [serial, signature, issuer, validity, subject, spki, ...rest] = fields
    .slice(index);
  expectTag(serial, 0x02, "serial number");
  expectTag(signature, 0x30, "signature algorithm");
  expectTag(issuer, 0x30, "issuer");
  expectTag(subject, 0x30, "subject");
  expectTag(spki, 0x30, "subject public key");
  const times = children(der, expectTag(validity, 0x30, "validity"));
  if (times.length !== 2) throw unreadable("malformed validity");
  // Then, in this order and each at most once: issuerUniqueID [1],
  // subjectUniqueID [2], extensions [3].
  let last = 0;
  let extensions: Extension[] = [];
  for (const node of rest) {
    const number = node.tag & 0x1f;
    const expected = number === 3 ? 0xa3 : 0x80 | number;
    if (node.tag !== expected || number < 1 || number > 3 || number <= last) {
      throw unreadable("unexpected field after the subject public key");
    }
    last = number;
    if (number === 3) extensions = readExtensions(der, node);
  }
  return {
    serial,
    issuer,
    notBefore: times[0],
    notAfter: times[1],
    subject,
    extensions,
  };
}

function readExtensions(der: Uint8Array, wrapper: Node): Extension[] {
  const inner = children(der, wrapper);
  if (inner.length !== 1) throw unreadable("malformed extensions");
  const list = children(der, expectTag(inner[0], 0x30, "extensions"));
  if (list.length === 0) throw unreadable("an empty list of extensions");
  const seen = new Set<string>();
  return list.map((extension) => {
    const parts = children(der, expectTag(extension, 0x30, "extension"));
    const id = decodeOid(contents(der, expectTag(parts[0], 0x06, "extension")));
    let critical = false;
    let octets = parts[1];
    if (parts.length === 3) {
      const flag = expectTag(parts[1], 0x01, "extension");
      const value = contents(der, flag);
      if (value.length !== 1 || (value[0] !== 0 && value[0] !== 0xff)) {
        throw unreadable("malformed critical flag in an extension");
      }
      critical = value[0] === 0xff;
      octets = parts[2];
    } else if (parts.length !== 2) {
      throw unreadable("malformed extension");
    }
    expectTag(octets, 0x04, "extension value");
    if (seen.has(id)) throw unreadable(`extension ${id} appears twice`);
    seen.add(id);
    return {
      id,
      critical,
      value: single(der, octets.contentStart, octets.end, `extension ${id}`),
    };
  });
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Short names openssl gives the usual attribute types; others print as a
 * dotted OID (openssl knows a few more by name).
 */
const ATTRIBUTE_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.4": "SN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.9": "street",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.12": "title",
  "2.5.4.13": "description",
  "2.5.4.15": "businessCategory",
  "2.5.4.17": "postalCode",
  "2.5.4.18": "postOfficeBox",
  "2.5.4.20": "telephoneNumber",
  "2.5.4.41": "name",
  "2.5.4.42": "GN",
  "2.5.4.43": "initials",
  "2.5.4.44": "generationQualifier",
  "2.5.4.45": "x500UniqueIdentifier",
  "2.5.4.46": "dnQualifier",
  "2.5.4.65": "pseudonym",
  "2.5.4.72": "role",
  "2.5.4.97": "organizationIdentifier",
  "1.2.840.113549.1.9.1": "emailAddress",
  "1.2.840.113549.1.9.2": "unstructuredName",
  "1.2.840.113549.1.9.8": "unstructuredAddress",
  "0.9.2342.19200300.100.1.1": "UID",
  "0.9.2342.19200300.100.1.3": "mail",
  "0.9.2342.19200300.100.1.25": "DC",
  "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
  "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
  "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
};

/**
 * The attributes of a Name, RDN by RDN: `[[oid, value node], ...]`. Every
 * RDN is a SET of at least one attribute, every attribute one OID and one
 * value.
 */
function nameEntries(der: Uint8Array, name: Node): [string, Node][][] {
  return children(der, name).map((rdn) => {
    const attributes = children(der, expectTag(rdn, 0x31, "name"));
    if (attributes.length === 0) {
      throw unreadable("a name with an empty relative distinguished name");
    }
    return attributes.map((attribute): [string, Node] => {
      const parts = children(der, expectTag(attribute, 0x30, "name"));
      if (parts.length !== 2 || parts[0].tag !== 0x06) {
        throw unreadable("a name attribute that is not one type and one value");
      }
      return [decodeOid(contents(der, parts[0])), parts[1]];
    });
  });
}

/**
 * A Name as openssl's `X509_NAME_oneline` writes it (how `-ext
 * subjectAltName` prints a DirName): `/CN=a+O=b/OU=c`, bytes outside
 * printable ASCII as `\xHH`, `/` and `+` escaped with a backslash.
 */
function onelineName(der: Uint8Array, name: Node): string {
  return nameEntries(der, name).map((rdn) =>
    "/" + rdn.map(([id, value]) => {
      let text = "";
      for (const byte of contents(der, value)) {
        if (byte < 0x20 || byte > 0x7e) {
          text += `\\x${byte.toString(16).toUpperCase().padStart(2, "0")}`;
        } else {
          const char = String.fromCharCode(byte);
          text += char === "/" || char === "+" ? `\\${char}` : char;
        }
      }
      return `${ATTRIBUTE_NAMES[id] ?? id}=${text}`;
    }).join("+")
  ).join("");
}

// Character classes of openssl's crypto/asn1/charmap.h that matter here:
// 1 escape with a backslash (RFC 2253), 2 control (\XX), 8 needs quotes
// (with ESC_QUOTE), 32 special as the first character, 64 as the last.
function charClass(code: number): number {
  if (code === 0x20) return 8 | 32 | 64;
  if (code === 0x23) return 8 | 32; // #
  if (code === 0x22 || code === 0x5c) return 1; // " \
  if (code === 0x2b || code === 0x2c) return 8 | 1; // + ,
  if (code === 0x3b || code === 0x3c || code === 0x3e) return 8 | 1; // ; < >
  if (code < 0x20 || code === 0x7f) return 2;
  return 0;
}

/** Characters of a string value as openssl reads them, by ASN.1 tag. */
function valueChars(tag: number, bytes: Uint8Array): number[] | null {
  const out: number[] = [];
  switch (tag) {
    case 0x0c: // UTF8String: printed byte by byte
    case 0x12: // NumericString
    case 0x13: // PrintableString
    case 0x14: // T61String (read as Latin-1)
    case 0x16: // IA5String
    case 0x17: // UTCTime
    case 0x18: // GeneralizedTime
    case 0x1a: // VisibleString
      for (const byte of bytes) out.push(byte);
      return out;
    case 0x1e: // BMPString
      if (bytes.length % 2) return null;
      for (let i = 0; i < bytes.length; i += 2) {
        out.push((bytes[i] << 8) | bytes[i + 1]);
      }
      return out;
    case 0x1c: // UniversalString
      if (bytes.length % 4) return null;
      for (let i = 0; i < bytes.length; i += 4) {
        out.push(
          ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) |
            bytes[i + 3]) >>> 0,
        );
      }
      return out;
    default:
      return null;
  }
}

/** UTF-8 of one code point, as openssl's UTF8_putc writes it. */
function utf8Bytes(code: number): number[] {
  if (code < 0x80) return [code];
  if (code < 0x800) return [0xc0 | (code >> 6), 0x80 | (code & 0x3f)];
  if (code < 0x10000) {
    return [
      0xe0 | (code >> 12),
      0x80 | ((code >> 6) & 0x3f),
      0x80 | (code & 0x3f),
    ];
  }
  return [
    0xf0 | (code >> 18),
    0x80 | ((code >> 12) & 0x3f),
    0x80 | ((code >> 6) & 0x3f),
    0x80 | (code & 0x3f),
  ];
}

function hexByte(byte: number): string {
  return byte.toString(16).toUpperCase().padStart(2, "0");
}

function hexDump(bytes: Uint8Array): string {
  return [...bytes].map(hexByte).join("");
}

/**
 * One attribute value as `openssl x509 -subject` (OpenSSL 3.0's default
 * `-nameopt oneline`) prints it: characters are converted to UTF-8 and every
 * byte above 0x7F written `\XX`, control characters `\XX`, `"` and `\`
 * escaped with a backslash, and the whole value quoted when it holds `,` `+`
 * `;` `<` `>`, or starts with `#` or a space, or ends with a space. A value
 * that is not a string prints as `#` and the hex of its DER.
 */
function onelineValue(der: Uint8Array, value: Node): string {
  const body = contents(der, value);
  const chars = valueChars(value.tag, body);
  if (chars === null) {
    return `#${hexDump(der.subarray(value.start, value.end))}`;
  }
  // UTF8String is taken byte by byte; the others go through UTF-8.
  const bytewise = value.tag === 0x0c;
  let quotes = false;
  let text = "";
  chars.forEach((char, index) => {
    // openssl sets "first" for the first character and overwrites it with
    // "last" for the last, so a one-character value is only "last".
    const position = index === chars.length - 1 ? 64 : index === 0 ? 32 : 0;
    const bytes = bytewise ? [char] : utf8Bytes(char);
    for (const byte of bytes) {
      if (byte > 0x7f) {
        text += `\\${hexByte(byte)}`;
        continue;
      }
      const kind = charClass(byte);
      if (kind & (1 | position)) {
        if (kind & 8) {
          quotes = true;
          text += String.fromCharCode(byte);
        } else {
          text += `\\${String.fromCharCode(byte)}`;
        }
      } else if (kind & 2) {
        text += `\\${hexByte(byte)}`;
      } else {
        text += String.fromCharCode(byte);
      }
    }
  });
  return quotes ? `"${text}"` : text;
}

/**
 * A Name as `openssl x509 -subject` (OpenSSL 3.0, `-nameopt oneline`)
 * prints it: `"C = DE, O = Acme, CN = alice"`, `" + "` between the
 * attributes of one multi-valued RDN.
 */
function formatName(der: Uint8Array, name: Node): string {
  return nameEntries(der, name).map((rdn) =>
    rdn.map(([id, value]) =>
      `${ATTRIBUTE_NAMES[id] ?? id} = ${onelineValue(der, value)}`
    ).join(" + ")
  ).join(", ");
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/**
 * A string value's text, exactly: throws when the bytes are not valid for
 * the ASN.1 string type (invalid UTF-8, a PrintableString with `@`, an odd
 * BMPString, a surrogate, ...) or the value is not a string at all.
 */
function decodeText(tag: number, bytes: Uint8Array, what: string): string {
  const invalid = () => unreadable(`${what} is not a valid string`);
  if (tag === 0x0c) {
    try {
      return strictUtf8.decode(bytes);
    } catch {
      throw invalid();
    }
  }
  const chars = valueChars(tag, bytes);
  if (chars === null) throw invalid();
  let text = "";
  for (const code of chars) {
    const ok = tag === 0x12
      ? code === 0x20 || (code >= 0x30 && code <= 0x39)
      : tag === 0x16
      ? code < 0x80
      : tag === 0x1a
      ? code >= 0x20 && code < 0x7f
      : code <= 0x10ffff && (code < 0xd800 || code > 0xdfff);
    if (!ok) throw invalid();
    text += String.fromCodePoint(code);
  }
  if (tag === 0x13 && !PRINTABLE.test(text)) throw invalid();
  return text;
}

/** An IA5String-like SAN (DNS, email, URI): non-empty ASCII. */
function ia5Text(bytes: Uint8Array, what: string): string {
  if (bytes.length === 0) throw unreadable(`an empty ${what} name`);
  return decodeText(0x16, bytes, `a ${what} name`);
}

const TIME_FORMATS: Record<number, RegExp> = {
  // UTCTime and GeneralizedTime as RFC 5280 4.1.2.5 allows them: UTC ("Z"),
  // whole seconds.
  0x17: /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/,
  0x18: /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/,
};

/** A validity time; throws on local time, fractions or an impossible date. */
function readTime(der: Uint8Array, node: Node, what: string): Date {
  const format = TIME_FORMATS[node.tag];
  const text = String.fromCharCode(...contents(der, node).subarray(0, 16));
  const match = format?.exec(text);
  if (!match || contents(der, node).length !== text.length) {
    throw unreadable(`${what} is not a UTC time`);
  }
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number);
  const fullYear = node.tag === 0x18
    ? year
    : year < 50
    ? 2000 + year
    : 1900 + year;
  const date = new Date(0);
  date.setUTCFullYear(fullYear, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  if (
    date.getUTCFullYear() !== fullYear || date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day || date.getUTCHours() !== hour ||
    date.getUTCMinutes() !== minute || date.getUTCSeconds() !== second
  ) {
    throw unreadable(`${what} is not a possible date`);
  }
  return date;
}

/**
 * The serial number as `openssl x509 -serial` prints it: uppercase hex in
 * whole bytes, without the sign byte DER adds, `-` before a negative one.
 */
function readSerial(der: Uint8Array, node: Node): string {
  const bytes = contents(der, node);
  if (bytes.length === 0) throw unreadable("an empty serial number");
  if (
    bytes.length > 1 &&
    ((bytes[0] === 0 && !(bytes[1] & 0x80)) ||
      (bytes[0] === 0xff && bytes[1] & 0x80))
  ) throw unreadable("a serial number with redundant leading bytes");
  if (!(bytes[0] & 0x80)) {
    const magnitude = bytes.length > 1 && bytes[0] === 0
      ? bytes.subarray(1)
      : bytes;
    return hexDump(magnitude);
  }
  // Negative: two's complement back to the magnitude.
  const magnitude = Uint8Array.from(bytes, (byte) => ~byte & 0xff);
  for (let i = magnitude.length - 1; i >= 0; i--) {
    magnitude[i] = (magnitude[i] + 1) & 0xff;
    if (magnitude[i] !== 0) break;
  }
  const start = magnitude[0] === 0 && magnitude.length > 1 ? 1 : 0;
  return `-${hexDump(magnitude.subarray(start))}`;
}

/** The names in a DER certificate, as {@linkcode PeerIdentity} holds them. */
export interface CertificateNames {
  /** The first subject common name, unescaped, or undefined. */
  cn: string | undefined;
  /** The subject as `openssl x509 -subject` prints it. */
  subject: string;
  /** The issuer as `openssl x509 -issuer` prints it. */
  issuer: string;
  /** The SANs as `openssl x509 -ext subjectAltName` prints them. */
  san: string[];
}

/** What {@linkcode readCertificate} reads from a DER certificate. */
export interface CertificateFacts extends CertificateNames {
  /** Start of the validity. */
  validFrom: Date;
  /** End of the validity. */
  validTo: Date;
  /** As `openssl x509 -serial` prints it. */
  serialNumber: string;
  /** The extended key usage OIDs, or null when the extension is absent. */
  extendedKeyUsage: string[] | null;
}

/**
 * Reads subject, issuer, first CN, SANs, validity, serial number and
 * extended key usage from a DER certificate; throws a TypeError (`Cannot
 * read the certificate: ...`) on one it cannot read unambiguously. Nothing
 * is verified here: call it on a certificate that verified, or only to
 * describe one.
 */
export function readCertificate(der: Uint8Array): CertificateFacts {
  try {
    return readFacts(der);
  } catch (error) {
    const message = (error as Error)?.message ?? "";
    if (message.startsWith("Cannot read the certificate: ")) throw error;
    // _asn1.ts: "Cannot parse DER: <detail>"
    throw unreadable(
      `malformed DER (${message.replace(/^Cannot parse DER: /, "")})`,
    );
  }
}

function readFacts(der: Uint8Array): CertificateFacts {
  const fields = tbsFields(der);
  let cn: string | undefined;
  for (const rdn of nameEntries(der, fields.subject)) {
    const found = rdn.find(([id]) => id === OID_COMMON_NAME);
    if (found) {
      cn = decodeText(
        found[1].tag,
        contents(der, found[1]),
        "the common name",
      );
      break;
    }
  }
  const issuer = formatName(der, fields.issuer);
  const subject = formatName(der, fields.subject);
  const validFrom = readTime(der, fields.notBefore, "the start of validity");
  const validTo = readTime(der, fields.notAfter, "the end of validity");
  const serialNumber = readSerial(der, fields.serial);
  let san: string[] = [];
  let extendedKeyUsage: string[] | null = null;
  for (const extension of fields.extensions) {
    if (extension.id === OID_SUBJECT_ALT_NAME) {
      san = subjectAltNames(der, extension.value);
    } else if (extension.id === OID_EXT_KEY_USAGE) {
      const list = children(
        der,
        expectTag(extension.value, 0x30, "extended key usage"),
      );
      if (list.length === 0) throw unreadable("an empty extended key usage");
      extendedKeyUsage = list.map((node) =>
        decodeOid(contents(der, expectTag(node, 0x06, "extended key usage")))
      );
    }
  }
  return {
    cn,
    subject,
    issuer,
    san,
    validFrom,
    validTo,
    serialNumber,
    extendedKeyUsage,
  };
}

/** Reads subject, issuer, first CN and SANs from a DER certificate. */
export function certificateNames(der: Uint8Array): CertificateNames {
  const { cn, subject, issuer, san } = readCertificate(der);
  return { cn, subject, issuer, san };
}

/** One GeneralName as `openssl x509 -ext subjectAltName` prints it. */
function generalName(der: Uint8Array, node: Node): string {
  const body = contents(der, node);
  switch (node.tag) {
    case 0x81:
      return `email:${ia5Text(body, "email")}`;
    case 0x82:
      return `DNS:${ia5Text(body, "DNS")}`;
    case 0x86:
      return `URI:${ia5Text(body, "URI")}`;
    case 0x87:
      // 4 or 16 bytes; 8 or 32 (address and mask) only in name constraints.
      if (body.length !== 4 && body.length !== 16) {
        throw unreadable("an IP address name that is not 4 or 16 bytes");
      }
      return `IP Address:${formatIp(body)}`;
    case 0x88:
      return `Registered ID:${decodeOid(body)}`;
    case 0xa0:
      return otherName(der, node);
    case 0xa3:
      return "X400Name:<unsupported>";
    case 0xa4: {
      const inner = children(der, node);
      if (inner.length !== 1) throw unreadable("malformed directory name");
      const name = expectTag(inner[0], 0x30, "directory name");
      return `DirName:${onelineName(der, name)}`;
    }
    case 0xa5:
      return "EdiPartyName:<unsupported>";
    default:
      throw unreadable("an alternative name of unknown type");
  }
}

const OTHER_NAMES: Record<string, [string, number]> = {
  "1.3.6.1.4.1.311.20.2.3": ["UPN", 0x0c],
  "1.3.6.1.5.5.7.8.9": ["SmtpUTF8Mailbox", 0x0c],
  "1.3.6.1.5.5.7.8.5": ["XmppAddr", 0x0c],
  "1.3.6.1.5.5.7.8.7": ["SRVName", 0x16],
  "1.3.6.1.5.5.7.8.8": ["NAIRealm", 0x0c],
};

function otherName(der: Uint8Array, node: Node): string {
  const parts = children(der, node);
  const wrapper = parts[1];
  if (parts.length !== 2 || wrapper.tag !== 0xa0) {
    throw unreadable("malformed otherName");
  }
  const id = decodeOid(contents(der, expectTag(parts[0], 0x06, "otherName")));
  const inner = children(der, wrapper);
  if (inner.length !== 1) throw unreadable("malformed otherName value");
  const value = inner[0];
  const known = OTHER_NAMES[id];
  const label = known?.[0] ?? id;
  const printable = known
    ? value.tag === known[1]
    : value.tag === 0x0c || value.tag === 0x16;
  return `othername: ${label}::${
    printable
      ? decodeText(value.tag, contents(der, value), "an otherName value")
      : "<unsupported>"
  }`;
}

/**
 * The subject alternative names in the extension's value, each as `openssl
 * x509 -ext subjectAltName` prints it (`"DNS:a.test"`,
 * `"IP Address:10.0.0.5"`, `"IP Address:FD00:0:0:0:0:0:0:5"`,
 * `"email:a@b.test"`, `"URI:..."`).
 */
function subjectAltNames(der: Uint8Array, value: Node): string[] {
  const names = children(der, expectTag(value, 0x30, "subjectAltName"));
  if (names.length === 0) throw unreadable("an empty subjectAltName");
  return names.map((name) => generalName(der, name));
}

// ---------------------------------------------------------------------------
// Allow lists

function normalizeFingerprint(value: string): string {
  return value.replace(/[^0-9a-f]/gi, "").toUpperCase();
}

const SAN_PREFIX = /^(DNS|IP|IP Address|email|URI):/i;

/** A SAN entry's type (`DNS`, `IP`, `EMAIL`, `URI`) and value. */
function splitSan(entry: string): { type: string | null; value: string } {
  const match = SAN_PREFIX.exec(entry);
  if (!match) return { type: null, value: entry };
  const type = match[1].toUpperCase();
  return {
    type: type === "IP ADDRESS" ? "IP" : type,
    value: entry.slice(match[0].length),
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * Whether a verified identity matches `allow` (CN, SAN or fingerprint). IP
 * SANs compare by address, so `"IP:fd00::5"`, `"IP Address:FD00:0:0:0:0:0:0:5"`
 * and a bare `"fd00::5"` all match the same certificate; DNS SANs compare
 * without regard to case.
 */
export function allowed(
  identity: PeerIdentity | null,
  allow: TlsAllowList,
): boolean {
  if (identity === null) return false;
  if (
    identity.cn !== undefined && (allow.cn ?? []).includes(identity.cn)
  ) return true;
  const sans = identity.san.map(splitSan);
  for (const wanted of allow.san ?? []) {
    const { type: wantedType, value: wantedValue } = splitSan(wanted);
    const wantedIp = wantedType === null || wantedType === "IP"
      ? parseIp(wantedValue)
      : null;
    for (const { type, value } of sans) {
      if (wantedType !== null && wantedType !== type) continue;
      if (value === wantedValue) return true;
      // DNS names are case-insensitive (RFC 4343).
      if (
        type === "DNS" && value.toLowerCase() === wantedValue.toLowerCase()
      ) return true;
      if (type === "IP" && wantedIp) {
        const ip = parseIp(value);
        if (ip && sameBytes(ip, wantedIp)) return true;
      }
    }
  }
  const fingerprint = normalizeFingerprint(identity.fingerprint256);
  return (allow.fingerprint ?? []).some((value) =>
    normalizeFingerprint(value) === fingerprint
  );
}

/** Longest name a log line quotes in full; the rest is cut to "...". */
const MAX_LOGGED_NAME = 200;

/**
 * A name for a log line, cut after {@linkcode MAX_LOGGED_NAME} characters
 * so a certificate with thousands of RDNs cannot make every refusal line
 * that long (the full name stays in the event's identity).
 */
export function clip(name: string): string {
  return name.length > MAX_LOGGED_NAME
    ? `${name.slice(0, MAX_LOGGED_NAME)}...`
    : name;
}

/** Names a client in a log line: its subject and fingerprint. */
export function describe(identity: PeerIdentity | null): string {
  if (identity === null) return "a client without a certificate";
  return `client "${
    clip(identity.subject)
  }" (SHA-256 ${identity.fingerprint256})`;
}
