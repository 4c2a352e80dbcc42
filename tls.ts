// The public surface of connauth's TLS support: its types and the two
// functions that open connections. Most of this file is their documentation
// and examples, which users read here; the machinery lives in
// _tls_{listener,server,server_conn,client_conn,conn,connect,handshakes,
// authorize,diagnosis,identity,allow,client_errors,sni,credentials}.ts and
// _pem.ts, one concept each.
/**
 * TLS servers and clients, with mutual TLS (client certificates required and
 * verified) and the verified peer's identity.
 *
 * - {@linkcode listenTls} opens a TLS listener. Its connections have the
 *   shape of a `Deno.Conn` (`readable`, `writable`, `close()`, `remoteAddr`,
 *   `localAddr`), so `serve()` and the HMAC handshake run on them unchanged,
 *   plus {@linkcode TlsServerConn.peerIdentity}: the client certificate's
 *   subject, SANs, issuer, validity and SHA-256 fingerprint. With `clientCa`
 *   it requires and verifies client certificates; `allow` / `authorize`
 *   narrow that down to named clients. `sni` picks a certificate by the
 *   server name a client asks for, and
 *   {@linkcode TlsListener.setCredentials} replaces the certificate, key,
 *   client CAs or SNI map without a restart (new handshakes use them,
 *   established connections go on).
 * - {@linkcode connectTls} opens a verified TLS client connection (Deno's
 *   default roots plus `caCerts`, hostname checked, optional client
 *   certificate) and
 *   turns the usual failures into a {@linkcode TlsError} naming the cause and
 *   the fix.
 *
 * Backend: the server runs on `node:tls` for plain and mutual TLS alike,
 * because `Deno.listenTls` cannot require client certificates and its
 * connections expose no `setNoDelay`: with Nagle on, a server that writes
 * twice in a row stalls about 40 ms per exchange against a delayed-ACK
 * client. Every accepted socket here has Nagle off. The client runs on
 * `Deno.connectTls` (rustls), which verifies more strictly than the
 * `node:tls` client (it refuses version-1 certificates and `CA:TRUE`
 * certificates used as server certificates).
 *
 * One limit of that backend on Deno 2.9.6: a paused `node:tls` socket keeps
 * reading from TCP, so the server cannot push back on a fast sender; a peer
 * that gets more than `readBufferLimit` bytes (16 MiB) ahead of the
 * application is cut off instead of filling memory.
 *
 * Certificates and keys are PEM text in `cert` / `key` / `clientCa` /
 * `caCerts`; file paths go in the separate `certFile` / `keyFile` /
 * `clientCaFile` / `caFile` options. Nothing is guessed from the string.
 *
 * @example Mutual TLS on loopback
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectTls, listenTls } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: ["alice"] });
 * await using listener = await listenTls({
 *   cert: set.server.cert,
 *   key: set.server.key,
 *   clientCa: set.ca.cert,
 *   allow: { cn: ["alice"] },
 * });
 * const [server, client] = await Promise.all([
 *   listener.accept(),
 *   connectTls({
 *     hostname: "localhost",
 *     port: listener.addr.port,
 *     caCerts: [set.ca.cert],
 *     cert: set.clients.alice.cert,
 *     key: set.clients.alice.key,
 *   }),
 * ]);
 * assert.equal(server.peerIdentity?.cn, "alice");
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

// The public TLS module: its types (every option documented here, hence
// the length) and the two entry points, listenTls() and connectTls(),
// which check their options and hand over to the private _tls_*.ts files
// (one concept each; _tls_server.ts says how a connection is accepted,
// _tls_connect.ts how a client connects).
import {
  checkIpv6Prefix,
  checkLimit,
  checkPort,
  checkTimeout,
} from "./_options.ts";
import { DEFAULT_TIMEOUT } from "./_deadline.ts";
import type { Duplex, ErrorInfo } from "./types.ts";
import { readKeyPair, readPem, requireCerts } from "./_pem.ts";
import { readCredentials } from "./_tls_credentials.ts";
import { openTlsServer } from "./_tls_server.ts";
import { openClientConn } from "./_tls_connect.ts";

// ---------------------------------------------------------------------------
// Public types

/**
 * The identity in a verified client certificate.
 *
 * String formats follow `openssl x509` (OpenSSL 3.0) so that values can be
 * compared with, or pasted from, its output: `subject` / `issuer` as
 * `-subject` prints them with its default `-nameopt oneline`
 * (`"CN = alice"`, `"C = DE, O = Acme, CN = alice"`; a value holding `,` `+`
 * `;` `<` `>`, a leading `#` or a leading or trailing space is quoted, `"`
 * and `\` get a backslash, control characters and every non-ASCII UTF-8
 * byte are written `\XX`, as in `CN = Zo\C3\AB`), `san` as `-ext
 * subjectAltName` prints each entry (`"DNS:alice.test"`, `"IP Address:127.0.0.1"`,
 * `"IP Address:FD00:0:0:0:0:0:0:5"` for `fd00::5`, `"email:a@b.test"`),
 * `fingerprint256` as `-fingerprint -sha256` prints it. Attribute types are
 * named as openssl names them (`CN`, `O`, `OU`, `emailAddress`, `DC`, ...);
 * a rare type openssl knows by name may show here as a dotted OID, and so
 * may a `Registered ID` SAN.
 */
