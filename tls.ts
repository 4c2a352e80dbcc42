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
 *   narrow that down to named clients.
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
 * console.log(server.peerIdentity?.cn); // "alice"
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import * as nodeTls from "node:tls";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  X509Certificate,
} from "node:crypto";
import { checkIpv6Prefix, checkLimit, checkTimeout } from "./_options.ts";
import { DEFAULT_TIMEOUT, raceSignal } from "./_deadline.ts";
import { addressKey, formatAddr } from "./_address.ts";
import { Admission, DeadlineSweep, Slot } from "./_admission.ts";
import { RateLimitedLog } from "./_log.ts";
import {
  allowed,
  type CertificateFacts,
  clip,
  describe,
  readCertificate,
} from "./_tls_identity.ts";
import type { Duplex } from "./types.ts";
import { ProtocolError } from "./errors.ts";

export type { Duplex } from "./types.ts";

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
 * Server side ({@linkcode TlsErrorEvent.reason}) adds `"no-certificate"`,
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
 * import { TlsError } from "./tls.ts";
 *
 * const error = new TlsError("Cannot connect with TLS: ...", "unknown-ca");
 * console.log(error.name, error.reason);
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

/** A refused or failed incoming TLS connection, as passed to `onTlsError`. */
export interface TlsErrorEvent {
  /** The machine-readable cause. */
  readonly reason: TlsFailure;
  /** What happened and what to do about it; never contains key material. */
  readonly message: string;
  /** The client's address, when known. */
  readonly remoteAddr: Deno.NetAddr | undefined;
  /** The client certificate's identity, when it sent one we could read. */
  readonly identity: PeerIdentity | null;
  /** The underlying error, when there is one. */
  readonly cause?: unknown;
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
   * allowed, and a connection closed after an internal error), with the
   * client's address. The listener keeps serving.
   *
   * Without it, each refusal is one line on stderr
   * (`connauth tls: refused 127.0.0.1:5000 (unknown-ca): ...`), at most 20
   * a second: the rest are counted and summed up in one line, before the
   * next line a second later or when the listener closes.
   *
   * @default {a rate-limited log to stderr}
   */
  onTlsError?: (event: TlsErrorEvent) => void;
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

// ---------------------------------------------------------------------------
// Byte streams over sockets

const HIGH_WATER_MARK = 64 * 1024;
/** Milliseconds a closed connection may spend flushing before it is cut. */
const CLOSE_GRACE = 5_000;

function toDenoError(error: unknown): unknown {
  const code = (error as { code?: string } | null)?.code;
  const message = (error as Error)?.message ?? String(error);
  if (code === "ECONNRESET") {
    return new Deno.errors.ConnectionReset(message, { cause: error });
  }
  if (code === "EPIPE") {
    return new Deno.errors.BrokenPipe(message, { cause: error });
  }
  return error;
}

function netAddr(address: string | undefined, port: number | undefined) {
  return {
    transport: "tcp" as const,
    hostname: (address ?? "").replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, "$1"),
    port: port ?? 0,
  };
}

/**
 * A connection accepted by {@linkcode listenTls}: a `Deno.Conn`-shaped
 * duplex over a `node:tls` socket (Nagle off), plus the client's verified
 * certificate identity.
 *
 * @example
 * ```ts
 * import { connectTls, listenTls } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates();
 * await using listener = await listenTls({ cert: set.server.cert, key: set.server.key });
 * const client = connectTls({ hostname: "localhost", port: listener.addr.port, caCerts: [set.ca.cert] });
 * using server = await listener.accept();
 * console.log(server.peerIdentity); // null: plain TLS, no client certificate
 * (await client).close();
 * ```
 */
export interface TlsServerConn extends Duplex, Disposable {
  /** Bytes from the client; a byte stream that supports BYOB readers. */
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  /** Bytes to the client; closing it ends our side (TLS close_notify). */
  readonly writable: WritableStream<Uint8Array>;
  /** The client's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Our address. */
  readonly localAddr: Deno.NetAddr;
  /**
   * The verified client certificate's identity; `null` when the client sent
   * none (plain TLS, or `requireClientCert: false`).
   */
  readonly peerIdentity: PeerIdentity | null;
  /** The ALPN protocol agreed on, or `null`. */
  readonly alpnProtocol: string | null;
  /**
   * Closes the connection: sends what is buffered, then TLS close_notify,
   * then closes the socket. Safe to call twice.
   */
  close(): void;
}

class ServerConn implements TlsServerConn {
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  readonly writable: WritableStream<Uint8Array>;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  readonly peerIdentity: PeerIdentity | null;
  readonly alpnProtocol: string | null;
  #socket: nodeTls.TLSSocket;
  #closed = false;

