// Private: certificates and keys given as options. PEM text or a file path
// (never guessed from the string), split into certificates, parsed, and a
// private key checked against its certificate before anything listens or
// connects. Shared by listenTls() and connectTls() (and by serveHttps() for
// its certFile/keyFile/clientCaFile).
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  X509Certificate,
} from "node:crypto";
import { TlsError } from "./tls.ts";
import { deadline } from "./_deadline.ts";
import { readCertificate } from "./_tls_identity.ts";

/**
 * Longest wait for a PEM file, in milliseconds. A named pipe nobody writes
 * to never finishes reading, and setCredentials() calls run one after the
 * other: without a deadline, one such path would hold every later
 * rotation (and listenTls()) for ever.
 */
export const FILE_READ_TIMEOUT = 10_000;

/** Where a PEM option comes from, for reading it and naming it in errors. */
export interface PemOption {
  /** What it holds, for messages: `"the server certificate"`. */
  what: string;
  /** The name of the text option: `"cert"`. */
  textOption: string;
  /** The name of the path option: `"certFile"`. */
  fileOption: string;
}

/**
 * The PEM text of an option given as text (`text`, one string or several)
 * or as a path (`file`); undefined when neither is given. `action` starts
 * the messages: `Cannot ${action}: ...`.
 *
 * @throws {TypeError} When both are given, a path is not a string, or the
 *   text is not PEM.
 * @throws {Deno.errors.NotFound} When the file does not exist.
 * @throws {Deno.errors.TimedOut} When the file is not read within
 *   `timeout` milliseconds.
 */
export async function readPem(
  text: string | string[] | undefined,
  file: string | undefined,
  option: PemOption,
  action: string,
  timeout: number = FILE_READ_TIMEOUT,
): Promise<string | undefined> {
  const { what, textOption, fileOption } = option;
  if (text !== undefined && file !== undefined) {
    throw new TypeError(
      `Cannot ${action}: give ${what} as \`${textOption}\` (PEM text) or \`${fileOption}\` (a path), not both`,
    );
  }
  if (file !== undefined) {
    if (typeof file !== "string") {
      throw new TypeError(
        `Cannot ${action}: \`${fileOption}\` must be a path string, got ${typeof file}`,
      );
    }
    using limit = deadline(timeout, undefined, `read ${what}`);
    try {
      return await Deno.readTextFile(file, { signal: limit.signal });
    } catch (cause) {
      if (limit.signal.aborted) {
        throw new Deno.errors.TimedOut(
          `Cannot ${action}: ${what} file "${file}" was not read within ${timeout} ms (a named pipe nobody writes to, or a stalled network file system?); check \`${fileOption}\``,
          { cause },
        );
      }
      if (cause instanceof Deno.errors.NotFound) {
        throw new Deno.errors.NotFound(
          `Cannot ${action}: ${what} file "${file}" does not exist; check \`${fileOption}\` (development certificates: deno task certs)`,
          { cause },
        );
      }
      throw cause;
    }
  }
  if (text === undefined) return undefined;
  const joined = Array.isArray(text) ? text.join("\n") : text;
  if (typeof joined !== "string" || !joined.includes("-----BEGIN")) {
    throw new TypeError(
      `Cannot ${action}: \`${textOption}\` must be PEM text ("-----BEGIN ..."); to read ${what} from a file, use \`${fileOption}\``,
    );
  }
  return joined;
}

const PEM_CERT =
  /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The `CERTIFICATE` blocks of PEM text, in order. */
export function splitCerts(pem: string): string[] {
  return pem.match(PEM_CERT) ?? [];
}

/**
 * The certificate blocks of a certificate option; throws a TypeError when
 * it holds none.
 */
export function requireCerts(
  pem: string,
  action: string,
  option: string,
): string[] {
  const blocks = splitCerts(pem);
  if (blocks.length === 0) {
    throw new TypeError(
      `Cannot ${action}: \`${option}\` holds no "-----BEGIN CERTIFICATE-----" block`,
    );
  }
  return blocks;
}

