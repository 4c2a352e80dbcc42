// Private: the identity in a DER certificate, read in openssl's notation
// (subject and issuer as `openssl x509 -subject` prints them, SANs as
// `-ext subjectAltName`, ...) by connauth's own strict reader: the only
// source of a TLS peer's identity (tls.ts, https.ts).
// The certificate's structure (TBSCertificate, extensions, times, serial)
// is read here (about 300 lines: the strictness is in the details); names
// are formatted in _x509_name.ts and SANs in _x509_san.ts.
import { children, contents, decodeOid, type Node, readNode } from "./_asn1.ts";
import {
  decodeText,
  expectTag,
  formatName,
  hexDump,
  nameEntries,
  unreadable,
} from "./_x509_name.ts";
import { subjectAltNames } from "./_x509_san.ts";

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