  constructor(
    socket: nodeTls.TLSSocket,
    peerIdentity: PeerIdentity | null,
    readBufferLimit: number,
    onOverflow?: () => void,
    onFault?: (error: unknown) => void,
  ) {
    this.#socket = socket;
    this.peerIdentity = peerIdentity;
    this.remoteAddr = netAddr(socket.remoteAddress, socket.remotePort);
    this.localAddr = netAddr(socket.localAddress, socket.localPort);
    this.alpnProtocol = typeof socket.alpnProtocol === "string"
      ? socket.alpnProtocol
      : null;
    socket.setNoDelay(true);
    let ended = false;
    // No pause(): on Deno 2.9.6 a paused node:tls socket keeps reading from
    // TCP into a native buffer (no backpressure reaches the peer) and, when
    // paused from its 'data' callback or with writes pending, never reports
    // the peer's EOF. So bytes flow into this stream's queue, and a peer
    // that gets more than `readBufferLimit` bytes ahead of the application
    // is cut off instead of filling memory.
    this.readable = new ReadableStream({
      type: "bytes",
      start(controller) {
        // Each handler runs on a peer's event: a throw closes this
        // connection (and errors its stream), never the process.
        const guard =
          <A extends unknown[]>(fn: (...args: A) => void) => (...args: A) => {
            try {
              fn(...args);
            } catch (error) {
              if (ended) return;
              ended = true;
              try {
                controller.error(error);
              } catch {
                // already errored or closed
              }
              socket.destroy();
              onFault?.(error);
            }
          };
        socket.on(
          "data",
          guard((chunk: Uint8Array) => {
            if (ended) return;
            // Copy: node may pool the buffer, and enqueue transfers it.
            controller.enqueue(new Uint8Array(chunk));
            const queued = HIGH_WATER_MARK - (controller.desiredSize ?? 0);
            if (queued > readBufferLimit) {
              ended = true;
              controller.error(
                new ProtocolError(
                  `Cannot read from the TLS connection: the peer sent more than ${readBufferLimit} bytes that the application has not read; read faster or raise \`readBufferLimit\``,
                  "too-large",
                ),
              );
              onOverflow?.();
              socket.destroy();
            }
          }),
        );
        socket.on(
          "end",
          guard(() => {
            if (ended) return;
            ended = true;
            controller.close();
            controller.byobRequest?.respond(0);
          }),
        );
        socket.on(
          "close",
          guard(() => {
            if (ended) return;
            ended = true;
            try {
              controller.close();
              controller.byobRequest?.respond(0);
            } catch {
              // already errored or closed
            }
          }),
        );
        socket.on(
          "error",
          guard((error: unknown) => {
            if (ended) return;
            ended = true;
            controller.error(toDenoError(error));
          }),
        );
      },
      cancel() {
        ended = true;
      },
    }, { highWaterMark: HIGH_WATER_MARK }) as ReadableStream<
      Uint8Array<ArrayBuffer>
    >;
    this.writable = new WritableStream<Uint8Array>({
      write(chunk) {
        return writeSocket(socket, chunk);
      },
      close() {
        return new Promise<void>((resolve) => {
          if (socket.destroyed || socket.writableEnded) return resolve();
          socket.end(() => resolve());
        });
      },
      abort() {
        socket.destroy();
      },
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const socket = this.#socket;
    if (socket.destroyed) return;
    socket.end();
    // destroySoon() destroys once everything written has been flushed; a
    // peer that never reads would hold the socket open, so it gets
    // CLOSE_GRACE ms.
    socket.destroySoon();
    if (socket.destroyed) return;
    const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE);
    (timer as { unref?: () => void }).unref?.();
    socket.once("close", () => clearTimeout(timer));
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function writeSocket(
  socket: { write: nodeTls.TLSSocket["write"] } & nodeTls.TLSSocket,
  chunk: Uint8Array,
): Promise<void> {
  if (socket.destroyed || socket.writableEnded) {
    return Promise.reject(
      new Deno.errors.BrokenPipe(
        "Cannot write to the TLS connection: it is closed",
      ),
    );
  }
  return new Promise<void>((resolve, reject) => {
    // Copy: the caller may reuse its buffer once the promise resolves.
    const ok = socket.write(new Uint8Array(chunk), (error) => {
      if (error) reject(toDenoError(error));
    });
    if (ok) return resolve();
    const done = () => {
      socket.off("drain", done);
      socket.off("close", done);
      if (socket.destroyed && !socket.writableFinished) {
        reject(
          new Deno.errors.BrokenPipe(
            "Cannot write to the TLS connection: the peer closed it",
          ),
        );
      } else {
        resolve();
      }
    };
    socket.on("drain", done);
    socket.on("close", done);
  });
}

// ---------------------------------------------------------------------------
// Certificates: reading, identity, diagnosis

async function readPem(
  text: string | string[] | undefined,
  file: string | undefined,
  what: string,
  textOption: string,
  fileOption: string,
  action: string,
): Promise<string | undefined> {
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
    try {
      return await Deno.readTextFile(file);
    } catch (cause) {
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

function splitCerts(pem: string): string[] {
  return pem.match(PEM_CERT) ?? [];
}

function parseCert(
  pem: string,
  action: string,
  option: string,
): X509Certificate {
  const first = splitCerts(pem)[0];
  if (!first) {
    throw new TypeError(
      `Cannot ${action}: \`${option}\` holds no "-----BEGIN CERTIFICATE-----" block`,
    );
  }
  try {
    return new X509Certificate(first);
  } catch (cause) {
    throw new TypeError(
      `Cannot ${action}: \`${option}\` is not a valid certificate`,
      { cause },
    );
  }
}

/** Throws a TlsError "key-mismatch" when `keyPem` is not `certPem`'s key. */
function checkKeyPair(
  certPem: string,
  keyPem: string,
  action: string,
  certOption: string,
  keyOption: string,
): void {
  const cert = parseCert(certPem, action, certOption);
  let key;
  try {
    key = createPrivateKey(keyPem);
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

/** SHA-256 of DER, uppercase hex pairs joined by colons. */
function fingerprintOf(der: Uint8Array): string {
  const hex = createHash("sha256").update(der).digest("hex").toUpperCase();
  return hex.match(/../g)!.join(":");
}

/** Names a certificate in a message: its subject, or its fingerprint. */
function certificateLabel(der: Uint8Array): string {
  try {
    return `subject "${readCertificate(der).subject}"`;
  } catch {
    return `SHA-256 ${fingerprintOf(der)}`;
  }
}

/**
 * A certificate's identity, read only by our own reader (`_tls_identity.ts`).
 * Throws a TypeError on a certificate that reader cannot read; the runtime's
 * `X509Certificate` strings are never a fallback (they do not escape, so a
 * value holding "\nCN=x" would read as another attribute).
 */
function identityOf(der: Uint8Array, facts?: CertificateFacts): PeerIdentity {
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
  cas: X509Certificate[],
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

/** A TCP socket under a TLS one, as node:tls hands it over. */
type RawSocket = {
  remoteAddress?: string;
  remotePort?: number;
  setNoDelay?: (on: boolean) => void;
  once(event: "close", listener: () => void): unknown;
  destroy(): void;
};

/** A connection in its TLS handshake, as `maxHandshakes` counts it. */
class Handshake extends Slot {
  /** Its TCP socket. */
  readonly raw: RawSocket;
  /** Its address. */
  readonly remoteAddr: Deno.NetAddr | undefined;
  /** Set once the listener closed it: the handshake's failure is not news. */
  silenced = false;

  constructor(raw: RawSocket, remoteAddr: Deno.NetAddr | undefined) {
    super();
    this.raw = raw;
    this.remoteAddr = remoteAddr;
  }
}

/** What a {@linkcode Handshakes} reports a connection it closed with. */
type HandshakeReport = (
  reason: TlsFailure,
  message: string,
  remoteAddr: Deno.NetAddr | undefined,
) => void;

/** The limits {@linkcode Handshakes} keeps. */
interface HandshakeLimits {
  maxHandshakes: number;
  maxPerAddress: number;
  ipv6Prefix: number;
  handshakeTimeout: number;
}

/** At most this many handshakes are closed for their deadline at once... */
const SWEEP_BATCH = 64;
/** ...in one window of this many ms (the rest in the next window). */
const SWEEP_WINDOW = 10;
/** A deadline this near (ms) is due when the sweep's timer fires. */
const SWEEP_SLACK = 1;

/**
 * The connections in their TLS handshake: counted per address
 * (`maxPerAddress`), bounded in all (`maxHandshakes`, evicting by the
 * fairness rule of `_admission.ts`: the oldest of the address holding the
 * most) and closed at their deadline (`handshakeTimeout`) by one timer for
 * all. A handshake ends when node:tls reports the connection secure (then
 * it is never evicted) or its TCP socket closes.
 */
class Handshakes {
  #admission: Admission<Handshake>;
  #sweep: DeadlineSweep<Handshake>;
  #byRaw = new WeakMap<object, Handshake>();
  #limits: HandshakeLimits;
  #report: HandshakeReport;

  constructor(limits: HandshakeLimits, report: HandshakeReport) {
    this.#limits = limits;
    this.#report = report;
    this.#admission = new Admission<Handshake>({
      maxPerAddress: limits.maxPerAddress,
      handshakeTimeout: limits.handshakeTimeout,
    });
    this.#sweep = new DeadlineSweep<Handshake>({
      admission: this.#admission,
      expire: (slot) =>
        this.#close(
          slot,
          "handshake",
          `the client did not complete the TLS handshake within ${limits.handshakeTimeout} ms`,
        ),
      batch: SWEEP_BATCH,
      window: SWEEP_WINDOW,
      slack: SWEEP_SLACK,
    });
  }

  /**
   * Counts a TCP socket node:tls accepted. Closes it at once past
   * `maxPerAddress`; past `maxHandshakes`, closes the handshake the
   * fairness rule picks (maybe this one). False when `raw` was closed.
   */
  accept(raw: RawSocket, remoteAddr: Deno.NetAddr | undefined): boolean {
    const slot = new Handshake(raw, remoteAddr);
    this.#byRaw.set(raw, slot);
    const { maxHandshakes, maxPerAddress, ipv6Prefix } = this.#limits;
    const key = addressKey(
      remoteAddr ?? netAddr(undefined, undefined),
      ipv6Prefix,
    );
    const verdict = this.#admission.admit(slot, key);
    raw.once("close", () => this.#admission.release(slot));
    if (verdict === "max-per-address") {
      this.#close(
        slot,
        "max-per-address",
        `${maxPerAddress} connections from ${key} are in their TLS handshake already; this one was closed (maxPerAddress ${maxPerAddress})`,
      );
      return false;
    }
    this.#sweep.watch(slot.deadline);
    while (this.#admission.pendingCount > maxHandshakes) {
      const victim = this.#admission.victim();
      if (victim === undefined) break;
      const { pending, key } = victim.entry!;
      const age = Math.round(this.#admission.clock.now() - victim.since);
      this.#close(
        victim,
        "evicted",
        `closed in its TLS handshake after ${age} ms to make room: ${key} held ${pending} of the ${maxHandshakes} connections in their handshake, the most of any address (maxHandshakes ${maxHandshakes})`,
      );
    }
    return !slot.silenced;
  }

  /** The TLS socket over `raw` completed its handshake: no longer counted. */
  completed(socket: unknown): void {
    const slot = this.#of(socket);
    if (slot !== undefined) this.#admission.release(slot);
  }

  /**
   * Whether the failed handshake of a TLS socket was closed here, and
   * reported then.
   */
  closedHere(socket: unknown): boolean {
    return this.#of(socket)?.silenced === true;
  }

  /** Closes every handshake under way, without a report; stops the timer. */
  close(): void {
    this.#sweep.stop();
    for (let slot; (slot = this.#admission.firstPending()) !== undefined;) {
      slot.silenced = true;
      this.#admission.release(slot);
      slot.raw.destroy();
    }
  }

  #close(slot: Handshake, reason: TlsFailure, message: string): void {
    slot.silenced = true;
    this.#admission.release(slot);
    slot.raw.destroy();
    this.#report(reason, message, slot.remoteAddr);
  }

  /**
   * The handshake of a TLS socket: node:tls keeps the TCP socket it wraps
   * as `_parent` (not a public field), the object its 'connection' event
   * gave.
   */
  #of(socket: unknown): Handshake | undefined {
    try {
      const raw = (socket as { _parent?: unknown } | undefined)?._parent;
      return typeof raw === "object" && raw !== null
        ? this.#byRaw.get(raw)
        : undefined;
    } catch {
      return undefined;
    }
  }
}

/**
 * The peer's address of a server-side socket. On Deno 2.9.6 a TLS socket
 * whose handshake failed early has no `remoteAddress`; the TCP socket under
 * it (`_parent`, not a public field) still knows it.
 */
function peerOf(socket: unknown): Deno.NetAddr | undefined {
  try {
    for (
      const candidate of [
        socket as RawSocket | undefined,
        (socket as { _parent?: RawSocket } | undefined)?._parent,
      ]
    ) {
      if (typeof candidate?.remoteAddress === "string") {
        return netAddr(candidate.remoteAddress, candidate.remotePort);
      }
    }
  } catch {
    // a getter threw: the address is unknown
  }
  return undefined;
}

/** An error's message for a report, without throwing on odd values. */
function errorText(error: unknown): string {
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
function peerCertificateDer(
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

/**
 * The default `onTlsError`: one line per refusal on stderr, at most
 * LOG_LINES_PER_SECOND a second (`_log.ts`), so a flood of refused
 * clients cannot flood the log.
 */
function logTlsErrors(log: RateLimitedLog): (event: TlsErrorEvent) => void {
  return (event) =>
    log.line(() =>
      `refused ${
        formatAddr(event.remoteAddr)
      } (${event.reason}): ${event.message}`
    );
}

// ---------------------------------------------------------------------------
// Listener

/**
 * A TLS listener from {@linkcode listenTls}. Async-iterable over accepted,
 * verified and authorized connections; fits `serve()`'s `listener` option.
 *
 * @example
 * ```ts
 * import { listenTls } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: [] });
 * await using listener = await listenTls({ cert: set.server.cert, key: set.server.key });
 * console.log(listener.addr.port > 0);
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
   * Stops listening: pending `accept()` calls reject, queued and
   * half-handshaken connections are closed. Accepted connections stay open.
   */
  close(): void;
}

class Listener implements TlsListener {
  readonly addr: Deno.NetAddr;
  #server: nodeTls.Server;
  #queue: TlsServerConn[] = [];
  #waiters: {
    resolve: (conn: TlsServerConn) => void;
    reject: (error: unknown) => void;
  }[] = [];
  #pending = new Set<nodeTls.TLSSocket>();
  /** Connections in their TLS handshake. */
  handshakes: Handshakes | undefined;
  /** The default report's log, flushed on close. */
  log: RateLimitedLog | undefined;
  #closed = false;
  #closedPromise: Promise<void>;
  #signal: AbortSignal | undefined;
  #onAbort = () => this.close();

  constructor(server: nodeTls.Server, signal?: AbortSignal) {
    this.#server = server;
    const address = server.address();
    if (address === null || typeof address === "string") {
      throw new TypeError("Cannot listen with TLS: the server has no address");
    }
    this.addr = netAddr(address.address, address.port);
    this.#closedPromise = new Promise<void>((resolve) => {
      server.once("close", () => resolve());
    });
    this.#signal = signal;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Tracks a socket until it is delivered or dropped. */
  track(socket: nodeTls.TLSSocket): void {
    this.#pending.add(socket);
    socket.once("close", () => this.#pending.delete(socket));
  }

  /** Hands a verified connection to `accept()`. */
  deliver(socket: nodeTls.TLSSocket, conn: TlsServerConn): boolean {
    this.#pending.delete(socket);
    if (this.#closed) {
      conn.close();
      return true;
    }
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.resolve(conn);
      return true;
    }
    return this.#queueConn(conn);
  }

  queueLimit = 128;
  /** Connections waiting on the authorize hook (they hold queue slots). */
  #authorizing = 0;

  /** Takes a queue slot for a connection about to wait on the hook. */
  reserve(): boolean {
    if (this.#closed) return false;
    if (this.#queue.length + this.#authorizing >= this.queueLimit) {
      return false;
    }
    this.#authorizing++;
    return true;
  }

  /** Gives back a slot taken by {@linkcode reserve}. */
  release(): void {
    this.#authorizing--;
  }

  #queueConn(conn: TlsServerConn): boolean {
    if (this.#queue.length + this.#authorizing >= this.queueLimit) {
      conn.close();
      return false;
    }
    this.#queue.push(conn);
    return true;
  }

  accept(): Promise<TlsServerConn> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#closed) {
      return Promise.reject(
        new Deno.errors.BadResource("Listener has been closed"),
      );
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#server.close();
    for (const waiter of this.#waiters.splice(0)) {
      waiter.reject(new Deno.errors.BadResource("Listener has been closed"));
    }
    for (const conn of this.#queue.splice(0)) conn.close();
    for (const socket of this.#pending) socket.destroy();
    this.#pending.clear();
    // Handshakes still under way: closed without a report (the listener,
    // not the client, ended them).
    this.handshakes?.close();
    this.log?.flush();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    // node:tls reports 'close' only once every accepted connection has
    // closed too; accepted connections belong to the caller, so wait for
    // that or for the next turn of the event loop, whichever comes first.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#closedPromise,
      new Promise<void>((resolve) => timer = setTimeout(resolve, 0)),
    ]);
    clearTimeout(timer);
  }