/** The first certificate of a PEM option, parsed by the runtime. */
export function parseCert(
  pem: string,
  action: string,
  option: string,
): X509Certificate {
  const first = requireCerts(pem, action, option)[0];
  try {
    return new X509Certificate(first);
  } catch (cause) {
    throw new TypeError(
      `Cannot ${action}: \`${option}\` is not a valid certificate`,
      { cause },
    );
  }
}

/** A certificate and its key as read from options, with the option names. */
export interface KeyPair {
  cert: string;
  key: string;
  /** `"cert"` or `"certFile"`, whichever held the certificate. */
  certOption: string;
  /** `"key"` or `"keyFile"`. */
  keyOption: string;
}

/**
 * Checks that the private key belongs to the certificate.
 *
 * @throws {TypeError} When the key or the certificate cannot be read.
 * @throws {TlsError} `"key-mismatch"` when the key is another one's.
 */
export function checkKeyPair(pair: KeyPair, action: string): void {
  const { certOption, keyOption } = pair;
  const cert = parseCert(pair.cert, action, certOption);
  let key;
  try {
    key = createPrivateKey(pair.key);
  } catch (cause) {
    throw new TypeError(
      `Cannot ${action}: \`${keyOption}\` is not a readable private key (PEM PKCS#8, SEC1 or PKCS#1, unencrypted)`,
      { cause },
    );
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(key);
  } catch {
    // Fallback: compare public keys.
    matches = createPublicKey(key).export({ format: "der", type: "spki" })
      .equals(cert.publicKey.export({ format: "der", type: "spki" }));
  }
  if (!matches) {
    throw new TlsError(
      `Cannot ${action}: the private key in \`${keyOption}\` does not belong to the certificate in \`${certOption}\` (${
        certificateLabel(new Uint8Array(cert.raw))
      }); pass the key that was generated together with this certificate`,
      "key-mismatch",
    );
  }
}

/**
 * Reads a certificate chain and its key (text or file each), checked as a
 * pair; undefined when neither is given. Messages name the options
 * `${prefix}cert`, `${prefix}keyFile`, ... (a prefix such as
 * `sni["a.test"].` names an option inside another).
 *
 * @throws {TypeError} When only one of them is given (`missing` says what
 *   to tell the user), or as {@linkcode readPem}.
 * @throws {TlsError} `"key-mismatch"`.
 */
export async function readKeyPair(
  options: {
    cert?: string;
    key?: string;
    certFile?: string;
    keyFile?: string;
  },
  names: { cert: string; key: string },
  action: string,
  missing: string,
  prefix = "",
): Promise<KeyPair | undefined> {
  const cert = await readPem(options.cert, options.certFile, {
    what: names.cert,
    textOption: `${prefix}cert`,
    fileOption: `${prefix}certFile`,
  }, action);
  const key = await readPem(options.key, options.keyFile, {
    what: names.key,
    textOption: `${prefix}key`,
    fileOption: `${prefix}keyFile`,
  }, action);
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new TypeError(`Cannot ${action}: ${missing}`);
  }
  const pair = {
    cert,
    key,
    certOption: `${prefix}${options.cert !== undefined ? "cert" : "certFile"}`,
    keyOption: `${prefix}${options.key !== undefined ? "key" : "keyFile"}`,
  };
  checkKeyPair(pair, action);
  return pair;
}

/** SHA-256 of DER, uppercase hex pairs joined by colons. */
export function fingerprintOf(der: Uint8Array): string {
  const hex = createHash("sha256").update(der).digest("hex").toUpperCase();
  return hex.match(/../g)!.join(":");
}

/** Names a certificate in a message: its subject, or its fingerprint. */
export function certificateLabel(der: Uint8Array): string {
  try {
    return `subject "${readCertificate(der).subject}"`;
  } catch {
    return `SHA-256 ${fingerprintOf(der)}`;
  }
}
