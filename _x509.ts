// Private: writing X.509 certificates in DER, for certs.ts and the tests:
// PEM armour, the ECDSA signature encoding, the parts of a TBSCertificate
// connauth writes (names, extensions, key identifiers) and signing it. The
// tests build deliberately malformed TBSCertificates with _asn1.ts and sign
// them here, so that they are signed exactly as certs.ts signs good ones.
import {
  bitString,
  boolean,
  children,
  contents,
  explicit,
  implicit,
  octetString,
  oid,
  readNode,
  sequence,
  set,
  smallInteger,
  TAG,
  time,
  unsignedInteger,
  utf8String,
} from "./_asn1.ts";
import { copyBytes, utf8 } from "./_bytes.ts";
import { formatIp, parseIp } from "./_ip.ts";
import type { IssuedCertificate } from "./certs.ts";

/** The OID of ecdsa-with-SHA256, the only signature algorithm we write. */
export const OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";

const SIGN_PARAMS = { name: "ECDSA", hash: "SHA-256" } as const;

/** The AlgorithmIdentifier of ecdsa-with-SHA256 (no parameters). */
export function ecdsaWithSha256(): Uint8Array<ArrayBuffer> {
  return sequence(oid(OID_ECDSA_WITH_SHA256));
}

/** WebCrypto's raw r||s to DER `SEQUENCE { INTEGER r, INTEGER s }`. */
export function ecdsaSignatureDer(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const half = raw.length / 2;
  return sequence(
    unsignedInteger(raw.subarray(0, half)),
    unsignedInteger(raw.subarray(half)),
  );
}

/**
 * Signs a DER TBSCertificate with an ECDSA P-256 key (ecdsa-with-SHA256)
 * and returns the DER Certificate. The TBSCertificate is signed as given:
 * nothing in it is checked.
 */
export async function signCertificate(
  tbs: Uint8Array<ArrayBuffer>,
  signingKey: CryptoKey,
): Promise<Uint8Array<ArrayBuffer>> {
  const signature = new Uint8Array(
    await crypto.subtle.sign(SIGN_PARAMS, signingKey, tbs),
  );
  return sequence(
    tbs,
    ecdsaWithSha256(),
    bitString(ecdsaSignatureDer(signature)),
  );
}

/** DER to PEM text with the given label (`CERTIFICATE`, `PRIVATE KEY`). */
export function pemEncode(label: string, der: Uint8Array): string {
  let binary = "";
  for (const byte of der) binary += String.fromCharCode(byte);
  const b64 = btoa(binary);
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${
    lines.join("\n")
  }\n-----END ${label}-----\n`;
}

/** The DER of the first PEM block with `label`; `what` names it in errors. */
export function pemDecode(
  pem: string,
  label: string,
  what: string,
): Uint8Array<ArrayBuffer> {
  const match = typeof pem === "string"
    ? new RegExp(
      `-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`,
    ).exec(pem)
    : null;
  if (!match) {
    throw new TypeError(
      `Cannot read ${what}: expected PEM text with a "-----BEGIN ${label}-----" block`,
    );
  }
  try {
    return Uint8Array.from(
      atob(match[1].replace(/\s+/g, "")),
      (c) => c.charCodeAt(0),
    );
  } catch (error) {
    throw new TypeError(`Cannot read ${what}: the PEM body is not base64`, {
      cause: error,
    });
  }
}

/** The OIDs connauth's certificates use. */
export const OID = {
  commonName: "2.5.4.3",
  ecPublicKey: "1.2.840.10045.2.1",
  prime256v1: "1.2.840.10045.3.1.7",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** The key algorithm of every certificate made here. */
export const EC_PARAMS = { name: "ECDSA", namedCurve: "P-256" } as const;

export interface SignInput {
  issuer: Uint8Array;
  subject: Uint8Array;
  spki: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  extensions: Uint8Array[];
  signingKey: CryptoKey;
  privateKey: CryptoKey;
  commonName: string;
  names: string[];
}

export async function signIssued(input: SignInput): Promise<IssuedCertificate> {
  const serial = randomSerial();
  const tbs = sequence(
    explicit(0, smallInteger(2)),
    unsignedInteger(serial),
    ecdsaWithSha256(),
    input.issuer,
    sequence(time(input.notBefore), time(input.notAfter)),
    input.subject,
    input.spki,
    explicit(3, sequence(...input.extensions)),
  );
  const der = await signCertificate(tbs, input.signingKey);
  const pkcs8 = new Uint8Array(
    await crypto.subtle.exportKey("pkcs8", input.privateKey),
  );
  return {
    cert: pemEncode("CERTIFICATE", der),
    key: pemEncode("PRIVATE KEY", pkcs8),
    commonName: input.commonName,
    subjectAltNames: input.names.map(displayName),
    serialNumber: hex(serial).toUpperCase(),
    fingerprint: await fingerprintDer(der),
    notBefore: input.notBefore,
    notAfter: input.notAfter,
  };
}

/** 16 random bytes, top bit clear and first byte non-zero: positive, 128 bits. */
export function randomSerial(): Uint8Array<ArrayBuffer> {
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0] & 0x7f) || 0x01;
  return serial;
}

export function extension(
  id: string,
  critical: boolean,
  value: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

export function distinguishedName(commonName: string): Uint8Array<ArrayBuffer> {
  return sequence(set(sequence(oid(OID.commonName), utf8String(commonName))));
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey BIT STRING's value. */
export async function keyIdentifier(
  spki: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const point = spkiPoint(spki);
  return new Uint8Array(await crypto.subtle.digest("SHA-1", copyBytes(point)));
}

export function spkiPoint(spki: Uint8Array): Uint8Array {
  const root = readNode(spki, 0);
  const [, key] = children(spki, root);
  if (!key || key.tag !== TAG.BIT_STRING) {
    throw new TypeError(
      "Cannot read public key: malformed SubjectPublicKeyInfo",
    );
  }
  return contents(spki, key).subarray(1);
}

export function generalNames(names: string[]): Uint8Array<ArrayBuffer> {
  return sequence(
    ...names.map((name) => {
      const ip = parseIp(name);
      return ip ? implicit(7, ip) : implicit(2, utf8(name));
    }),
  );
}

/** A SAN as `openssl x509 -ext subjectAltName` prints it. */
export function displayName(name: string): string {
  const ip = parseIp(name);
  return ip ? `IP Address:${formatIp(ip)}` : `DNS:${name}`;
}

export async function fingerprintDer(der: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", copyBytes(der)),
  );
  return [...digest].map((b) => b.toString(16).padStart(2, "0").toUpperCase())
    .join(":");
}

export function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
