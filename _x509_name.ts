// Private: distinguished names and string values of a DER certificate as
// openssl 3.0 prints them (`-nameopt oneline`: "C = DE, O = Acme, CN = a",
// with its escaping), and the strict decoding of the string types X.509
// uses. Part of connauth's certificate reader (_tls_identity.ts); a value
// it cannot decode exactly makes the certificate unreadable. (About 280
// lines: openssl's escaping rules are that long.)
import { children, contents, decodeOid, type Node } from "./_asn1.ts";

/** The reader's error: `Cannot read the certificate: <detail>`. */
export function unreadable(detail: string): TypeError {
  return new TypeError(`Cannot read the certificate: ${detail}`);
}

/** `node`, when it has the tag `tag`; else the reader's error. */
export function expectTag(
  node: Node | undefined,
  tag: number,
  what: string,
): Node {
  if (node?.tag !== tag) throw unreadable(`malformed ${what}`);
  return node;
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
export function nameEntries(der: Uint8Array, name: Node): [string, Node][][] {
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
export function onelineName(der: Uint8Array, name: Node): string {
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

export function hexDump(bytes: Uint8Array): string {
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
export function formatName(der: Uint8Array, name: Node): string {
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
export function decodeText(
  tag: number,
  bytes: Uint8Array,
  what: string,
): string {
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
export function ia5Text(bytes: Uint8Array, what: string): string {
  if (bytes.length === 0) throw unreadable(`an empty ${what} name`);
  return decodeText(0x16, bytes, `a ${what} name`);
}