export interface PeerIdentity {
  /**
   * The value of the subject's first common name (`CN`) attribute as text,
   * unescaped (`"Zoë"`, `"a, b"`), or `undefined` when there is none. This
   * is what `allow.cn` compares.
   */
  readonly cn: string | undefined;
  /** The subject distinguished name (`"CN = alice"`), escaped as above. */
  readonly subject: string;
  /**
   * The subject alternative names (`["DNS:alice.test"]`), maybe empty. IPv6
   * addresses are written out as openssl does (`"IP Address:FD00:0:0:0:0:0:0:5"`).
   */
  readonly san: readonly string[];
  /** The issuer distinguished name (`"CN = connauth development CA"`). */
  readonly issuer: string;
  /** Start of the certificate's validity. */
  readonly validFrom: Date;
  /** End of the certificate's validity. */
  readonly validTo: Date;
  /**
   * SHA-256 of the DER certificate, uppercase hex pairs joined by colons
   * (`"AB:CD:..."`).
   */
  readonly fingerprint256: string;
  /**
   * The serial number, uppercase hex in whole bytes, as `openssl x509
   * -serial` prints it (`-` first for a negative one, which some
   * non-conforming CAs issue).
   */
  readonly serialNumber: string;
}

/**
 * Why a TLS connection failed or was refused.
 *
 * Client side ({@linkcode TlsError.reason}): `"unknown-ca"`,
 * `"hostname-mismatch"`, `"expired"`, `"not-yet-valid"`, `"version-1"`,
 * `"ca-as-leaf"`, `"certificate-required"` (the server wants a client
 * certificate), `"certificate-refused"` (the server refused ours),
 * `"key-mismatch"`, `"handshake"` (anything else).
 *
 * Server side (the error's `reason` in `onError`, see
 * {@linkcode TlsErrorInfo}) adds `"no-certificate"`,
 * `"wrong-key-usage"`, `"unreadable-certificate"` (the certificate verified
 * but connauth's own reader cannot read it unambiguously: malformed or
 * BER-only DER, a name attribute without a value, an empty RDN, a common
 * name or alternative name that is not a valid string of its type, an IP
 * address name not 4 or 16 bytes long, an impossible or non-UTC time, an
 * extension present twice, an empty list where X.509 requires at least one
 * element; such a client is refused, never identified by a guess),
 * `"not-allowed"` (verified, but not in `allow` or refused by `authorize`),
 * `"authorize-timeout"` (the `authorize` hook did not answer within
 * `authorizeTimeout`), `"too-large"` (the client sent more than
 * `readBufferLimit` bytes while the hook ran), `"queue-full"`, `"evicted"`
 * (closed in its handshake to make room: `maxHandshakes` were in their
 * handshake and its address held the most) and `"max-per-address"` (its
 * address already had `maxPerAddress` connections in their handshake).
 * `"handshake"` also covers a client that closed before finishing the
 * handshake, and a connection closed after an internal error.
 */
export type TlsFailure =
  | "unknown-ca"
  | "hostname-mismatch"
  | "expired"
  | "not-yet-valid"
  | "version-1"
  | "ca-as-leaf"
  | "certificate-required"
  | "certificate-refused"
  | "no-certificate"
  | "wrong-key-usage"
  | "unreadable-certificate"
  | "not-allowed"
  | "authorize-timeout"
  | "too-large"
  | "key-mismatch"
  | "queue-full"
  | "evicted"
  | "max-per-address"
  | "handshake";

/**
 * A TLS failure with its cause: a certificate the client does not trust, a
 * server that refused our client certificate, a key that does not match its
 * certificate. The message names the cause and the fix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TlsError } from "./tls.ts";
 *
 * const error = new TlsError("Cannot connect with TLS: ...", "unknown-ca");
 * assert.equal(error.name, "TlsError");
 * assert.equal(error.reason, "unknown-ca");
 * ```
 */
export class TlsError extends Error {
  /** Machine-readable cause, for logs and tests. */
  readonly reason: TlsFailure;

  /**
   * Creates a TLS error.
   *
   * @param message A sentence-case message naming the cause and the fix.
   * @param reason The machine-readable cause.
   * @param options The standard error options (`cause`).
   */
  constructor(message: string, reason: TlsFailure, options?: ErrorOptions) {
    super(message, options);
    this.name = "TlsError";
    this.reason = reason;
  }
}

/**
 * Where a listener's connection failed or was refused:
 *
 * - `"accept"`: before its TLS handshake, or on its way to `accept()`
 *   (`"evicted"`, `"max-per-address"`, `"queue-full"`, an internal error);
 * - `"handshake"`: in its TLS handshake (it failed, stalled past
 *   `handshakeTimeout`, or the client closed);
 * - `"verify"`: its client certificate was missing, did not verify, or
 *   could not be read;
 * - `"authorize"`: verified, but not in `allow`, refused by the `authorize`
 *   hook, or no answer from the hook in time.
 */