  /** Closes the listener (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TlsServerConn> {
    while (true) {
      try {
        yield await this.accept();
      } catch (error) {
        if (this.#closed && error instanceof Deno.errors.BadResource) return;
        throw error;
      }
    }
  }
}

/**
 * Opens a TLS listener on `node:tls` with Nagle off. With `clientCa` it
 * requires (or with `requireClientCert: false`, requests) client
 * certificates and verifies them; refused clients are closed and reported
 * to `onTlsError` with the precise reason (unknown CA, expired, wrong key
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
 * @param options Certificate, key, client CAs, authorization and limits;
 *   see {@linkcode ListenTlsOptions}.
 * @returns The listening {@linkcode TlsListener}.
 * @throws {TypeError} When certificate or key options are missing, given
 *   twice or not PEM.
 * @throws {TlsError} When the key does not match the certificate (reason
 *   `"key-mismatch"`).
 * @throws {Deno.errors.NotFound} When a `*File` option names no file.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 *
 * @example Plain TLS echo
 * ```ts
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
 * console.log(new TextDecoder().decode(value)); // "hello"
 * reader.releaseLock();
 * await writer.close();
 * client.close();
 * ```
 */
export async function listenTls(
  options: ListenTlsOptions = {},
): Promise<TlsListener> {
  const action = "listen with TLS";
  const cert = await readPem(
    options.cert,
    options.certFile,
    "the server certificate",
    "cert",
    "certFile",
    action,
  );
  const key = await readPem(
    options.key,
    options.keyFile,
    "the private key",
    "key",
    "keyFile",
    action,
  );
  if (cert === undefined || key === undefined) {
    throw new TypeError(
      `Cannot ${action}: a certificate and its private key are required; pass \`cert\`/\`key\` (PEM text) or \`certFile\`/\`keyFile\` (paths); for development, \`deno task certs\` writes certs/server.pem and certs/server-key.pem`,
    );
  }
  checkKeyPair(
    cert,
    key,
    action,
    options.cert !== undefined ? "cert" : "certFile",
    options.key !== undefined ? "key" : "keyFile",
  );
  const clientCa = await readPem(
    options.clientCa,
    options.clientCaFile,
    "the client CA certificates",
    "clientCa",
    "clientCaFile",
    action,
  );
  const caCerts = clientCa === undefined
    ? []
    : splitCerts(clientCa).map((pem) => parseCert(pem, action, "clientCa"));
  if (clientCa !== undefined && caCerts.length === 0) {
    throw new TypeError(
      `Cannot ${action}: \`clientCa\` holds no "-----BEGIN CERTIFICATE-----" block`,
    );
  }
  const mutual = clientCa !== undefined;
  const requireClientCert = options.requireClientCert ?? mutual;
  if (requireClientCert && !mutual) {
    throw new TypeError(
      `Cannot ${action}: requireClientCert needs \`clientCa\` (or \`clientCaFile\`), the CA certificates that sign the client certificates`,
    );
  }
  if ((options.allow || options.authorize) && !mutual) {
    // authorize may still be used on plain TLS (identity null); allow cannot.
    if (options.allow) {
      throw new TypeError(
        `Cannot ${action}: \`allow\` needs \`clientCa\`: without client certificates no client can match`,
      );
    }
  }
  const handshakeTimeout = checkTimeout(
    options.handshakeTimeout,
    DEFAULT_TIMEOUT,
    "handshakeTimeout",
  );
  const authorizeTimeout = checkTimeout(
    options.authorizeTimeout,
    DEFAULT_TIMEOUT,
    "authorizeTimeout",
  );
  const readBufferLimit = options.readBufferLimit ?? 16 * 1024 * 1024;
  if (!Number.isInteger(readBufferLimit) || readBufferLimit < 1) {
    throw new RangeError(
      `Cannot ${action}: readBufferLimit must be a positive integer, got ${readBufferLimit}`,
    );
  }
  const acceptQueue = options.acceptQueue ?? 128;
  if (!Number.isInteger(acceptQueue) || acceptQueue < 1) {
    throw new RangeError(
      `Cannot ${action}: acceptQueue must be a positive integer, got ${acceptQueue}`,
    );
  }
  const maxHandshakes = checkLimit(
    options.maxHandshakes,
    1000,
    "maxHandshakes",
  );
  const maxPerAddress = checkLimit(
    options.maxPerAddress,
    256,
    "maxPerAddress",
  );
  const ipv6Prefix = checkIpv6Prefix(options.ipv6Prefix, 64);
  const log = options.onTlsError === undefined
    ? new RateLimitedLog({ prefix: "connauth tls: " })
    : undefined;
  const onTlsError = options.onTlsError ?? logTlsErrors(log!);
  const report = (event: TlsErrorEvent) => {
    try {
      onTlsError(event);
    } catch {
      // a throwing hook must not stop the listener
    }
  };
  options.signal?.throwIfAborted();

  const server = nodeTls.createServer({
    cert,
    key,
    ca: mutual ? clientCa : undefined,
    requestCert: mutual,
    // We decide ourselves (below), so that a refusal is logged with its
    // precise reason; the runtime's verdict is `socket.authorized`.
    rejectUnauthorized: false,
    // No per-socket timer: node:tls on Deno 2.9.6 keeps a socket whose
    // handshake failed (about 5.5 KiB) until its handshake timer fires, and
    // takes 0 for 120 s and Infinity for 1 ms. A negative value turns the
    // timer off; the deadlines are kept by `handshakes` instead.
    handshakeTimeout: -1,
    noDelay: true,
    // Half-open only once the handshake is done ('secureConnection' turns it
    // on): a client that closes before it finishes the handshake is closed
    // at once, not left in CLOSE-WAIT until handshakeTimeout.
    allowHalfOpen: false,
    ALPNProtocols: options.alpnProtocols,
  } as nodeTls.TlsOptions);

  const listener = await new Promise<Listener>((resolve, reject) => {
    const onError = (error: unknown) => {
      server.close();
      reject(error);
    };
    server.once("error", onError);
    server.listen(
      options.port ?? 0,
      options.hostname ?? "127.0.0.1",
      () => {
        server.off("error", onError);
        try {
          resolve(new Listener(server, options.signal));
        } catch (error) {
          server.close();
          reject(error);
        }
      },
    );
  });
  listener.queueLimit = acceptQueue;
  listener.log = log;
  const handshakes = new Handshakes(
    { maxHandshakes, maxPerAddress, ipv6Prefix, handshakeTimeout },
    (reason, message, remoteAddr) =>
      report({ reason, message, remoteAddr, identity: null }),
  );
  listener.handshakes = handshakes;

  // Every handler below runs on a peer's event. A throw in one must close
  // that connection and be reported, never reach the event loop, where it
  // would end the process.
  const fault = (
    socket: { destroy(): void } | undefined,
    error: unknown,
    remoteAddr: Deno.NetAddr | undefined,
    identity: PeerIdentity | null,
  ) => {
    try {
      socket?.destroy();
    } catch {
      // already gone
    }
    report({
      reason: "handshake",
      message: `the connection was closed after an internal error: ${
        errorText(error)
      }`,
      remoteAddr,
      identity,
      cause: error,
    });
  };

  server.on("error", (error: unknown) => {
    report({
      reason: "handshake",
      message: `listener error: ${errorText(error)}`,
      remoteAddr: undefined,
      identity: null,
      cause: error,
    });
  });

  server.on("connection", (raw: RawSocket) => {
    let remoteAddr: Deno.NetAddr | undefined;
    try {
      remoteAddr = peerOf(raw);
      if (handshakes.accept(raw, remoteAddr)) raw.setNoDelay?.(true);
    } catch (error) {
      fault(raw, error, remoteAddr, null);
    }
  });

  server.on(
    "tlsClientError",
    (error: Error & { code?: string }, socket: nodeTls.TLSSocket) => {
      let remoteAddr: Deno.NetAddr | undefined;
      try {
        remoteAddr = peerOf(socket);
        socket?.destroy();
        // A handshake the listener closed (evicted, over maxPerAddress, or
        // at close) was reported then.
        if (handshakes.closedHere(socket)) return;
        const text = errorText(error);
        const code = (error as { code?: unknown })?.code;
        const message = code === "ECONNRESET"
          ? "the client closed the connection before completing the TLS handshake"
          : `the TLS handshake failed: ${text}${
            typeof code === "string" ? ` (${code})` : ""
          }`;
        report({
          reason: "handshake",
          message,
          remoteAddr,
          identity: null,
          cause: error,
        });
      } catch (thrown) {
        fault(socket, thrown, remoteAddr, null);
      }
    },
  );

  server.on("secureConnection", (socket: nodeTls.TLSSocket) => {
    // What the failure report can name if the handler throws half way.
    const context = {
      remoteAddr: undefined as Deno.NetAddr | undefined,
      identity: null as PeerIdentity | null,
    };
    try {
      secured(socket, context);
    } catch (error) {
      fault(socket, error, context.remoteAddr, context.identity);
    }
  });

  /** A completed handshake: verify, identify, authorize, then deliver. */
  const secured = (
    socket: nodeTls.TLSSocket,
    context: { remoteAddr?: Deno.NetAddr; identity: PeerIdentity | null },
  ) => {
    // Its handshake is complete: no longer counted, never evicted.
    handshakes.completed(socket);
    listener.track(socket);
    // Keep an early error from being unhandled before the wrapper exists.
    socket.on("error", () => {});
    // From here on a half-close by the client (close_notify) leaves our
    // side open, so the application can still answer.
    socket.allowHalfOpen = true;
    socket.setNoDelay(true);
    const remoteAddr = peerOf(socket) ?? netAddr(undefined, undefined);
    context.remoteAddr = remoteAddr;
    const refuse = (
      reason: TlsFailure,
      message: string,
      identity: PeerIdentity | null,
    ) => {
      socket.destroy();
      report({ reason, message, remoteAddr, identity });
    };
    let identity: PeerIdentity | null = null;
    if (mutual) {
      // Authorization first: the runtime's verdict, before anything of the
      // peer's certificate is parsed.
      const authorized = socket.authorized === true;
      const der = peerCertificateDer(socket);
      if (der instanceof Error) {
        refuse(
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
        return;
      }
      if (der === null) {
        if (requireClientCert) {
          refuse(
            "no-certificate",
            "the client sent no certificate; this server requires one (the client must present a certificate signed by a CA in `clientCa`)",
            null,
          );
          return;
        }
      } else if (!authorized) {
        // Refused already; read it (guarded) only to say why and who.
        let facts: CertificateFacts | null = null;
        try {
          facts = readCertificate(der);
          identity = identityOf(der, facts);
        } catch {
          identity = null;
        }
        context.identity = identity;
        const { reason, detail } = diagnoseClientCert(
          der,
          facts,
          caCerts,
          runtimeCode(socket),
        );
        refuse(
          reason,
          `the certificate of ${
            identity
              ? describe(identity)
              : `a client (SHA-256 ${fingerprintOf(der)})`
          } was refused: ${detail}`,
          identity,
        );
        return;
      } else {
        try {
          identity = identityOf(der);
        } catch (error) {
          refuse(
            "unreadable-certificate",
            `the certificate of a client (SHA-256 ${
              fingerprintOf(der)
            }) verified against \`clientCa\` but was refused: connauth cannot read it (${
              errorText(error)
            }); issue the client a well-formed certificate`,
            null,
          );
          return;
        }
        context.identity = identity;
      }
    }
    if (options.allow && !allowed(identity, options.allow)) {
      refuse(
        "not-allowed",
        `${
          describe(identity)
        } is verified but not in the allow list (cn, san, fingerprint)`,
        identity,
      );
      return;
    }
    // From here on, what the client sends is queued in the connection's
    // stream against readBufferLimit, also while the authorize hook runs.
    let onOverflow: (() => void) | undefined;
    const conn = new ServerConn(
      socket,
      identity,
      readBufferLimit,
      () => onOverflow?.(),
      (error) => fault(undefined, error, remoteAddr, identity),
    );
    const deliver = () => {
      if (socket.destroyed) return;
      if (!listener.deliver(socket, conn)) {
        report({
          reason: "queue-full",
          message:
            `${acceptQueue} verified connections are waiting for accept(); call accept() faster or raise \`acceptQueue\``,
          remoteAddr,
          identity,
        });
      }
    };
    if (!options.authorize) return deliver();
    if (!listener.reserve()) {
      refuse(
        "queue-full",
        `${acceptQueue} connections are waiting for the authorize hook or for accept(); ${
          describe(identity)
        } was closed; make the hook answer faster, call accept() faster or raise \`acceptQueue\``,
        identity,
      );
      return;
    }
    const controller = new AbortController();
    let settled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Ends the wait exactly once: gives back the queue slot and aborts the
    // hook's signal with `reason` (unless the hook answered).
    const settle = (reason?: unknown): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      socket.off("close", onClose);
      onOverflow = undefined;
      listener.release();
      if (reason !== undefined) controller.abort(reason);
      return true;
    };
    // Runs a callback of the wait; a throw closes this connection only.
    const guard = (fn: () => void) => {
      try {
        fn();
      } catch (error) {
        settle(error);
        fault(socket, error, remoteAddr, identity);
      }
    };
    const onClose = () =>
      guard(() =>
        settle(
          new DOMException(
            "Cannot authorize the client: it disconnected (or the listener closed) before the hook answered",
            "AbortError",
          ),
        )
      );
    socket.once("close", onClose);
    onOverflow = () => {
      const message = `${
        describe(identity)
      } sent more than ${readBufferLimit} bytes while the authorize hook ran; it was closed (raise \`readBufferLimit\` if clients may send that much before the hook answers)`;
      if (
        !settle(new DOMException(`Cannot authorize: ${message}`, "AbortError"))
      ) {
        return;
      }
      refuse("too-large", message, identity);
    };
    if (Number.isFinite(authorizeTimeout)) {
      timer = setTimeout(() =>
        guard(() => {
          const message = `${
            describe(identity)
          } was refused: the authorize hook did not answer within ${authorizeTimeout} ms; make it answer sooner (it gets an AbortSignal) or raise \`authorizeTimeout\``;
          if (
            !settle(
              new DOMException(
                `Cannot authorize: timed out after ${authorizeTimeout} ms`,
                "TimeoutError",
              ),
            )
          ) return;
          refuse("authorize-timeout", message, identity);
        }), authorizeTimeout);
    }
    let verdict: Promise<boolean>;
    try {
      verdict = Promise.resolve(
        options.authorize(identity, remoteAddr, controller.signal),
      );
    } catch (error) {
      verdict = Promise.reject(error);
    }
    verdict.then((ok) =>
      guard(() => {
        if (!settle()) return;
        if (ok === true) return deliver();
        refuse(
          "not-allowed",
          `${describe(identity)} was refused by the authorize hook`,
          identity,
        );
      }), (error) =>
      guard(() => {
        if (!settle()) return;
        refuse(
          "not-allowed",
          `${describe(identity)} was refused: the authorize hook threw: ${
            errorText(error)
          }`,
          identity,
        );
      }));
  };

  return listener;
}

// ---------------------------------------------------------------------------
// Client

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
 * import { connectTls, listenTls } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: [] });
 * await using listener = await listenTls({ cert: set.server.cert, key: set.server.key });
 * using client = await connectTls({ hostname: "localhost", port: listener.addr.port, caCerts: [set.ca.cert] });
 * (await listener.accept()).close();
 * console.log(client.remoteAddr.port === listener.addr.port);
 * ```
 */
export interface TlsClientConn extends Duplex, Disposable {
  /** Bytes from the server; a byte stream that supports BYOB readers. */
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  /** Bytes to the server; closing it sends close_notify (half-close). */
  readonly writable: WritableStream<Uint8Array>;
  /** The server's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Our address. */
  readonly localAddr: Deno.NetAddr;
  /** The ALPN protocol agreed on, or `null`. */
  readonly alpnProtocol: string | null;
  /** Closes the connection. Safe to call twice. */
  close(): void;
}

class ClientConn implements TlsClientConn {
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  readonly writable: WritableStream<Uint8Array>;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  readonly alpnProtocol: string | null;
  #conn: Deno.TlsConn;
  #closed = false;

  constructor(
    conn: Deno.TlsConn,
    alpnProtocol: string | null,
    sentCert: boolean,
    server: string,
  ) {
    this.#conn = conn;
    this.remoteAddr = conn.remoteAddr;
    this.localAddr = conn.localAddr;
    this.alpnProtocol = alpnProtocol;
    // Whether the server has sent us anything: a refusal (a bare close right
    // after the handshake) is only recognized before that.
    let heard = false;
    const mapError = (error: unknown): unknown => {
      if (heard) return error;
      return refusalError(error, sentCert, server) ?? error;
    };
    type ReadOutcome = { n: number | null } | { error: unknown };
    const settle = (read: Promise<number | null>): Promise<ReadOutcome> =>
      read.then((n) => ({ n }), (error: unknown) => ({ error }));
    // The application's read in flight, and what a read made by the write
    // side (to learn why a write failed) returned, kept for the next pull.
    let pulling: Promise<ReadOutcome> | null = null;
    let probing: Promise<ReadOutcome> | null = null;
    let leftover: { bytes: Uint8Array } | ReadOutcome | null = null;
    // A write that fails before the server sent anything fails because the
    // server closed the connection; only a read tells how: close_notify (a
    // clean close, not a refusal), an alert, or a bare EOF (a node:tls server
    // refusing our certificate). Bytes read here go to the next pull.
    const mapWriteError = async (error: unknown): Promise<unknown> => {
      if (
        heard ||
        !(error instanceof Deno.errors.BrokenPipe ||
          error instanceof Deno.errors.ConnectionReset ||
          error instanceof Deno.errors.UnexpectedEof)
      ) return error;
      let outcome: Promise<ReadOutcome>;
      if (leftover) {
        outcome = Promise.resolve(
          "bytes" in leftover ? { n: leftover.bytes.byteLength } : leftover,
        );
      } else if (pulling) {
        outcome = pulling;
      } else {
        if (!probing) {
          const buffer = new Uint8Array(HIGH_WATER_MARK);
          const probe = settle(conn.read(buffer)).then((result) => {
            if ("n" in result && result.n !== null && result.n > 0) {
              heard = true;
              leftover = { bytes: buffer.subarray(0, result.n) };
            } else {
              leftover = result;
            }
            return result;
          });
          probing = probe;
          probe.then(() => {
            if (probing === probe) probing = null;
          });
        }
        outcome = probing;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const result = await Promise.race([
        outcome,
        new Promise<null>((resolve) => timer = setTimeout(resolve, 1000, null)),
      ]);
      clearTimeout(timer);
      if (result === null || !("error" in result)) return error;
      return mapError(result.error);
    };
    this.readable = new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: HIGH_WATER_MARK,
      async pull(controller) {
        const request = controller.byobRequest!;
        const view = request.view!;
        const target = new Uint8Array(
          view.buffer,
          view.byteOffset,
          view.byteLength,
        );
        if (probing) await probing;
        let result: ReadOutcome;
        const kept = leftover;
        if (kept && "bytes" in kept) {
          const n = Math.min(kept.bytes.byteLength, target.byteLength);
          target.set(kept.bytes.subarray(0, n));
          leftover = n < kept.bytes.byteLength
            ? { bytes: kept.bytes.subarray(n) }
            : null;
          result = { n };
        } else if (kept) {
          leftover = null;
          result = kept;
        } else {
          const read = settle(conn.read(target));
          pulling = read;
          result = await read;
          pulling = null;
        }
        if ("error" in result) {
          const error = result.error;
          if (error instanceof Deno.errors.BadResource) {
            controller.close();
            request.respond(0);
            return;
          }
          throw mapError(error);
        }
        if (result.n === null) {
          controller.close();
          request.respond(0);
          return;
        }
        if (result.n > 0) heard = true;
        request.respond(result.n);
      },
      cancel() {
        // leave the socket to close(): cancelling the reader is not a close
      },
    }) as ReadableStream<Uint8Array<ArrayBuffer>>;
    this.writable = new WritableStream<Uint8Array>({
      async write(chunk) {
        let offset = 0;
        try {
          while (offset < chunk.byteLength) {
            offset += await conn.write(chunk.subarray(offset));
          }
        } catch (error) {
          throw await mapWriteError(error);
        }
      },
      async close() {
        await conn.closeWrite().catch(() => {});
      },
      abort() {
        try {
          conn.close();
        } catch {
          // already closed
        }
      },
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Maps an EOF/reset/alert at the start of a connection to a TlsError. */
function refusalError(
  error: unknown,
  sentCert: boolean,
  server: string,
): TlsError | null {
  const message = (error as Error)?.message ?? "";
  const alert = /received fatal alert: (\w+)/.exec(message)?.[1];
  if (
    alert === "CertificateRequired" ||
    (!sentCert && alert === "HandshakeFailure")
  ) {
    return new TlsError(
      `Cannot use the TLS connection to ${server}: the server requires a client certificate and we sent none; pass \`cert\` and \`key\` (or \`certFile\`/\`keyFile\`) with a certificate signed by a CA the server trusts`,
      "certificate-required",
      { cause: error },
    );
  }
  const eof = error instanceof Deno.errors.UnexpectedEof ||
    /close_notify|unexpected eof/i.test(message);
  const bareClose = eof || error instanceof Deno.errors.ConnectionReset;
  if (!sentCert) {
    if (!eof || alert) return null;
    // A node:tls server (connauth's listenTls among them) that requires a
    // client certificate refuses one that sent none this way: no alert,
    // just a close without close_notify right after the handshake.
    return new TlsError(
      `Cannot use the TLS connection to ${server}: the server closed it before sending anything, without a TLS close_notify: most likely it requires a client certificate and we sent none (a node:tls server refuses that way, with no alert); pass \`cert\` and \`key\` (or \`certFile\`/\`keyFile\`) with a certificate signed by a CA the server trusts`,
      "certificate-required",
      { cause: error },
    );
  }
  if (alert || bareClose) {
    return new TlsError(
      `Cannot use the TLS connection to ${server}: the server refused our client certificate (${
        alert
          ? `alert ${alert}`
          : "it closed the connection right after the handshake"
      }); use a certificate signed by a CA the server trusts (its \`clientCa\`), with extended key usage clientAuth, still valid, and allowed by the server's list`,
      "certificate-refused",
      { cause: error },
    );
  }
  return null;
}

