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

const OID_SUBJECT_ALT_NAME = "2.5.29.17";

/** The TBSCertificate fields of a DER certificate. */
interface TbsFields {
  issuer: Node;
  subject: Node;
  extensions: Node[];
}

function tbsFields(der: Uint8Array): TbsFields {
  const certificate = readNode(der, 0);
  const tbs = children(der, certificate)[0];
  const fields = children(der, tbs);
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
  const issuer = fields[offset + 2];
  const subject = fields[offset + 4];
  if (issuer?.tag !== 0x30 || subject?.tag !== 0x30) {
    throw new TypeError("Cannot parse certificate: malformed TBSCertificate");
  }
  const wrapper = fields.find((node) => node.tag === 0xa3);
  const extensions = wrapper ? children(der, children(der, wrapper)[0]) : [];
  return { issuer, subject, extensions };
}

const utf8Decoder = new TextDecoder();

/** Raw bytes as openssl writes them to a terminal (read back as UTF-8). */
function rawText(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

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

/** The attributes of a Name, RDN by RDN: `[[oid, value node], ...]`. */
function nameEntries(der: Uint8Array, name: Node): [string, Node][][] {
  return children(der, name).map((rdn) =>
    children(der, rdn).map((attribute): [string, Node] => {
      const [type, value] = children(der, attribute);
      return [decodeOid(contents(der, type)), value];
    })
  );
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
      out.push(...bytes);
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

/** A string attribute's value as text (no escaping), or undefined. */
function decodeValue(der: Uint8Array, value: Node): string | undefined {
  const body = contents(der, value);
  if (value.tag === 0x0c) return utf8Decoder.decode(body);
  const chars = valueChars(value.tag, body);
  if (chars === null) return undefined;
  try {
    return String.fromCodePoint(...chars);
  } catch {
    return undefined;
  }
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

/** Reads subject, issuer, first CN and SANs from a DER certificate. */
export function certificateNames(der: Uint8Array): CertificateNames {
  const fields = tbsFields(der);
  let cn: string | undefined;
  for (const rdn of nameEntries(der, fields.subject)) {
    const found = rdn.find(([id]) => id === "2.5.4.3");
    if (found) {
      cn = decodeValue(der, found[1]);
      break;
    }
  }
  return {
    cn,
    subject: formatName(der, fields.subject),
    issuer: formatName(der, fields.issuer),
    san: subjectAltNames(der, fields.extensions),
  };
}

/** One GeneralName as `openssl x509 -ext subjectAltName` prints it. */
function generalName(der: Uint8Array, node: Node): string {
  const body = contents(der, node);
  switch (node.tag) {
    case 0x81:
      return `email:${rawText(body)}`;
    case 0x82:
      return `DNS:${rawText(body)}`;
    case 0x86:
      return `URI:${rawText(body)}`;
    case 0x87:
      return `IP Address:${formatIp(body)}`;
    case 0x88:
      return `Registered ID:${decodeOid(body)}`;
    case 0xa0:
      return otherName(der, node);
    case 0xa3:
      return "X400Name:<unsupported>";
    case 0xa4:
      return `DirName:${onelineName(der, children(der, node)[0])}`;
    case 0xa5:
      return "EdiPartyName:<unsupported>";
    default:
      return `<unknown ${node.tag}>`;
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
  const [typeId, wrapper] = children(der, node);
  const id = decodeOid(contents(der, typeId));
  const value = wrapper ? children(der, wrapper)[0] : undefined;
  const known = OTHER_NAMES[id];
  const label = known?.[0] ?? id;
  const printable = known
    ? value?.tag === known[1]
    : value?.tag === 0x0c || value?.tag === 0x16;
  return `othername: ${label}::${
    printable ? rawText(contents(der, value!)) : "<unsupported>"
  }`;
}

/**
 * The subject alternative names in a DER certificate's `extensions`, each as
 * `openssl x509 -ext subjectAltName` prints it (`"DNS:a.test"`,
 * `"IP Address:10.0.0.5"`, `"IP Address:FD00:0:0:0:0:0:0:5"`,
 * `"email:a@b.test"`, `"URI:..."`).
 */
function subjectAltNames(der: Uint8Array, extensions: Node[]): string[] {
  for (const extension of extensions) {
    const parts = children(der, extension);
    if (decodeOid(contents(der, parts[0])) !== OID_SUBJECT_ALT_NAME) continue;
    const octets = parts[parts.length - 1];
    const names = readNode(der, octets.contentStart, octets.end);
    return children(der, names).map((name) => generalName(der, name));
  }
  return [];
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

/** Names a client in a log line: its subject and fingerprint. */
export function describe(identity: PeerIdentity | null): string {
  if (identity === null) return "a client without a certificate";
  return `client "${identity.subject}" (SHA-256 ${identity.fingerprint256})`;
}
