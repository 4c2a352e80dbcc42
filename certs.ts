// The public surface of the development certificates: the types and the
// functions that make, read and write them, with their documentation; DER
// building lives in _asn1.ts and _x509*.ts, input checks, the issuer and
// files in _cert_{input,issuer,files}.ts.
/**
 * Development certificates without openssl: a private certificate authority
 * and the server and client certificates it signs, made with WebCrypto
 * (ECDSA P-256, ecdsa-with-SHA256) and a small DER writer.
 *
 * Every certificate is X.509 v3 with the extensions that strict verifiers
 * (rustls behind `Deno.connectTls`, OpenSSL behind `node:tls` and Python's
 * `ssl`) expect:
 *
 * - the CA: `basicConstraints` `CA:TRUE, pathlen:0` (critical), `keyUsage`
 *   `keyCertSign, cRLSign` (critical), `subjectKeyIdentifier`;
 * - a server: `subjectAltName` `DNS:localhost, IP:127.0.0.1, IP:::1` plus the
 *   names you give, `extendedKeyUsage` `serverAuth`, `keyUsage`
 *   `digitalSignature` (critical), `basicConstraints` `CA:FALSE`,
 *   `authorityKeyIdentifier`;
 * - a client: the common name you give, `extendedKeyUsage` `clientAuth`, and
 *   the same key usage and constraints as a server.
 *
 * Certificates come out as PEM, private keys as PKCS#8 PEM
 * (`-----BEGIN PRIVATE KEY-----`). These are for development and tests: keep
 * the CA key private, and use a real CA (or your organization's) in
 * production. `deno task certs` writes a set to `./certs/`.
 *
 * @example A CA, a server certificate and a TLS handshake with Deno
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateCertificates } from "./certs.ts";
 *
 * const { ca, server } = await generateCertificates();
 * using listener = Deno.listenTls({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   cert: server.cert,
 *   key: server.key,
 * });
 * const [client, conn] = await Promise.all([
 *   Deno.connectTls({
 *     hostname: "localhost",
 *     port: listener.addr.port,
 *     caCerts: [ca.cert],
 *   }),
 *   listener.accept(),
 * ]);
 * const [info] = await Promise.all([client.handshake(), conn.handshake()]);
 * assert.equal(info.alpnProtocol, null);
 * client.close();
 * conn.close();
 * ```
 *
 * @module
 */

// The public certificate module: its types, documented here (hence the
// length), and the functions that make certificates. The DER they are made
// of is written in _x509.ts, inputs are checked in _cert_input.ts, a CA
// given as PEM is read in _cert_issuer.ts, and the files of a set are
// named and written in _cert_files.ts.

import {
  boolean,
  implicit,
  namedBits,
  octetString,
  oid,
  sequence,
  smallInteger,
} from "./_asn1.ts";
import {
  distinguishedName,
  EC_PARAMS,
  extension,
  fingerprintDer,
  generalNames,
  keyIdentifier,
  OID,
  pemDecode,
  signIssued,
} from "./_x509.ts";
import {
  checkCommonName,
  checkNames,
  dedupe,
  defaultCaName,
  validity,
} from "./_cert_input.ts";
import { loadIssuer } from "./_cert_issuer.ts";

export {
  type CertificateFile,
  listCertificateFiles,
  writeCertificates,
  type WriteCertificatesOptions,
  type WrittenCertificateFile,
} from "./_cert_files.ts";