/** Maps a `Deno.connectTls` handshake error to a TlsError naming cause and fix. */
function handshakeError(
  error: unknown,
  server: string,
  hostname: string,
  customCa: boolean,
  sentCert: boolean,
): unknown {
  if (!(error instanceof Error)) return error;
  if (error.name === "TimeoutError" || error.name === "AbortError") {
    return error;
  }
  const message = error.message;
  const action = `Cannot connect with TLS to ${server}`;
  const ca = customCa
    ? "pass the CA certificate that signed it in `caCerts` (or `caFile`)"
    : "Deno's default roots (the Mozilla roots bundled with Deno, or the system's with DENO_TLS_CA_STORE=system) do not include its issuer; pass the CA certificate in `caCerts` (for a development set: certs/ca.pem)";
  if (/UnknownIssuer|UnknownCA|self.signed|BadSignature/i.test(message)) {
    return new TlsError(
      `${action}: the server's certificate is signed by an unknown certificate authority; ${ca}`,
      "unknown-ca",
      { cause: error },
    );
  }
  if (/NotValidForName|not valid for name|hostname/i.test(message)) {
    return new TlsError(
      `${action}: the server's certificate is not valid for "${hostname}"; connect with a name in its subject alternative names, or reissue it with "${hostname}" as a SAN (the CN is not checked)`,
      "hostname-mismatch",
      { cause: error },
    );
  }
  if (/expired/i.test(message)) {
    return new TlsError(
      `${action}: the server's certificate has expired; renew it on the server (development: deno task certs --force)`,
      "expired",
      { cause: error },
    );
  }
  // rustls: "certificate not valid yet: verification time N (UNIX), but
  // certificate is not valid before M"; older Deno: "NotValidYet".
  if (/NotValidYet|not valid yet/i.test(message)) {
    const start = /not valid before (\d+)/.exec(message)?.[1];
    const from = start === undefined
      ? ""
      : ` (it is valid from ${new Date(Number(start) * 1000).toISOString()})`;
    return new TlsError(
      `${action}: the server's certificate is not valid yet${from}; check the clocks of both machines or the certificate's start date`,
      "not-yet-valid",
      { cause: error },
    );
  }
  if (/UnsupportedCertVersion/i.test(message)) {
    return new TlsError(
      `${action}: the server's certificate is X.509 version 1 (no extensions, so no SANs or key usage), which is refused; reissue it as version 3 (openssl x509 -req ... -extfile with subjectAltName, or deno task certs)`,
      "version-1",
      { cause: error },
    );
  }
  if (/CaUsedAsEndEntity/i.test(message)) {
    return new TlsError(
      `${action}: the server presents a CA certificate (basicConstraints CA:TRUE, what \`openssl req -new -x509\` makes by default) as its own certificate; create a CA and issue the server a leaf certificate from it (deno task certs)`,
      "ca-as-leaf",
      { cause: error },
    );
  }
  if (/KeyMismatch|keys may not be consistent/i.test(message)) {
    return new TlsError(
      `${action}: our client key does not belong to our client certificate; pass the key generated together with \`cert\``,
      "key-mismatch",
      { cause: error },
    );
  }
  const refusal = refusalError(error, sentCert, server);
  if (refusal) return refusal;
  if (
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.NotCapable
  ) return error;
  if (
    error instanceof Deno.errors.InvalidData ||
    /alert|certificate/i.test(message)
  ) {
    return new TlsError(
      `${action}: the TLS handshake failed: ${message}`,
      "handshake",
      { cause: error },
    );
  }
  return error;
}

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
 * @throws {DOMException} `TimeoutError` after `timeout`, `AbortError` (or the
 *   signal's reason) when aborted.
 * @throws {Deno.errors.ConnectionRefused} When nothing listens on the port.
 *
 * @example
 * ```ts
 * import { connectTls, listenTls, TlsError } from "./tls.ts";
 * import { generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: [] });
 * const other = await generateCertificates({ clients: [] });
 * await using listener = await listenTls({
 *   cert: set.server.cert,
 *   key: set.server.key,
 *   onTlsError: () => {},
 * });
 * try {
 *   await connectTls({ hostname: "localhost", port: listener.addr.port, caCerts: [other.ca.cert] });
 * } catch (error) {
 *   console.log(error instanceof TlsError && error.reason); // "unknown-ca"
 * }
 * ```
 */
export async function connectTls(
  options: ConnectTlsOptions,
): Promise<TlsClientConn> {
  const action = "connect with TLS";
  if (typeof options?.port !== "number") {
    throw new TypeError(`Cannot ${action}: \`port\` must be a number`);
  }
  const hostname = options.hostname ?? "127.0.0.1";
  const server = formatAddr({ transport: "tcp", hostname, port: options.port });
  const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
  const caText = await readPem(
    options.caCerts,
    options.caFile,
    "the CA certificates",
    "caCerts",
    "caFile",
    action,
  );
  const cert = await readPem(
    options.cert,
    options.certFile,
    "the client certificate",
    "cert",
    "certFile",
    action,
  );
  const key = await readPem(
    options.key,
    options.keyFile,
    "the client key",
    "key",
    "keyFile",
    action,
  );
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError(
      `Cannot ${action}: a client certificate needs its private key and the other way round; pass both \`cert\` and \`key\` (or \`certFile\` and \`keyFile\`)`,
    );
  }
  if (cert !== undefined && key !== undefined) {
    checkKeyPair(
      cert,
      key,
      action,
      options.cert !== undefined ? "cert" : "certFile",
      options.key !== undefined ? "key" : "keyFile",
    );
  }
  const caCerts = caText === undefined ? undefined : splitCerts(caText);
  if (caCerts !== undefined && caCerts.length === 0) {
    throw new TypeError(
      `Cannot ${action}: \`caCerts\` holds no "-----BEGIN CERTIFICATE-----" block`,
    );
  }
  const sentCert = cert !== undefined;
  const controller = new AbortController();
  const timer = Number.isFinite(timeout)
    ? setTimeout(() =>
      controller.abort(
        new DOMException(
          `Cannot ${action} to ${server}: timed out after ${timeout} ms waiting for the peer`,
          "TimeoutError",
        ),
      ), timeout)
    : undefined;
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  let conn: Deno.TlsConn | undefined;
  const attempt = (async () => {
    conn = await Deno.connectTls({
      hostname,
      port: options.port,
      caCerts,
      alpnProtocols: options.alpnProtocols,
      ...(sentCert ? { cert, key } : {}),
    });
    if (signal.aborted) return null;
    const info = await conn.handshake();
    return info.alpnProtocol;
  })();
  try {
    const alpn = await raceSignal(attempt, signal);
    return new ClientConn(conn!, alpn ?? null, sentCert, server);
  } catch (error) {
    if (signal.aborted) {
      attempt.then(() => conn?.close(), () => conn?.close());
      throw signal.reason;
    }
    try {
      conn?.close();
    } catch {
      // already closed
    }
    throw handshakeError(
      error,
      server,
      hostname,
      caCerts !== undefined,
      sentCert,
    );
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