export type TlsErrorPhase = "accept" | "handshake" | "verify" | "authorize";

/**
 * What {@linkcode ListenTlsOptions.onError} is told besides the error: the
 * phase, the client's address and, when it sent a certificate connauth
 * could read, its identity. The error is a {@linkcode TlsError}: its
 * `reason` says why, its `message` what to do, its `cause` the underlying
 * error when there is one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TlsError, type TlsErrorInfo } from "./tls.ts";
 *
 * const seen: string[] = [];
 * const onError = (error: TlsError, info: TlsErrorInfo) =>
 *   seen.push(`${info.phase} ${error.reason} ${info.identity?.cn ?? "-"}`);
 * onError(new TlsError("Cannot accept the TLS connection: ...", "expired"), {
 *   phase: "verify",
 *   identity: null,
 * });
 * assert.deepEqual(seen, ["verify expired -"]);
 * ```
 */
export interface TlsErrorInfo extends ErrorInfo {
  /** Where it failed. */
  readonly phase: TlsErrorPhase;
  /** The client's address, when known. */
  readonly remoteAddr?: Deno.NetAddr;
  /** The client certificate's identity, when it sent one we could read. */
  readonly identity: PeerIdentity | null;
}

/** Which verified clients a mutual-TLS listener accepts. */
export interface TlsAllowList {
  /** Subject common names to accept. */
  cn?: string[];
  /**
   * Subject alternative names to accept: `"DNS:alice.test"`,
   * `"IP Address:10.0.0.5"` (or `"IP:10.0.0.5"`), or the bare value. IP
   * addresses match by value, in any notation: `"IP:fd00::5"` matches the
   * SAN openssl prints as `"IP Address:FD00:0:0:0:0:0:0:5"`. DNS names match
   * without regard to case (`"DNS:Alice.Test"` matches `"DNS:alice.test"`);
   * everything else matches exactly.
   */
  san?: string[];
  /** SHA-256 fingerprints to accept (`"AB:CD:..."`; case and colons free). */
  fingerprint?: string[];
}

/**
 * The certificate and key a listener presents to clients that ask for one
 * server name (SNI): an entry of {@linkcode ListenTlsOptions.sni}. Give
 * `cert` and `key` as PEM text, or `certFile` and `keyFile` as paths; they
 * are checked as the default `cert` / `key` are (PEM, the key belongs to
 * the certificate).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SniCertificate } from "./tls.ts";
 * import { createCertificateAuthority, issueCertificate } from "./certs.ts";
 *
 * const ca = await createCertificateAuthority();
 * const api = await issueCertificate(ca, { names: ["api.example.test"] });
 * const entry: SniCertificate = { cert: api.cert, key: api.key };
 * assert.ok(entry.cert?.startsWith("-----BEGIN CERTIFICATE-----"));
 * ```
 */
export interface SniCertificate {
  /**
   * The certificate chain, PEM text. Give this or `certFile`.
   *
   * @default {undefined}
   */
  cert?: string;
  /**
   * The certificate's private key, PEM text. Give this or `keyFile`.
   *
   * @default {undefined}
   */
  key?: string;
  /**
   * Path of a PEM file holding the certificate chain, read when the
   * listener opens (or when `setCredentials()` is called).
   *
   * @default {undefined}
   */
  certFile?: string;
  /**
   * Path of a PEM file holding the private key, read with `certFile`.
   *
   * @default {undefined}
   */
  keyFile?: string;
}

/**
 * New credentials for {@linkcode TlsListener.setCredentials}: a field left
 * out keeps what is in force. A new certificate needs its key (and the
 * other way round); `clientCa` (or `clientCaFile`) replaces the client CAs
 * of a listener opened with `clientCa`; `sni` replaces the whole SNI map
 * (`{}` removes every name).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TlsCredentials } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const next = await generateCertificates({ clients: [] });
 * const credentials: TlsCredentials = {
 *   cert: next.server.cert,
 *   key: next.server.key,
 * };
 * assert.equal(credentials.sni, undefined); // the SNI map stays as it is
 * ```
 */
export interface TlsCredentials {
  /**
   * The default certificate chain, PEM text (with `key`).
   *
   * @default {undefined (keep the one in force)}
   */
  cert?: string;
  /**
   * The default certificate's private key, PEM text (with `cert`).
   *
   * @default {undefined (keep the one in force)}
   */
  key?: string;
  /**
   * Path of a PEM file with the default certificate chain (with `keyFile`).
   *
   * @default {undefined (keep the one in force)}
   */
  certFile?: string;
  /**
   * Path of a PEM file with the default certificate's key (with `certFile`).
   *
   * @default {undefined (keep the one in force)}
   */
  keyFile?: string;
  /**
   * The CA certificates that sign the client certificates to accept, PEM
   * text; only for a listener opened with `clientCa`.
   *
   * @default {undefined (keep the ones in force)}
   */
  clientCa?: string | string[];
  /**
   * Path of a PEM file with the client CA certificates.
   *
   * @default {undefined (keep the ones in force)}
   */
  clientCaFile?: string;
  /**
   * The certificates by server name, replacing the whole map (see
   * {@linkcode ListenTlsOptions.sni}); `{}` removes every name.
   *
   * @default {undefined (keep the map in force)}
   */
  sni?: Record<string, SniCertificate>;
}