/** A certificate and its private key, both PEM text. */
export interface CertificateAndKey {
  /** The certificate, PEM (`-----BEGIN CERTIFICATE-----`). */
  readonly cert: string;
  /** The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
  readonly key: string;
}

/** A certificate made by this module, with the facts people look up. */
export interface IssuedCertificate extends CertificateAndKey {
  /** The subject common name (`CN`). */
  readonly commonName: string;
  /**
   * The subject alternative names, each as `openssl x509 -ext
   * subjectAltName` prints it: `"DNS:localhost"`, `"IP Address:127.0.0.1"`,
   * `"IP Address:0:0:0:0:0:0:0:1"` (IPv6 as eight uppercase hex groups);
   * empty when the certificate has none. The same strings as
   * `PeerIdentity.san` in `tls.ts`.
   */
  readonly subjectAltNames: readonly string[];
  /** The serial number, uppercase hex without separators. */
  readonly serialNumber: string;
  /**
   * The SHA-256 fingerprint of the DER certificate, uppercase hex pairs
   * joined by colons (`AB:CD:...`), as `openssl x509 -fingerprint -sha256`
   * and `node:tls` `fingerprint256` print it.
   */
  readonly fingerprint: string;
  /** Start of validity (whole seconds). */
  readonly notBefore: Date;
  /** End of validity (whole seconds). */
  readonly notAfter: Date;
}

/** Validity options shared by every function that makes a certificate. */
export interface CertificateValidityOptions {
  /**
   * Days of validity, counted from `notBefore` when that is given, otherwise
   * from now. Ignored when `notAfter` is given.
   *
   * @default {365}
   */
  days?: number;
  /**
   * Start of validity. Tests use a date in the past together with
   * `notAfter` to make an expired certificate.
   *
   * @default {one minute ago (tolerates small clock skew)}
   */
  notBefore?: Date;
  /**
   * End of validity; must be after `notBefore`.
   *
   * @default {`days` after the start}
   */
  notAfter?: Date;
}

/** Options for {@linkcode createCertificateAuthority}. */
export interface CreateCertificateAuthorityOptions
  extends CertificateValidityOptions {
  /**
   * The CA's common name. The default ends in 8 random hex digits so that
   * two development CAs never share a name: a verifier that meets a
   * certificate from the other CA then reports an unknown issuer, not a bad
   * signature.
   *
   * @default {"connauth development CA <8 random hex digits>"}
   */
  commonName?: string;
  /**
   * Subject alternative names for the CA certificate itself (DNS names or IP
   * addresses). A CA normally has none; tests use this to make the
   * self-signed `CA:TRUE` certificate that `openssl req -x509` produces and
   * that strict clients refuse as a server certificate.
   *
   * @default {[]}
   */
  names?: string[];
}

/** What a leaf certificate is for: TLS servers or TLS clients. */
export type CertificateUsage = "server" | "client";

/** Options for {@linkcode issueCertificate}. */
export interface IssueCertificateOptions extends CertificateValidityOptions {
  /**
   * `"server"` (extended key usage `serverAuth`, the localhost names) or
   * `"client"` (extended key usage `clientAuth`).
   *
   * @default {"server"}
   */
  usage?: CertificateUsage;
  /**
   * The subject common name. Required for a client certificate (servers
   * often authorize clients by it).
   *
   * @default {"localhost" for a server}
   */
  commonName?: string;
  /**
   * Subject alternative names: DNS names (`"example.test"`,
   * `"*.example.test"`) or IP addresses (`"10.0.0.5"`, `"fd00::5"`), told
   * apart automatically. For a server they are added to the localhost names.
   *
   * @default {[]}
   */
  names?: string[];
  /**
   * For a server certificate, include `DNS:localhost`, `IP:127.0.0.1` and
   * `IP:::1`. Turn off to make a certificate that does not match localhost
   * (for a hostname-mismatch test).
   *
   * @default {true}
   */
  includeLocalhost?: boolean;
}

/** Options for {@linkcode generateCertificates}. */
export interface GenerateCertificatesOptions {
  /**
   * The CA's common name. The default ends in 8 random hex digits so that
   * two development CAs never share a name: a verifier that meets a
   * certificate from the other CA then reports an unknown issuer, not a bad
   * signature.
   *
   * @default {"connauth development CA <8 random hex digits>"}
   */
  caCommonName?: string;
  /**
   * The server certificate's common name.
   *
   * @default {"localhost"}
   */
  serverCommonName?: string;
  /**
   * Extra server names (DNS names or IP addresses), added to `localhost`,
   * `127.0.0.1` and `::1`.
   *
   * @default {[]}
   */
  serverNames?: string[];
  /**
   * Common names of the client certificates to make; `[]` makes none.
   *
   * @default {["client"]}
   */
  clients?: string[];
  /**
   * Days of validity of every certificate.
   *
   * @default {365}
   */
  days?: number;
  /**
   * Start of validity of the server and client certificates (the CA's
   * validity always covers theirs and now).
   *
   * @default {one minute ago}
   */
  notBefore?: Date;
  /**
   * End of validity of the server and client certificates.
   *
   * @default {`days` after the start}
   */
  notAfter?: Date;
}

/** A CA with the server and client certificates it signed. */
export interface CertificateSet {
  /** The certificate authority: trust `ca.cert` (e.g. `caCerts`, `ca`). */
  readonly ca: IssuedCertificate;
  /** The server certificate and key. */
  readonly server: IssuedCertificate;
  /** Client certificates and keys by common name. */
  readonly clients: Readonly<Record<string, IssuedCertificate>>;
}

const LOCALHOST_NAMES = ["localhost", "127.0.0.1", "::1"];

/**
 * Creates a self-signed development certificate authority (ECDSA P-256).
 *
 * @param options Common name, validity and optional names; see
 *   {@linkcode CreateCertificateAuthorityOptions}.
 * @returns The CA certificate and its PKCS#8 private key (PEM) with its
 *   facts; pass it to {@linkcode issueCertificate}.
 * @throws {TypeError} When a name or date is malformed.
 * @throws {RangeError} When `days` is out of range or `notAfter` is not after
 *   `notBefore`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createCertificateAuthority } from "./certs.ts";
 *
 * const ca = await createCertificateAuthority({ commonName: "Test CA" });
 * assert.equal(ca.commonName, "Test CA");
 * assert.ok(ca.cert.startsWith("-----BEGIN CERTIFICATE-----"));
 * ```
 */
export async function createCertificateAuthority(
  options: CreateCertificateAuthorityOptions = {},
): Promise<IssuedCertificate> {
  const commonName = checkCommonName(
    options.commonName ?? defaultCaName(),
    "CA common name",
  );
  const names = checkNames(options.names ?? []);
  const [notBefore, notAfter] = validity(options);
  const keys = await crypto.subtle.generateKey(EC_PARAMS, true, [
    "sign",
    "verify",
  ]);
  const spki = new Uint8Array(
    await crypto.subtle.exportKey("spki", keys.publicKey),
  );
  const keyId = await keyIdentifier(spki);
  const subject = distinguishedName(commonName);
  const extensions = [
    extension(
      OID.basicConstraints,
      true,
      sequence(boolean(true), smallInteger(0)),
    ),
    extension(OID.keyUsage, true, namedBits([5, 6])),
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
    extension(
      OID.authorityKeyIdentifier,
      false,
      sequence(implicit(0, keyId)),
    ),
  ];
  if (names.length > 0) {
    extensions.push(
      extension(OID.subjectAltName, false, generalNames(names)),
    );
  }
  return await signIssued({
    issuer: subject,
    subject,
    spki,
    notBefore,
    notAfter,
    extensions,
    signingKey: keys.privateKey,
    privateKey: keys.privateKey,
    commonName,
    names,
  });
}

/**
 * Issues a server or client certificate signed by a CA.
 *
 * The CA may come from {@linkcode createCertificateAuthority}, from
 * {@linkcode generateCertificates}, or from PEM files (`ca.pem` and
 * `ca-key.pem`); its key must be an ECDSA P-256 PKCS#8 key that matches the
 * CA certificate. To make a certificate that a CA does not trust, issue it
 * from another CA.
 *
 * @param ca The issuing CA's certificate and PKCS#8 private key (PEM).
 * @param options Usage, names and validity; see
 *   {@linkcode IssueCertificateOptions}.
 * @returns The new certificate and its PKCS#8 private key (PEM), with its
 *   facts.
 * @throws {TypeError} When the CA certificate or key is malformed, not
 *   ECDSA P-256, not a CA, or they do not match; when a name is malformed or
 *   a client certificate has no common name.
 * @throws {RangeError} When `days` is out of range or `notAfter` is not after
 *   `notBefore`.
 *
 * @example A client certificate, and an expired server certificate
 * ```ts
 * import assert from "node:assert/strict";
 * import { createCertificateAuthority, issueCertificate } from "./certs.ts";
 *
 * const ca = await createCertificateAuthority();
 * const alice = await issueCertificate(ca, {
 *   usage: "client",
 *   commonName: "alice",
 * });
 * const expired = await issueCertificate(ca, {
 *   notBefore: new Date(Date.now() - 2 * 86_400_000),
 *   notAfter: new Date(Date.now() - 86_400_000),
 * });
 * assert.equal(alice.commonName, "alice");
 * assert.ok(expired.notAfter < new Date());
 * ```
 */
export async function issueCertificate(
  ca: CertificateAndKey,
  options: IssueCertificateOptions = {},
): Promise<IssuedCertificate> {
  const usage = options.usage ?? "server";
  if (usage !== "server" && usage !== "client") {
    throw new TypeError(
      `Cannot issue certificate: usage must be "server" or "client", got "${
        String(usage)
      }"`,
    );
  }
  if (usage === "client" && options.commonName === undefined) {
    throw new TypeError(
      'Cannot issue client certificate: commonName is required; pass the client\'s name, e.g. { usage: "client", commonName: "alice" }',
    );
  }
  const commonName = checkCommonName(
    options.commonName ?? "localhost",
    "common name",
  );
  const extra = checkNames(options.names ?? []);
  const names = usage === "server" && (options.includeLocalhost ?? true)
    ? dedupe([...LOCALHOST_NAMES, ...extra])
    : dedupe(extra);
  const [notBefore, notAfter] = validity(options);
  const issuer = await loadIssuer(ca);
  const keys = await crypto.subtle.generateKey(EC_PARAMS, true, [
    "sign",
    "verify",
  ]);
  const spki = new Uint8Array(
    await crypto.subtle.exportKey("spki", keys.publicKey),
  );
  const extensions = [
    extension(OID.basicConstraints, true, sequence()),
    extension(OID.keyUsage, true, namedBits([0])),
    extension(
      OID.extKeyUsage,
      false,
      sequence(oid(usage === "server" ? OID.serverAuth : OID.clientAuth)),
    ),
    extension(
      OID.subjectKeyIdentifier,
      false,
      octetString(await keyIdentifier(spki)),
    ),
    extension(
      OID.authorityKeyIdentifier,
      false,
      sequence(implicit(0, issuer.keyId)),
    ),
  ];
  if (names.length > 0) {
    extensions.push(extension(OID.subjectAltName, false, generalNames(names)));
  }
  return await signIssued({
    issuer: issuer.subject,
    subject: distinguishedName(commonName),
    spki,
    notBefore,
    notAfter,
    extensions,
    signingKey: issuer.key,
    privateKey: keys.privateKey,
    commonName,
    names,
  });
}

/**
 * Generates a development CA, a server certificate for localhost (plus any
 * names you give) and client certificates, all signed by that CA.
 *
 * @param options Names and validity; see
 *   {@linkcode GenerateCertificatesOptions}.
 * @returns The CA, the server certificate and the client certificates by
 *   common name, each with its PKCS#8 private key (PEM).
 * @throws {TypeError} When a name is malformed or a client name repeats.
 * @throws {RangeError} When `days` is out of range or `notAfter` is not after
 *   `notBefore`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({
 *   serverNames: ["app.test"],
 *   clients: ["alice", "bob"],
 *   days: 30,
 * });
 * assert.deepEqual(set.server.subjectAltNames, [
 *   "DNS:localhost",
 *   "IP Address:127.0.0.1",
 *   "IP Address:0:0:0:0:0:0:0:1",
 *   "DNS:app.test",
 * ]);
 * assert.deepEqual(Object.keys(set.clients), ["alice", "bob"]);
 * ```
 */
export async function generateCertificates(
  options: GenerateCertificatesOptions = {},
): Promise<CertificateSet> {
  const clientNames = options.clients ?? ["client"];
  if (!Array.isArray(clientNames)) {
    throw new TypeError(
      "Cannot generate certificates: clients must be an array of common names",
    );
  }
  if (new Set(clientNames).size !== clientNames.length) {
    throw new TypeError(
      "Cannot generate certificates: client common names must be unique",
    );
  }
  const leafValidity: CertificateValidityOptions = {
    days: options.days,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
  };
  const [leafStart, leafEnd] = validity(leafValidity);
  const [caStart, caEnd] = validity({ days: options.days });
  const ca = await createCertificateAuthority({
    commonName: options.caCommonName,
    notBefore: leafStart < caStart ? leafStart : caStart,
    notAfter: leafEnd > caEnd ? leafEnd : caEnd,
  });
  const server = await issueCertificate(ca, {
    usage: "server",
    commonName: options.serverCommonName,
    names: options.serverNames,
    notBefore: leafStart,
    notAfter: leafEnd,
  });
  const clients: Record<string, IssuedCertificate> = {};
  for (const name of clientNames) {
    clients[name] = await issueCertificate(ca, {
      usage: "client",
      commonName: name,
      notBefore: leafStart,
      notAfter: leafEnd,
    });
  }
  return { ca, server, clients };
}

/**
 * The SHA-256 fingerprint of a PEM certificate (the first one in the text),
 * uppercase hex pairs joined by colons, as `openssl x509 -fingerprint
 * -sha256` prints it.
 *
 * @param pem A PEM certificate.
 * @returns The fingerprint, e.g. `"AB:CD:..."` (32 pairs).
 * @throws {TypeError} When the text holds no PEM certificate.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fingerprintCertificate, createCertificateAuthority } from "./certs.ts";
 *
 * const ca = await createCertificateAuthority();
 * assert.equal(await fingerprintCertificate(ca.cert), ca.fingerprint);
 * ```
 */
export async function fingerprintCertificate(pem: string): Promise<string> {
  return await fingerprintDer(pemDecode(pem, "CERTIFICATE", "certificate"));
}
