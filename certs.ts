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
 * await Promise.all([client.handshake(), conn.handshake()]);
 * client.close();
 * conn.close();
 * ```
 *
 * @module
 */

import {
  boolean,
  children,
  contents,
  decodeOid,
  explicit,
  implicit,
  namedBits,
  octetString,
  oid,
  raw,
  readNode,
  sequence,
  set,
  smallInteger,
  TAG,
  time,
  unsignedInteger,
  utf8String,
} from "./_asn1.ts";
import { concat, copyBytes, utf8 } from "./_bytes.ts";
import { formatIp, parseIp } from "./_ip.ts";
import {
  ecdsaWithSha256,
  pemDecode,
  pemEncode,
  signCertificate,
} from "./_x509.ts";

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

const DEFAULT_DAYS = 365;
const MAX_DAYS = 100 * 366;
const SKEW_MS = 60_000;
const DAY_MS = 86_400_000;
const LOCALHOST_NAMES = ["localhost", "127.0.0.1", "::1"];

const OID = {
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

const EC_PARAMS = { name: "ECDSA", namedCurve: "P-256" } as const;

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
 * import { createCertificateAuthority } from "./certs.ts";
 *
 * const ca = await createCertificateAuthority({ commonName: "Test CA" });
 * console.log(ca.commonName, ca.cert.startsWith("-----BEGIN CERTIFICATE"));
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
  return await sign({
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
 * console.log(alice.commonName, expired.notAfter < new Date()); // alice true
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
  return await sign({
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
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({
 *   serverNames: ["app.test"],
 *   clients: ["alice", "bob"],
 *   days: 30,
 * });
 * console.log(set.server.subjectAltNames);
 * // ["DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1",
 * //  "DNS:app.test"]
 * console.log(Object.keys(set.clients)); // ["alice", "bob"]
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

/** Options for {@linkcode writeCertificates}. */
export interface WriteCertificatesOptions {
  /**
   * Overwrite files that already exist. Without it nothing is written when
   * any target file exists.
   *
   * @default {false}
   */
  force?: boolean;
}

/** One file written by {@linkcode writeCertificates}. */
export interface WrittenCertificateFile {
  /** The file's path (the directory joined with the file name). */
  readonly path: string;
  /** Whether the file holds a certificate or a private key. */
  readonly kind: "certificate" | "private key";
  /** Which certificate of the set the file belongs to. */
  readonly role: "ca" | "server" | "client";
  /** The certificate's subject common name. */
  readonly commonName: string;
  /** The certificate's SHA-256 fingerprint (for both its files). */
  readonly fingerprint: string;
  /** The file mode set (`0o600` for keys, `0o644` for certificates). */
  readonly mode: number;
}

/** One file of a set, as {@linkcode listCertificateFiles} names it. */
export interface CertificateFile {
  /** The file name, e.g. `"server-key.pem"`. */
  readonly name: string;
  /** The PEM text to write. */
  readonly contents: string;
  /** Whether the file holds a certificate or a private key. */
  readonly kind: "certificate" | "private key";
  /** Which certificate of the set the file belongs to. */
  readonly role: "ca" | "server" | "client";
  /** The certificate the file belongs to. */
  readonly certificate: IssuedCertificate;
}

/**
 * The file names {@linkcode writeCertificates} uses for a set: `ca.pem`,
 * `ca-key.pem`, `server.pem`, `server-key.pem`, `client.pem` and
 * `client-key.pem` for the first client, and `client-<name>.pem` /
 * `client-<name>-key.pem` for each further client (the name lowercased, any
 * character outside `a-z 0-9 . _ -` replaced by `-`).
 *
 * @param set The certificate set.
 * @returns The files to write, in order, with their contents.
 * @throws {TypeError} When two client names map to the same file name.
 *
 * @example
 * ```ts
 * import { listCertificateFiles, generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: ["alice", "Bob Smith"] });
 * console.log(listCertificateFiles(set).map((file) => file.name));
 * // ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem",
 * //  "client-key.pem", "client-bob-smith.pem", "client-bob-smith-key.pem"]
 * ```
 */
export function listCertificateFiles(set: CertificateSet): CertificateFile[] {
  const entries: [string, "ca" | "server" | "client", IssuedCertificate][] = [
    ["ca", "ca", set.ca],
    ["server", "server", set.server],
  ];
  const used = new Set(["ca", "server", "client"]);
  Object.values(set.clients).forEach((client, index) => {
    if (index === 0) {
      entries.push(["client", "client", client]);
      return;
    }
    const slug = "client-" +
      client.commonName.toLowerCase().replace(/[^a-z0-9._-]/g, "-");
    if (used.has(slug)) {
      throw new TypeError(
        `Cannot name certificate files: client "${client.commonName}" maps to "${slug}.pem", which another client already uses; choose distinct names`,
      );
    }
    used.add(slug);
    entries.push([slug, "client", client]);
  });
  return entries.flatMap(([base, role, certificate]) => [
    {
      name: `${base}.pem`,
      contents: certificate.cert,
      kind: "certificate" as const,
      role,
      certificate,
    },
    {
      name: `${base}-key.pem`,
      contents: certificate.key,
      kind: "private key" as const,
      role,
      certificate,
    },
  ]);
}

/**
 * Writes a certificate set to a directory (created with mode `0o700` when
 * missing): certificates with mode `0o644`, private keys with mode `0o600`.
 * File names are those of {@linkcode listCertificateFiles}. Refuses to overwrite
 * anything unless `force` is set, and then checks every target before
 * writing any, so a refused call writes nothing.
 *
 * @param dir The directory, e.g. `"certs"`.
 * @param set The certificates to write.
 * @param options `force` to overwrite; see
 *   {@linkcode WriteCertificatesOptions}.
 * @returns What was written, in order (paths, subjects, fingerprints; never
 *   key contents).
 * @throws {Deno.errors.AlreadyExists} When a target file exists and `force`
 *   is not set.
 * @throws {Deno.errors.NotCapable} When write permission for `dir` is
 *   missing.
 *
 * @example
 * ```ts
 * import { generateCertificates, writeCertificates } from "./certs.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const written = await writeCertificates(dir, await generateCertificates());
 * console.log(written.map((file) => file.path));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeCertificates(
  dir: string,
  set: CertificateSet,
  options: WriteCertificatesOptions = {},
): Promise<WrittenCertificateFile[]> {
  const force = options.force ?? false;
  const files = listCertificateFiles(set).map((file) => ({
    ...file,
    path: joinPath(dir, file.name),
    mode: file.kind === "private key" ? 0o600 : 0o644,
  }));
  if (!force) {
    for (const file of files) {
      if (await exists(file.path)) {
        throw new Deno.errors.AlreadyExists(
          `Cannot write certificates: "${file.path}" already exists; pass force: true (--force) to overwrite, or choose another directory`,
        );
      }
    }
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const written: WrittenCertificateFile[] = [];
  const posix = Deno.build.os !== "windows";
  for (const file of files) {
    if (force) {
      // Remove first: a file created fresh gets the key's mode from the start.
      await Deno.remove(file.path).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    }
    await Deno.writeTextFile(file.path, file.contents, {
      createNew: true,
      mode: file.mode,
    });
    if (posix) await Deno.chmod(file.path, file.mode);
    written.push({
      path: file.path,
      kind: file.kind,
      role: file.role,
      commonName: file.certificate.commonName,
      fingerprint: file.certificate.fingerprint,
      mode: file.mode,
    });
  }
  return written;
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
 * import { fingerprintCertificate, createCertificateAuthority } from "./certs.ts";
 *
 * const ca = await createCertificateAuthority();
 * console.log(await fingerprintCertificate(ca.cert) === ca.fingerprint); // true
 * ```
 */
export async function fingerprintCertificate(pem: string): Promise<string> {
  return await fingerprintOf(pemDecode(pem, "CERTIFICATE", "certificate"));
}

// ---------------------------------------------------------------------------
// internals

interface SignInput {
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

async function sign(input: SignInput): Promise<IssuedCertificate> {
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
    fingerprint: await fingerprintOf(der),
    notBefore: input.notBefore,
    notAfter: input.notAfter,
  };
}

function defaultCaName(): string {
  return `connauth development CA ${
    hex(crypto.getRandomValues(new Uint8Array(4))).toUpperCase()
  }`;
}

/** 16 random bytes, top bit clear and first byte non-zero: positive, 128 bits. */
function randomSerial(): Uint8Array<ArrayBuffer> {
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0] & 0x7f) || 0x01;
  return serial;
}

function extension(
  id: string,
  critical: boolean,
  value: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

function distinguishedName(commonName: string): Uint8Array<ArrayBuffer> {
  return sequence(set(sequence(oid(OID.commonName), utf8String(commonName))));
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey BIT STRING's value. */
async function keyIdentifier(
  spki: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const point = spkiPoint(spki);
  return new Uint8Array(await crypto.subtle.digest("SHA-1", copyBytes(point)));
}

function spkiPoint(spki: Uint8Array): Uint8Array {
  const root = readNode(spki, 0);
  const [, key] = children(spki, root);
  if (!key || key.tag !== TAG.BIT_STRING) {
    throw new TypeError(
      "Cannot read public key: malformed SubjectPublicKeyInfo",
    );
  }
  return contents(spki, key).subarray(1);
}

function generalNames(names: string[]): Uint8Array<ArrayBuffer> {
  return sequence(
    ...names.map((name) => {
      const ip = parseIp(name);
      return ip ? implicit(7, ip) : implicit(2, utf8(name));
    }),
  );
}

/** A SAN as `openssl x509 -ext subjectAltName` prints it. */
function displayName(name: string): string {
  const ip = parseIp(name);
  return ip ? `IP Address:${formatIp(ip)}` : `DNS:${name}`;
}

function dedupe(names: string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const name of names) {
    const key = parseIp(name)?.join(",") ?? name.toLowerCase();
    if (!seen.has(key)) {
      seen.add(key);
      out.push(name);
    }
  }
  return out;
}

const DNS_LABEL = /^([a-z0-9]|[a-z0-9][a-z0-9-]{0,61}[a-z0-9])$/i;

function checkNames(names: string[]): string[] {
  if (!Array.isArray(names)) {
    throw new TypeError(
      "Cannot use names: expected an array of DNS names or IP addresses",
    );
  }
  return names.map((name) => {
    if (typeof name !== "string") {
      throw new TypeError(
        `Cannot use name: expected a string, got ${typeof name}`,
      );
    }
    if (parseIp(name)) return name.replace(/^\[(.*)\]$/, "$1");
    const labels = name.split(".");
    if (/^[0-9]+$/.test(labels[labels.length - 1])) {
      throw new TypeError(
        `Cannot use name "${name}": it looks like an IP address but is not a valid IPv4 or IPv6 address`,
      );
    }
    const ok = name.length <= 253 &&
      labels.every((label, i) =>
        DNS_LABEL.test(label) || (i === 0 && label === "*" && labels.length > 2)
      );
    if (!ok) {
      throw new TypeError(
        `Cannot use name "${name}": expected a DNS name (letters, digits, hyphens, dots; "*." only as the first label) or an IPv4/IPv6 address`,
      );
    }
    return name.toLowerCase();
  });
}

function checkCommonName(name: string, what: string): string {
  if (typeof name !== "string" || name.length === 0 || name.length > 64) {
    throw new TypeError(
      `Cannot use ${what}: expected 1 to 64 characters, got ${
        typeof name === "string" ? `${name.length}` : typeof name
      }`,
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw new TypeError(
      `Cannot use ${what}: control characters are not allowed`,
    );
  }
  return name;
}

function validity(options: CertificateValidityOptions): [Date, Date] {
  const days = options.days ?? DEFAULT_DAYS;
  if (typeof days !== "number" || !Number.isFinite(days)) {
    throw new TypeError(
      `Cannot use days: expected a number, got ${typeof days}`,
    );
  }
  if (days <= 0 || days > MAX_DAYS) {
    throw new RangeError(
      `Cannot use days: expected more than 0 and at most ${MAX_DAYS}, got ${days}`,
    );
  }
  for (const key of ["notBefore", "notAfter"] as const) {
    const value = options[key];
    if (
      value !== undefined &&
      (!(value instanceof Date) || Number.isNaN(value.getTime()))
    ) {
      throw new TypeError(`Cannot use ${key}: expected a valid Date`);
    }
  }
  const now = Date.now();
  const start = options.notBefore?.getTime() ?? now - SKEW_MS;
  const end = options.notAfter?.getTime() ??
    (options.notBefore ? start : now) + days * DAY_MS;
  const notBefore = new Date(Math.floor(start / 1000) * 1000);
  const notAfter = new Date(Math.floor(end / 1000) * 1000);
  if (notAfter <= notBefore) {
    throw new RangeError(
      `Cannot use validity: notAfter (${notAfter.toISOString()}) must be after notBefore (${notBefore.toISOString()})`,
    );
  }
  return [notBefore, notAfter];
}

interface Issuer {
  subject: Uint8Array;
  keyId: Uint8Array;
  key: CryptoKey;
}

async function loadIssuer(ca: CertificateAndKey): Promise<Issuer> {
  if (
    typeof ca !== "object" || ca === null || typeof ca.cert !== "string" ||
    typeof ca.key !== "string"
  ) {
    throw new TypeError(
      "Cannot issue certificate: ca must be { cert, key } PEM strings, e.g. from createCertificateAuthority()",
    );
  }
  const der = pemDecode(ca.cert, "CERTIFICATE", "CA certificate");
  let subject: Uint8Array;
  let spki: Uint8Array;
  let keyId: Uint8Array | undefined;
  let isCa = false;
  try {
    const root = readNode(der, 0);
    const [tbsNode] = children(der, root);
    const fields = children(der, tbsNode);
    const offset = fields[0].tag === 0xa0 ? 1 : 0;
    subject = raw(der, fields[offset + 4]);
    spki = raw(der, fields[offset + 5]);
    const extensionsNode = fields.find((field) => field.tag === 0xa3);
    const list = extensionsNode
      ? children(der, children(der, extensionsNode)[0])
      : [];
    for (const ext of list) {
      const parts = children(der, ext);
      const id = decodeOid(contents(der, parts[0]));
      const value = contents(der, parts[parts.length - 1]);
      if (id === OID.subjectKeyIdentifier) {
        keyId = contents(value, readNode(value, 0));
      } else if (id === OID.basicConstraints) {
        const seq = readNode(value, 0);
        const first = children(value, seq)[0];
        isCa = first?.tag === TAG.BOOLEAN && value[first.contentStart] !== 0;
      }
    }
  } catch (error) {
    throw new TypeError(
      "Cannot issue certificate: the CA certificate is not a valid X.509 certificate",
      { cause: error },
    );
  }
  if (!isCa) {
    throw new TypeError(
      "Cannot issue certificate: the CA certificate is not a CA (basicConstraints CA:TRUE missing); pass the CA's certificate, not a leaf",
    );
  }
  let key: CryptoKey;
  let jwk: JsonWebKey;
  try {
    key = await crypto.subtle.importKey(
      "pkcs8",
      pemDecode(ca.key, "PRIVATE KEY", "CA key"),
      EC_PARAMS,
      true,
      ["sign"],
    );
    jwk = await crypto.subtle.exportKey("jwk", key);
  } catch (error) {
    if (error instanceof TypeError && error.message.includes("PEM")) {
      throw error;
    }
    throw new TypeError(
      "Cannot issue certificate: the CA key is not an ECDSA P-256 PKCS#8 key; use a CA made by createCertificateAuthority() or generateCertificates()",
      { cause: error },
    );
  }
  const point = concat(
    Uint8Array.of(4),
    base64UrlDecode(jwk.x ?? ""),
    base64UrlDecode(jwk.y ?? ""),
  );
  if (!equalBytes(point, spkiPoint(spki))) {
    throw new TypeError(
      "Cannot issue certificate: the CA key does not match the CA certificate; pass the key file written with it (ca-key.pem)",
    );
  }
  return {
    subject,
    keyId: keyId ?? await keyIdentifier(spki),
    key,
  };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function base64UrlDecode(text: string): Uint8Array<ArrayBuffer> {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(
    atob(b64 + "=".repeat((4 - b64.length % 4) % 4)),
    (c) => c.charCodeAt(0),
  );
}

async function fingerprintOf(der: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", copyBytes(der)),
  );
  return [...digest].map((b) => b.toString(16).padStart(2, "0").toUpperCase())
    .join(":");
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? `${dir}${name}` : `${dir}/${name}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
