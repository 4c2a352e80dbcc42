// Private: what listenTls() makes of a client's certificate once the TLS
// handshake is done. The runtime's verdict (`socket.authorized`) is taken
// before anything the client sent is parsed; its identity is then read
// only by connauth's own strict reader (_tls_identity.ts), and a refusal
// says why in the client's terms (unknown CA, expired, wrong key usage, no
// certificate, unreadable...). Also how a refused client is named in a
// message, and an error's text for one.
// About 300 lines: verifying one client certificate and explaining its
// refusal are one step, and the explanation is most of it.
import type * as nodeTls from "node:tls";
import { X509Certificate } from "node:crypto";
import type { PeerIdentity, TlsFailure } from "./tls.ts";
import { type CertificateFacts, readCertificate } from "./_tls_identity.ts";
import { fingerprintOf } from "./_pem.ts";

/**
 * A certificate's identity, read only by our own reader (`_tls_identity.ts`).
 * Throws a TypeError on a certificate that reader cannot read; the runtime's
 * `X509Certificate` strings are never a fallback (they do not escape, so a
 * value holding "\nCN=x" would read as another attribute).
 */
export function identityOf(
  der: Uint8Array,
  facts?: CertificateFacts,
): PeerIdentity {
  const read = facts ?? readCertificate(der);
  return Object.freeze({
    cn: read.cn,
    subject: read.subject,
    san: Object.freeze([...read.san]),
    issuer: read.issuer,
    validFrom: read.validFrom,
    validTo: read.validTo,
    fingerprint256: fingerprintOf(der),
    serialNumber: read.serialNumber,
  });
}

/** Why a client was refused, and who it was when that is known. */
export interface Refusal {
  readonly reason: TlsFailure;
  /** What happened and what to do, without "Cannot ...". */
  readonly message: string;
  readonly identity: PeerIdentity | null;
}

/** What a listener accepts as client certificates. */
export interface ClientPolicy {
  /** Refuse a client that sent no certificate. */
  readonly requireClientCert: boolean;
  /** The CAs that sign the client certificates (to say why one failed). */
  readonly clientCas: readonly X509Certificate[];
}

/**
 * Checks the certificate of a client whose TLS handshake completed on a
 * listener that asked for one: its identity (`null` when it sent none and
 * may), or why it is refused. `seen.identity` is set as soon as the
 * identity is known, so a throw after that can still name the client.
 */
export function verifyClient(
  socket: nodeTls.TLSSocket,
  policy: ClientPolicy,
  seen: { identity: PeerIdentity | null },
): { identity: PeerIdentity | null } | { refusal: Refusal } {
  // Authorization first: the runtime's verdict, before anything of the
  // peer's certificate is parsed.
  const authorized = socket.authorized === true;
  const der = peerCertificateDer(socket);
  if (der instanceof Error) {
    return refuse(
      authorized ? "unreadable-certificate" : "handshake",
      `the certificate of a client was refused: ${
        authorized
          ? ""
          : `it did not verify (${
            runtimeCode(socket) ?? "unknown reason"
          }) and `
      }the runtime cannot parse it (${
        errorText(der)
      }); issue the client a well-formed certificate from a CA in \`clientCa\``,
      null,
    );
  }
  if (der === null) {
    if (!policy.requireClientCert) return { identity: null };
    return refuse(
      "no-certificate",
      "the client sent no certificate; this server requires one (the client must present a certificate signed by a CA in `clientCa`)",
      null,
    );
  }
  if (!authorized) {
    // Refused already; read it (guarded) only to say why and who.
    let facts: CertificateFacts | null = null;
    let identity: PeerIdentity | null = null;
    try {
      facts = readCertificate(der);
      identity = identityOf(der, facts);
    } catch {
      identity = null;
    }
    seen.identity = identity;
    const { reason, detail } = diagnoseClientCert(
      der,
      facts,
      policy.clientCas,
      runtimeCode(socket),
    );
    return refuse(
      reason,
      `the certificate of ${
        identity
          ? describe(identity)
          : `a client (SHA-256 ${fingerprintOf(der)})`
      } was refused: ${detail}`,
      identity,
    );
  }
  try {
    seen.identity = identityOf(der);
  } catch (error) {
    return refuse(
      "unreadable-certificate",
      `the certificate of a client (SHA-256 ${
        fingerprintOf(der)
      }) verified against \`clientCa\` but was refused: connauth cannot read it (${
        errorText(error)
      }); issue the client a well-formed certificate`,
      null,
    );
  }
  return { identity: seen.identity };
}