/** Options for {@linkcode listenTls}. */
export interface ListenTlsOptions {
  /**
   * The address to bind.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The port to bind; `0` picks a free one (read it from `listener.addr`).
   *
   * @default {0}
   */
  port?: number;
  /** The server certificate chain, PEM text. Give this or `certFile`. */
  cert?: string;
  /** The server's private key, PEM text. Give this or `keyFile`. */
  key?: string;
  /** Path of a PEM file holding the server certificate chain. */
  certFile?: string;
  /** Path of a PEM file holding the server's private key. */
  keyFile?: string;
  /**
   * Certificates by the server name a client asks for (SNI): `{
   * "api.example.test": { cert, key } }`. Names are DNS names, compared in
   * lower case without a trailing dot; `"*.example.test"` covers one label
   * (`a.example.test`, not `example.test` nor `a.b.example.test`), and an
   * exact name wins over a wildcard. A client that sends no name, or a name
   * not listed, gets the default `cert`. With client CAs, every name
   * verifies client certificates against them.
   *
   * On Deno 2.9.6, while names are set, the server does not answer a
   * ClientHello larger than about 4 KiB (browsers and common clients send
   * 0.5 to 2 KiB): such a client stalls until `handshakeTimeout`, and
   * counts against `maxHandshakes` and `maxPerAddress` meanwhile. Without
   * names (the default, or after `setCredentials({ sni: {} })`) no SNI
   * hook is installed and that limit does not apply.
   *
   * @default {undefined (one certificate for every name)}
   */
  sni?: Record<string, SniCertificate>;
  /**
   * CA certificates (PEM text, one string may hold several) that sign the
   * client certificates to accept. Setting it (or `clientCaFile`) turns on
   * client-certificate verification (mutual TLS).
   *
   * @default {undefined (no client certificates requested)}
   */
  clientCa?: string | string[];
  /** Path of a PEM file with the client CA certificates. */
  clientCaFile?: string;
  /**
   * Refuse clients that send no certificate. With `false`, a client without
   * a certificate is accepted with `peerIdentity` `null`, while a client
   * with a certificate that does not verify is still refused.
   *
   * @default {true when a client CA is given}
   */
  requireClientCert?: boolean;
  /**
   * Accept only verified clients whose CN, SAN or fingerprint is listed.
   * Clients that send no certificate never match.
   *
   * @default {undefined (every verified client)}
   */
  allow?: TlsAllowList;
  /**
   * Decides, after verification and `allow`, whether to accept a client.
   * `identity` is `null` when the client sent no certificate (only possible
   * with `requireClientCert: false`). Return `false` (or throw) to refuse.
   *
   * The hook has `authorizeTimeout` ms to answer; then the client is
   * refused (reason `"authorize-timeout"`) and `signal` aborts with a
   * `TimeoutError`. `signal` also aborts (`AbortError`) when the client
   * disconnects or the listener closes first. While the hook runs, what the
   * client sends is held against `readBufferLimit` (past it the client is
   * refused, reason `"too-large"`), and connections waiting on the hook
   * count against `acceptQueue`.
   *
   * @default {undefined (accept)}
   */
  authorize?: (
    identity: PeerIdentity | null,
    remoteAddr: Deno.NetAddr,
    signal: AbortSignal,
  ) => boolean | Promise<boolean>;
  /**
   * Milliseconds the `authorize` hook has to answer for one client.
   *
   * @default {10000}
   */
  authorizeTimeout?: number;
  /**
   * Called for every refused or failed incoming connection (failed
   * handshake, missing, unverifiable or unreadable client certificate, not
   * allowed, closed to make room, and a connection closed after an internal
   * error) with a {@linkcode TlsError} and where it happened
   * ({@linkcode TlsErrorInfo}). The listener keeps serving; a hook that
   * throws is ignored.
   *
   * Without it, each refusal is one line on stderr
   * (`connauth tls: refused 127.0.0.1:5000 (unknown-ca): Cannot accept the
   * TLS connection: ...`), at most 20 a second: the rest are counted and
   * summed up in one line, before the next line a second later or when the
   * listener closes.
   *
   * @default {a rate-limited log to stderr}
   */
  onError?: (error: TlsError, info: TlsErrorInfo) => void;
  /**
   * Milliseconds a client has to complete the TLS handshake, counted from
   * accept; `Infinity` for no deadline (`maxHandshakes` still applies).
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * Most connections in their TLS handshake at once: accepted, handshake
   * not yet completed. Each holds a descriptor and about 40 KiB of memory
   * until it completes, fails or reaches `handshakeTimeout`.
   *
   * The listener never stops accepting at this limit. When one more
   * arrives, it closes the oldest handshake of the address that holds the
   * most (among addresses holding equally many, the one whose oldest is
   * oldest) and reports it with reason `"evicted"`. The connection just
   * accepted counts too, so an address that floods closes its own
   * connections. An honest client completes its handshake in one or two
   * round trips, so it is the newest and usually the only handshake of its
   * address: silent sockets from other addresses are closed before it.
   * Connections past their handshake are never closed to make room.
   *
   * The default is far above what honest clients need (a listener
   * completes one to two thousand handshakes a second, so that many
   * clients arriving at once are done in about a second) and bounds a
   * flood of silent sockets to about 40 MiB and 1,000 descriptors.
   *
   * @default {1000}
   */
  maxHandshakes?: number;
  /**
   * Most connections in their TLS handshake at once from one address (an
   * IPv4 address, or an IPv6 prefix of `ipv6Prefix` bits). One more from
   * that address is closed at once and reported with reason
   * `"max-per-address"`. Only handshakes count: an address may hold any
   * number of connections past their handshake. Behind NAT or a proxy one
   * address is many users: raise it there.
   *
   * @default {256}
   */
  maxPerAddress?: number;
  /**
   * How many leading bits of an IPv6 address name one client for
   * `maxPerAddress` and for picking whom `maxHandshakes` evicts. A host is
   * usually given a whole /64; 128 counts each address. IPv4-mapped IPv6
   * addresses count as their IPv4 address, link-local ones as the whole
   * address.
   *
   * @default {64}
   */
  ipv6Prefix?: number;
  /**
   * Verified connections held before the application takes them: those
   * waiting for `accept()` plus those waiting on the `authorize` hook.
   * Beyond it new ones are closed (reason `"queue-full"`).
   *
   * @default {128}
   */
  acceptQueue?: number;
  /**
   * Bytes a connection may hold that the application has not read yet.
   * `node:tls` in Deno 2.9.6 cannot push back on a fast sender (a paused
   * socket keeps reading), so a peer that gets this far ahead has its
   * connection closed and the application's read fails with a
   * `ProtocolError` `"too-large"`. The count starts once the client is
   * verified, before the `authorize` hook answers (a client over the limit
   * by then is refused with reason `"too-large"`).
   *
   * @default {16777216 (16 MiB)}
   */
  readBufferLimit?: number;
  /**
   * ALPN protocols to offer, in order of preference.
   *
   * @default {undefined (no ALPN)}
   */
  alpnProtocols?: string[];
  /**
   * Closes the listener when aborted.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** Options for {@linkcode connectTls}. */
export interface ConnectTlsOptions {
  /**
   * The server's name or address; the certificate must match it.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** The server's port. */
  port: number;
  /**
   * CA certificates to trust, PEM text, in addition to Deno's default roots:
   * `Deno.connectTls` keeps those, so `caCerts` adds a private CA but does
   * not narrow trust to it. Deno's default roots are the Mozilla root store
   * bundled with Deno, not the operating system's, unless
   * `DENO_TLS_CA_STORE=system` (or `system,mozilla`) is set; `DENO_CERT`
   * adds a PEM file to them.
   *
   * @default {undefined (Deno's default roots only)}
   */
  caCerts?: string[];
  /** Path of a PEM file with CA certificates to trust, added like `caCerts`. */
  caFile?: string;
  /** A client certificate chain, PEM text (for mutual TLS). */
  cert?: string;
  /** The client certificate's private key, PEM text. */
  key?: string;
  /** Path of a PEM file with the client certificate chain. */
  certFile?: string;
  /** Path of a PEM file with the client's private key. */
  keyFile?: string;
  /**
   * ALPN protocols to offer.
   *
   * @default {undefined (no ALPN)}
   */
  alpnProtocols?: string[];
  /**
   * Milliseconds for the TCP connect and TLS handshake together.
   *
   * @default {10000}
   */
  timeout?: number;
  /**
   * Aborts the connect and handshake.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * What the connections of both ends have: {@linkcode TlsServerConn} from
 * {@linkcode listenTls} and {@linkcode TlsClientConn} from
 * {@linkcode connectTls}. It has the shape of a `Deno.Conn` as far as
 * connauth's handshakes and `serve()` need it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectTls, listenTls, type TlsConn } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: [] });
 * await using listener = await listenTls({ cert: set.server.cert, key: set.server.key });
 * const ends: TlsConn[] = await Promise.all([
 *   listener.accept(),
 *   connectTls({ hostname: "localhost", port: listener.addr.port, caCerts: [set.ca.cert] }),
 * ]);
 * assert.equal(ends[0].remoteAddr.port, ends[1].localAddr.port);
 * for (const conn of ends) conn.close();
 * ```
 */
export interface TlsConn extends Duplex, Disposable {
  /** Bytes from the peer; a byte stream that supports BYOB readers. */
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  /**
   * Bytes to the peer; closing it ends our side with a TLS close_notify
   * (a half-close: the peer may still answer).
   */
  readonly writable: WritableStream<Uint8Array>;
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Our address. */
  readonly localAddr: Deno.NetAddr;
  /** The ALPN protocol agreed on, or `null`. */
  readonly alpnProtocol: string | null;
  /**
   * Closes the connection, safe to call twice. A server connection first
   * sends what is buffered and a TLS close_notify (and gives a peer that
   * does not read 5 s to take it).
   */
  close(): void;
}

/**
 * A connection accepted by {@linkcode listenTls}: a `Deno.Conn`-shaped
 * duplex over a `node:tls` socket (Nagle off), plus the client's verified
 * certificate identity.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectTls, listenTls } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates();
 * await using listener = await listenTls({ cert: set.server.cert, key: set.server.key });
 * const client = connectTls({ hostname: "localhost", port: listener.addr.port, caCerts: [set.ca.cert] });
 * using server = await listener.accept();
 * assert.equal(server.peerIdentity, null); // plain TLS: no client certificate
 * (await client).close();
 * ```
 */
export interface TlsServerConn extends TlsConn {
  /**
   * The verified client certificate's identity; `null` when the client sent
   * none (plain TLS, or `requireClientCert: false`).
   */
  readonly peerIdentity: PeerIdentity | null;
}

/**
 * A TLS listener from {@linkcode listenTls}. Async-iterable over accepted,
 * verified and authorized connections; fits `serve()`'s `listener` option.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listenTls } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: [] });
 * await using listener = await listenTls({ cert: set.server.cert, key: set.server.key });
 * assert.ok(listener.addr.port > 0);
 * ```
 */
export interface TlsListener
  extends AsyncIterable<TlsServerConn>, AsyncDisposable, Disposable {
  /** The bound address (read the port from here when you asked for 0). */
  readonly addr: Deno.NetAddr;
  /**
   * Waits for the next verified connection.
   *
   * @returns The connection, with its `peerIdentity`.
   * @throws {Deno.errors.BadResource} When the listener is closed (also for
   *   a pending `accept()`), like `Deno.Listener`.
   */
  accept(): Promise<TlsServerConn>;
  /**
   * Replaces the listener's certificate and key, client CAs or SNI map
   * without a restart (short-lived certificates, a new client CA). Every
   * input is read and checked first (PEM, files, the key belonging to its
   * certificate, SNI names): a bad one throws and nothing changes. Then
   * handshakes that start from then on use the new credentials, while
   * handshakes under way and established connections go on with what they
   * started with; except that a handshake under way that completes after
   * the call has taken a client CA out is refused (reason `"unknown-ca"`)
   * unless a client CA still in force issued the client's certificate
   * (established connections stay open: close them yourself to cut off a
   * compromised CA at once). Fields left out keep what is in force (see
   * {@linkcode TlsCredentials}); calls take effect one after the other, in
   * call order. Files are read at the call: after a renewal (ACME, an
   * internal CA) call it with the same `certFile` / `keyFile` paths.
   *
   * @param credentials What to replace.
   * @returns When the new credentials are in force.
   * @throws {TypeError} When a field is unknown, none is given, a
   *   certificate comes without its key, a value is not PEM, an SNI name is
   *   not a DNS name, or `clientCa` is given to a listener opened without.
   * @throws {TlsError} When a key does not belong to its certificate
   *   (reason `"key-mismatch"`).
   * @throws {Deno.errors.NotFound} When a `*File` field names no file.
   * @throws {Deno.errors.TimedOut} When a `*File` field is not read within
   *   10 s (a named pipe nobody writes to); the calls after it still run.
   * @throws {Deno.errors.BadResource} When the listener is closed.
   *
   * @example Rotate the server certificate
   * ```ts
   * import assert from "node:assert/strict";
   * import { connectTls, listenTls } from "./tls.ts";
   * import { createCertificateAuthority, issueCertificate } from "./certs.ts";
   *
   * const ca = await createCertificateAuthority();
   * const first = await issueCertificate(ca, { commonName: "first" });
   * const second = await issueCertificate(ca, { commonName: "second" });
   * await using listener = await listenTls({ cert: first.cert, key: first.key });
   * await listener.setCredentials({ cert: second.cert, key: second.key });
   * // A key that is not the certificate's changes nothing.
   * await assert.rejects(
   *   listener.setCredentials({ cert: first.cert, key: second.key }),
   *   { reason: "key-mismatch" },
   * );
   * const [client, server] = await Promise.all([
   *   connectTls({ hostname: "localhost", port: listener.addr.port, caCerts: [ca.cert] }),
   *   listener.accept(),
   * ]);
   * assert.equal(client.remoteAddr.port, listener.addr.port);
   * client.close();
   * server.close();
   * ```
   */
  setCredentials(credentials: TlsCredentials): Promise<void>;
  /**
   * Stops listening: pending `accept()` calls reject, queued and
   * half-handshaken connections are closed. Accepted connections stay open.
   */
  close(): void;
}

/**
 * Opens a TLS listener on `node:tls` with Nagle off. With `clientCa` it
 * requires (or with `requireClientCert: false`, requests) client
 * certificates and verifies them; refused clients are closed and reported
 * to `onError` with the precise reason (unknown CA, expired, wrong key
 * usage, no certificate, unreadable certificate, not allowed) while the
 * listener keeps serving.
 *
 * Every byte a client sends is treated as hostile until it is authorized:
 * the runtime's verdict on the client certificate is taken before anything
 * in it is parsed; the identity ({@linkcode PeerIdentity}) is then read
 * only by connauth's own strict DER reader, and a verified certificate it
 * cannot read unambiguously is refused (`"unreadable-certificate"`), never
 * identified by a guess. A throw in any handler of a client's events closes
 * that one connection and is reported; it never reaches the process. A
 * client that closes before it finishes the handshake is closed at once;
 * one that stalls is closed after `handshakeTimeout`. Until it is
 * authorized, each connection holds one socket for at most
 * `handshakeTimeout` ms (plus `authorizeTimeout` ms while an `authorize`
 * hook runs, its bytes counted against `readBufferLimit`, its slot against
 * `acceptQueue`). At most `maxHandshakes` connections are in their
 * handshake at once, at most `maxPerAddress` of them from one address: a
 * new connection past the first budget closes the oldest handshake of the
 * address holding the most (reason `"evicted"`), so silent sockets from a
 * few addresses cannot lock out an honest client from another one;
 * connections past their handshake are never closed to make room.
 *
 * A `node:tls` server sends the refused client no TLS alert: the client sees
 * an EOF or reset right after its handshake. {@linkcode connectTls} turns
 * that into a {@linkcode TlsError} `"certificate-refused"`.
 *
 * With `sni`, a client that asks for a listed server name gets that name's
 * certificate, any other client the default `cert`. Choosing it never
 * throws into the runtime (on Deno 2.9.6 a throw there ends the process):
 * a fault refuses that one handshake and is reported to `onError` (phase
 * `"handshake"`). {@linkcode TlsListener.setCredentials} replaces the
 * credentials for new handshakes.
 *
 * @param options Certificate, key, SNI certificates, client CAs,
 *   authorization and limits; see {@linkcode ListenTlsOptions}.
 * @returns The listening {@linkcode TlsListener}.
 * @throws {TypeError} When certificate or key options are missing, given
 *   twice or not PEM, or an `sni` name is not a DNS name (or is there
 *   twice once in lower case without a trailing dot).
 * @throws {TlsError} When a key does not match its certificate (reason
 *   `"key-mismatch"`).
 * @throws {Deno.errors.NotFound} When a `*File` option names no file.
 * @throws {Deno.errors.TimedOut} When a `*File` option is not read within
 *   10 s (a named pipe nobody writes to).
 * @throws {RangeError} When a number option is out of range (a port, a
 *   limit, a timeout).
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 *
 * @example Plain TLS echo
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectTls, listenTls } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: [] });
 * await using listener = await listenTls({ cert: set.server.cert, key: set.server.key });
 * (async () => {
 *   for await (const conn of listener) {
 *     await conn.readable.pipeTo(conn.writable).catch(() => {});
 *     conn.close();
 *   }
 * })();
 * const client = await connectTls({
 *   hostname: "localhost",
 *   port: listener.addr.port,
 *   caCerts: [set.ca.cert],
 * });
 * const writer = client.writable.getWriter();
 * await writer.write(new TextEncoder().encode("hello"));
 * const reader = client.readable.getReader();
 * const { value } = await reader.read();
 * assert.equal(new TextDecoder().decode(value), "hello");
 * reader.releaseLock();
 * await writer.close();
 * client.close();
 * ```
 *
 * @example A certificate by server name (SNI)
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectTls, listenTls, TlsError } from "./tls.ts";
 * import { createCertificateAuthority, issueCertificate } from "./certs.ts";
 *
 * const ca = await createCertificateAuthority();
 * const other = await createCertificateAuthority();
 * const fallback = await issueCertificate(ca, { commonName: "default" });
 * const local = await issueCertificate(other, { commonName: "localhost" });
 * await using listener = await listenTls({
 *   cert: fallback.cert,
 *   key: fallback.key,
 *   sni: { localhost: { cert: local.cert, key: local.key } },
 *   onError: () => {},
 * });
 * const connect = (hostname: string, caCert: string) =>
 *   connectTls({ hostname, port: listener.addr.port, caCerts: [caCert] });
 * // connectTls() sends "localhost" as the server name: its certificate.
 * (await connect("localhost", other.cert)).close();
 * await assert.rejects(connect("localhost", ca.cert), TlsError);
 * // An IP address is never sent as a server name: the default.
 * (await connect("127.0.0.1", ca.cert)).close();
 * ```
 */
export async function listenTls(
  options: ListenTlsOptions = {},
): Promise<TlsListener> {
  const action = "listen with TLS";
  const credentials = await readCredentials(options, action);
  const mutual = credentials.clientCa !== undefined;
  const requireClientCert = options.requireClientCert ?? mutual;
  if (requireClientCert && !mutual) {
    throw new TypeError(
      `Cannot ${action}: requireClientCert needs \`clientCa\` (or \`clientCaFile\`), the CA certificates that sign the client certificates`,
    );
  }
  // authorize may still be used on plain TLS (identity null); allow cannot.
  if (options.allow && !mutual) {
    throw new TypeError(
      `Cannot ${action}: \`allow\` needs \`clientCa\`: without client certificates no client can match`,
    );
  }
  const config = {
    hostname: options.hostname ?? "127.0.0.1",
    port: checkPort(options.port, 0, "port", true),
    credentials,
    requireClientCert,
    allow: options.allow,
    authorize: options.authorize,
    handshakeTimeout: checkTimeout(
      options.handshakeTimeout,
      DEFAULT_TIMEOUT,
      "handshakeTimeout",
    ),
    authorizeTimeout: checkTimeout(
      options.authorizeTimeout,
      DEFAULT_TIMEOUT,
      "authorizeTimeout",
    ),
    readBufferLimit: checkLimit(
      options.readBufferLimit,
      16 * 1024 * 1024,
      "readBufferLimit",
    ),
    acceptQueue: checkLimit(options.acceptQueue, 128, "acceptQueue"),
    maxHandshakes: checkLimit(options.maxHandshakes, 1000, "maxHandshakes"),
    maxPerAddress: checkLimit(options.maxPerAddress, 256, "maxPerAddress"),
    ipv6Prefix: checkIpv6Prefix(options.ipv6Prefix, 64),
    alpnProtocols: options.alpnProtocols,
    onError: options.onError,
    signal: options.signal,
  };
  options.signal?.throwIfAborted();
  return await openTlsServer(config);
}

/**
 * A client TLS connection from {@linkcode connectTls}: a duplex over a
 * `Deno.TlsConn`. Until the server has sent something, a bare EOF or reset
 * (what a `node:tls` server sends when it refuses a client certificate)
 * fails the read or the write that meets it with a {@linkcode TlsError}
 * `"certificate-refused"` (or `"certificate-required"` when we sent no
 * certificate). A server that closed with a TLS close_notify is not taken
 * for a refusal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectTls, listenTls } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: [] });
 * await using listener = await listenTls({ cert: set.server.cert, key: set.server.key });
 * using client = await connectTls({ hostname: "localhost", port: listener.addr.port, caCerts: [set.ca.cert] });
 * (await listener.accept()).close();
 * assert.equal(client.remoteAddr.port, listener.addr.port);
 * ```
 */
export interface TlsClientConn extends TlsConn {}

/**
 * Connects to a TLS server and completes the handshake, verifying the
 * server's certificate against Deno's default roots (the bundled Mozilla
 * roots unless `DENO_TLS_CA_STORE=system`) plus `caCerts`, and against
 * `hostname`. With `cert` / `key` it presents a client certificate.
 *
 * Verification is `Deno.connectTls`'s (rustls): version-1 certificates and
 * `CA:TRUE` certificates used as server certificates are refused, which the
 * `node:tls` client would accept.
 *
 * @param options Server, trust anchors, client certificate, deadline; see
 *   {@linkcode ConnectTlsOptions}.
 * @returns The connection, handshake done.
 * @throws {TlsError} With reason `"unknown-ca"`, `"hostname-mismatch"`,
 *   `"expired"`, `"not-yet-valid"`, `"version-1"`, `"ca-as-leaf"`,
 *   `"certificate-required"`, `"key-mismatch"` or `"handshake"`; a server
 *   refusing our client certificate shows on the first read or write as
 *   `"certificate-refused"`.
 * @throws {TypeError} When options are malformed (e.g. `cert` without `key`).
 * @throws {RangeError} When `port` or `timeout` is out of range.
 * @throws {DOMException} `TimeoutError` after `timeout`, `AbortError` (or the
 *   signal's reason) when aborted.
 * @throws {Deno.errors.ConnectionRefused} When nothing listens on the port.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectTls, listenTls, TlsError } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: [] });
 * const other = await generateCertificates({ clients: [] });
 * await using listener = await listenTls({
 *   cert: set.server.cert,
 *   key: set.server.key,
 *   onError: () => {},
 * });
 * await assert.rejects(
 *   connectTls({ hostname: "localhost", port: listener.addr.port, caCerts: [other.ca.cert] }),
 *   (error) => error instanceof TlsError && error.reason === "unknown-ca",
 * );
 * ```
 */
export async function connectTls(
  options: ConnectTlsOptions,
): Promise<TlsClientConn> {
  const action = "connect with TLS";
  const port = checkPort(options?.port, undefined, "port", false);
  const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
  const caText = await readPem(options.caCerts, options.caFile, {
    what: "the CA certificates",
    textOption: "caCerts",
    fileOption: "caFile",
  }, action);
  const pair = await readKeyPair(
    options,
    { cert: "the client certificate", key: "the client key" },
    action,
    "a client certificate needs its private key and the other way round; pass both `cert` and `key` (or `certFile` and `keyFile`)",
  );
  return await openClientConn({
    hostname: options.hostname ?? "127.0.0.1",
    port,
    caCerts: caText === undefined
      ? undefined
      : requireCerts(caText, action, "caCerts"),
    pair,
    alpnProtocols: options.alpnProtocols,
    timeout,
    signal: options.signal,
  });
}