function refuse(
  reason: TlsFailure,
  message: string,
  identity: PeerIdentity | null,
): { refusal: Refusal } {
  return { refusal: { reason, message, identity } };
}

const OID_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const OID_ANY_EKU = "2.5.29.37.0";

/** Calls `fn`; its throw or an invalid date becomes `undefined`. */
function tryDate(fn: () => string | undefined): Date | undefined {
  try {
    const text = fn();
    if (typeof text !== "string") return undefined;
    const date = new Date(text);
    return Number.isNaN(date.getTime()) ? undefined : date;
  } catch {
    return undefined;
  }
}

/**
 * Explains why a client certificate did not verify against `cas`. `facts`
 * is what our reader made of it (null when it could not read it). The
 * runtime's `X509Certificate` is only consulted here, for a certificate
 * that is refused anyway, and every use of it is guarded: for hostile DER
 * its constructor may throw and its getters may be undefined or throw.
 */
function diagnoseClientCert(
  der: Uint8Array,
  facts: CertificateFacts | null,
  cas: readonly X509Certificate[],
  runtimeCode: string | undefined,
): { reason: TlsFailure; detail: string } {
  let cert: X509Certificate | null = null;
  try {
    cert = new X509Certificate(der);
  } catch {
    // not even the runtime can read it
  }
  const signer = cert && cas.find((ca) => {
    try {
      return cert.checkIssued(ca) && cert.verify(ca.publicKey);
    } catch {
      return false;
    }
  });
  if (!signer) {
    return {
      reason: "unknown-ca",
      detail: `${
        facts ? `its issuer "${clip(facts.issuer)}"` : "its issuer"
      } is not one of the client CAs; add that CA to \`clientCa\` or issue the client a certificate from a trusted CA`,
    };
  }
  const runtime = cert as X509Certificate;
  const validTo = facts?.validTo ?? tryDate(() => runtime.validTo);
  const validFrom = facts?.validFrom ?? tryDate(() => runtime.validFrom);
  const now = Date.now();
  if (validTo && now > validTo.getTime()) {
    return {
      reason: "expired",
      detail:
        `it expired on ${validTo.toISOString()}; issue the client a new certificate`,
    };
  }
  if (validFrom && now < validFrom.getTime()) {
    return {
      reason: "not-yet-valid",
      detail:
        `it is not valid before ${validFrom.toISOString()}; check the clocks or the certificate's start date`,
    };
  }
  const eku = facts?.extendedKeyUsage ?? null;
  if (
    eku !== null && !eku.includes(OID_CLIENT_AUTH) && !eku.includes(OID_ANY_EKU)
  ) {
    return {
      reason: "wrong-key-usage",
      detail:
        "its extended key usage does not include clientAuth (a server certificate used as a client certificate?); issue a client certificate",
    };
  }
  return {
    reason: "handshake",
    detail: `it did not verify (${
      runtimeCode ?? "unknown reason"
    }); check the certificate chain against \`clientCa\`${
      facts ? "" : " (connauth cannot read it either)"
    }`,
  };
}

/** An error's message for a report, without throwing on odd values. */
export function errorText(error: unknown): string {
  try {
    const message = (error as Error | null)?.message;
    return typeof message === "string" ? message : String(error);
  } catch {
    return "unknown error";
  }
}

/** The runtime's verification error code for a refused client, if any. */
function runtimeCode(socket: nodeTls.TLSSocket): string | undefined {
  try {
    const code = socket.authorizationError;
    return code === null || code === undefined ? undefined : String(code);
  } catch {
    return undefined;
  }
}

/**
 * The DER of the client's certificate; `null` when it sent none; an Error
 * when it sent one the runtime cannot parse (Deno 2.9.6 then gives an empty
 * `getPeerCertificate()`, and `getPeerX509Certificate()` throws). Only the
 * raw bytes are taken; the runtime's parsed fields are not used.
 */
export function peerCertificateDer(
  socket: nodeTls.TLSSocket,
): Uint8Array | null | Error {
  const peer = socket.getPeerCertificate(false) as
    | { raw?: Uint8Array }
    | undefined
    | null;
  const raw = peer?.raw;
  if (raw instanceof Uint8Array && raw.byteLength > 0) {
    return new Uint8Array(raw);
  }
  try {
    const x509 = (socket as {
      getPeerX509Certificate?: () => X509Certificate | undefined;
    }).getPeerX509Certificate?.();
    if (x509 === undefined) return null;
    return new Uint8Array(x509.raw);
  } catch (error) {
    return error instanceof Error ? error : new Error(errorText(error));
  }
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
