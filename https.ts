// The public surface of serveHttps(): its types, options and documentation;
// the machinery lives in _https_{server,options}.ts and _http1_*.ts, one
// concept each.
/**
 * An HTTPS server for `Request` -> `Response` handlers that can require and
 * verify client certificates (mutual TLS), which `Deno.serve` cannot. TLS
 * comes from {@linkcode listenTls} in `tls.ts` (`node:tls`: OpenSSL-style
 * verification as Python's `ssl` does, Nagle off, the client's verified
 * identity); HTTP/1.1 is spoken by a small, strict parser of our own, which
 * hands each request to a web-standard handler such as
 * {@linkcode createXmlRpcHandler} from `xmlrpc.ts`.
 *
 * The HTTP side is deliberately small and strict (RFC 9112): request line
 * and headers under a size (`maxHeaderSize`, 431) and count
 * (`maxHeaderCount`, 431) limit, lines ending in CRLF (a bare CR or LF is a
 * 400 at once); bodies by `Content-Length` or `Transfer-Encoding: chunked`,
 * bounded by `maxBodySize` (413, refused from the header or as soon as the
 * count goes over, before the rest is read) and handed to the handler
 * whole. A chunked body may come in at most `max(1024, maxBodySize / 16)`
 * chunks with at most `maxBodySize + maxHeaderSize` bytes of framing (413
 * past either), and its trailers are checked like headers and dropped.
 * Chunked that is not the final transfer coding is a 400, another coding a
 * 501, a duplicate or malformed `Content-Length` or `Host` a 400. Methods
 * are case-sensitive: `post` is not `POST` (501, as are `CONNECT`, `TRACE`
 * and `TRACK`, which a `Request` cannot carry). A request's URL takes its
 * authority from the `Host` header (the server's address without one), so
 * a path such as `//evil.example/x` stays a path; the handler must treat
 * that authority, like every header, as the client's claim.
 *
 * Costs grow linearly with what the client sends: every received byte is
 * copied once into a buffer that grows with the bytes received, so a
 * request holds at most a few times `maxBodySize` plus `maxHeaderSize`
 * however it is split into pieces. Responses are written with a
 * `Content-Length` in one write. Connections are kept alive (HTTP/1.1, or
 * HTTP/1.0 with `Connection: keep-alive`), pipelined requests are answered
 * in order, and every refusal closes the connection. A refusal sent before
 * the request was read whole is followed by a half-close, and what the
 * client still sends is read and dropped (RFC 9112, 9.6) until it closes,
 * for at most 16 MiB (or `maxBodySize` if larger), `keepAliveTimeout` of
 * silence and `requestTimeout` in all: so the client reads the response
 * rather than a connection reset. A client gets `keepAliveTimeout` of
 * silence and `keepAliveTimeout + requestTimeout` for a whole request (408
 * if it had started one, then the connection is closed at once); both
 * pause while the handler runs. No HTTP/2, no upgrades, no streamed bodies.
 *
 * @example Mutual TLS with a client certificate allow-list
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateCertificates } from "./certs.ts";
 * import { serveHttps } from "./https.ts";
 *
 * const { ca, server, clients } = await generateCertificates({
 *   clients: ["alice"],
 * });
 * await using https = await serveHttps({
 *   cert: server.cert,
 *   key: server.key,
 *   clientCa: ca.cert,
 *   allow: { cn: ["alice"] },
 * }, (_request, info) => new Response(`hello ${info.peerIdentity?.cn}\n`));
 *
 * using client = Deno.createHttpClient({
 *   caCerts: [ca.cert],
 *   cert: clients.alice.cert,
 *   key: clients.alice.key,
 * });
 * const response = await fetch(`https://localhost:${https.addr.port}/`, {
 *   client,
 * });
 * assert.equal(await response.text(), "hello alice\n");
 * ```
 *
 * @module
 */
import { listenerOptions, resolveHttpsOptions } from "./_https_options.ts";
import { serveOn } from "./_https_server.ts";
import {
  listenTls,
  type PeerIdentity,
  type SniCertificate,
  type TlsAllowList,
  type TlsCredentials,
} from "./tls.ts";
import type { ErrorInfo } from "./types.ts";

/** Options for {@linkcode serveHttps}. */
export interface ServeHttpsOptions {
  /**
   * The server's certificate chain, PEM text. Give this or `certFile`,
   * unless `listener` is given.
   *
   * @default {undefined}
   */
  cert?: string;
  /**
   * The server certificate's private key, PEM text. Give this or
   * `keyFile`, unless `listener` is given.
   *
   * @default {undefined}
   */
  key?: string;
  /**
   * Path of a PEM file holding the server certificate chain, read once at
   * start (as {@linkcode listenTls} reads it).
   *
   * @default {undefined}
   */
  certFile?: string;
  /**
   * Path of a PEM file holding the server's private key, read once at
   * start.
   *
   * @default {undefined}
   */
  keyFile?: string;
  /**
   * Certificates by the server name a client asks for (SNI), as
   * {@linkcode ListenTlsOptions.sni}: `{ "api.example.test": { cert, key }
   * }`; `cert` / `key` stay the default for other names and for clients
   * that send none. Names are DNS names, compared in lower case without a
   * trailing dot; `"*.example.test"` covers one label. While names are set,
   * a ClientHello over about 4 KiB stalls until `handshakeTimeout` (Deno
   * 2.9.6; see {@linkcode ListenTlsOptions.sni}).
   *
   * @default {undefined (one certificate for every name)}
   */
  sni?: Record<string, SniCertificate>;
  /**
   * A listener to serve on instead of opening one from `cert`, `key`,
   * `certFile`, `keyFile`, `clientCa`, `clientCaFile`, `sni`, `hostname`,
   * `port` and `handshakeTimeout` (leave those out):
   * typically a {@linkcode listenTls} listener, for its `authorize`,
   * `requireClientCert` and error-hook options, or its own `allow` (which
   * refuses at the TLS layer). Each request's `peerIdentity` then comes
   * from its connection's (`null` when it has none), `allow` here still
   * answers 403, and request URLs are `https:` when the connection has a
   * `peerIdentity` property, `http:` otherwise (a `Deno.listen()` listener
   * serves plain HTTP). The server closes it on shutdown.
   *
   * @default {undefined}
   */
  listener?: HttpsListener;
  /**
   * CA certificates (PEM) that client certificates must chain to. When set,
   * every client must present a valid certificate from one of them (mutual
   * TLS); the TLS handshake fails otherwise. When unset, no client
   * certificate is asked for.
   *
   * @default {undefined}
   */
  clientCa?: string | string[];
  /**
   * Path of a PEM file with the client CA certificates: `clientCa` read
   * from a file, once at start.
   *
   * @default {undefined}
   */
  clientCaFile?: string;
  /**
   * The verified clients allowed to make requests, by certificate common
   * name, subject alternative name or fingerprint, matched as
   * {@linkcode listenTls} matches its `allow` ({@linkcode TlsAllowList}).
   * Unlike listenTls, which refuses others at the TLS layer, serveHttps
   * answers each request of another client with HTTP 403, which the client
   * can read (a TLS refusal is a reset it cannot tell from a network
   * failure), and does not report it to `onError`. Needs `clientCa` (or
   * `clientCaFile`) unless `listener` is given. When unset, every client
   * with a certificate from `clientCa` is allowed.
   *
   * @default {undefined}
   */
  allow?: TlsAllowList;
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The TCP port; 0 picks a free one (read it from `addr`).
   *
   * @default {0}
   */
  port?: number;
  /**
   * Largest request body accepted, in bytes (HTTP 413 above it). A chunked
   * body may also have at most `max(1024, maxBodySize / 16)` chunks and
   * `maxBodySize + maxHeaderSize` bytes of chunk framing. `Infinity`: no
   * limit (a client may then make the server hold what it sends).
   *
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * Largest request line plus headers, in bytes (HTTP 431 above it, 414
   * when the request line alone is over); also the limit for a chunked
   * body's trailers. `Infinity`: no limit.
   *
   * @default {16384}
   */
  maxHeaderSize?: number;
  /**
   * Most header lines in a request (HTTP 431 above it); also the limit for
   * a chunked body's trailer lines. `Infinity`: no limit.
   *
   * @default {100}
   */
  maxHeaderCount?: number;
  /**
   * Deadline for a TLS handshake, in milliseconds; `Infinity` for none.
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * Time a client has to send a whole request (headers and body), in
   * milliseconds, counted from the end of its previous response (or its
   * handshake) once `keepAliveTimeout` is added: a connection that has not
   * delivered its next complete request within `keepAliveTimeout +
   * requestTimeout` is closed, however slowly it trickles bytes. `Infinity`
   * for none.
   *
   * @default {30000}
   */
  requestTimeout?: number;
  /**
   * How long a connection may stay silent (no byte either way) before it is
   * closed, in milliseconds; `Infinity` for no limit.
   *
   * @default {30000}
   */
  keepAliveTimeout?: number;
  /**
   * Most connections open at once; more are closed right after their
   * handshake (and reported to `onError`). `Infinity` for no limit.
   *
   * @default {1024}
   */
  maxConnections?: number;
  /**
   * Most connections open at once from one address (an IPv4 address, an
   * IPv6 prefix of `ipv6Prefix` bits, or one entry for all Unix socket
   * peers), so that one client cannot hold every one of `maxConnections`.
   * More are closed right after their handshake (and reported to
   * `onError`). Behind NAT or a proxy one address is many users: raise it
   * there. `Infinity` turns it off.
   *
   * @default {64}
   */
  maxPerAddress?: number;
  /**
   * How many leading bits of an IPv6 address name one client for
   * `maxPerAddress`, and for the TLS handshake limits of the listener
   * serveHttps opens (`maxPerAddress` and `maxHandshakes` of
   * {@linkcode listenTls}). A host is usually given a whole /64, so counting single
   * IPv6 addresses would let it dodge the limit with addresses of its own;
   * 128 counts each address. IPv4-mapped IPv6 addresses count as their IPv4
   * address, and link-local ones (`fe80::/10`) as the whole address.
   *
   * @default {64}
   */
  ipv6Prefix?: number;
  /**
   * On shutdown, how long requests in flight may run before every
   * connection is closed, in milliseconds: 0 closes at once, `Infinity`
   * waits for every request in flight however long it takes.
   *
   * @default {1000}
   */
  gracePeriod?: number;
  /**
   * Aborting it shuts the server down, as {@linkcode HttpsServer.shutdown}.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Called with errors, and where they happened (`info.phase`, and the
   * client's address `info.remoteAddr` when there is one):
   *
   * - `"tls"`: a failed or refused TLS connection (a {@linkcode TlsError}
   *   naming the reason in `error.reason`: a client without a certificate,
   *   one from another CA, ...);
   * - `"accept"`: a connection over `maxConnections` or `maxPerAddress`
   *   (closed; with its address), or a failed accept (no address): a
   *   connection its client reset before it was accepted (skipped at
   *   once), or the process out of file descriptors (retried after a
   *   back-off of 5 ms doubling to 1 s);
   * - `"request"`: a throw while serving a request that no request should
   *   cause (the client gets HTTP 500 and that connection is closed; the
   *   server goes on);
   * - `"handler"`: the handler threw, or its response body failed (the
   *   client gets HTTP 500).
   *
   * Requests refused with a 4xx (403 from `allow` included) are not
   * reported. For logging; a hook that throws is ignored.
   *
   * @default {undefined}
   */
  onError?: (error: unknown, info: HttpsErrorInfo) => void;
}

/**
 * Where an error {@linkcode serveHttps} reports to its `onError` hook
 * happened, and the client's address when the error belongs to one
 * connection.
 *
 * @example Log TLS refusals with their reason
 * ```ts
 * import assert from "node:assert/strict";
 * import type { HttpsErrorInfo } from "./https.ts";
 * import { TlsError } from "./tls.ts";
 *
 * const lines: string[] = [];
 * const onError = (error: unknown, info: HttpsErrorInfo) => {
 *   const reason = error instanceof TlsError ? ` (${error.reason})` : "";
 *   const from = info.remoteAddr?.transport === "tcp"
 *     ? ` from ${info.remoteAddr.hostname}`
 *     : "";
 *   lines.push(`${info.phase}${from}${reason}`);
 * };
 * onError(new TlsError("Cannot accept the TLS connection: ...", "unknown-ca"), {
 *   phase: "tls",
 *   remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
 * });
 * assert.deepEqual(lines, ["tls from 127.0.0.1 (unknown-ca)"]);
 * ```
 */
export interface HttpsErrorInfo extends ErrorInfo {
  /**
   * `"tls"` (the TLS handshake or the client's certificate), `"accept"`
   * (accepting or admitting a connection), `"request"` (serving a request),
   * `"handler"` (the handler).
   */
  readonly phase: "accept" | "tls" | "request" | "handler";
}

/** A connection {@linkcode serveHttps} can serve: a `Deno.Conn` or a `TlsServerConn` fits. */
export interface HttpsConn {
  /** Bytes from the client. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the client. */
  readonly writable: WritableStream<Uint8Array>;
  /** The client's address. */
  readonly remoteAddr: Deno.Addr;
  /** The client's verified certificate, as {@linkcode listenTls} reports it. */
  readonly peerIdentity?: PeerIdentity | null;
  /** Closes the connection. */
  close(): void;
  /**
   * Ends our sending side only (a `Deno.Conn` has it), used after a refusal
   * to let the client read it while the server reads and drops the rest of
   * the request. Without it the server closes `writable`, which should
   * then end only our side, as a {@linkcode TlsServerConn}'s does.
   */
  closeWrite?(): Promise<void>;
}

/**
 * A listener for the `listener` option of {@linkcode serveHttps}: a
 * {@linkcode TlsListener} from {@linkcode listenTls}, or a `Deno.TcpListener`.
 */
export interface HttpsListener extends AsyncIterable<HttpsConn> {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /**
   * Waits for the next connection; rejects with `Deno.errors.BadResource`
   * once the listener is closed. Used instead of iterating when present (a
   * `Deno.TcpListener` and a {@linkcode TlsListener} have it): then a
   * connection that fails before it is accepted (a client that reset it)
   * is skipped, where a failed iteration would end it.
   */
  accept?(): Promise<HttpsConn>;
  /** Stops listening. */
  close(): void;
}

/** What {@linkcode serveHttps} tells the handler about a request. */
export interface HttpsRequestInfo {
  /** The client's address. */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * The client's verified certificate (common name in `cn`, SHA-256
   * fingerprint in `fingerprint256`, subject alternative names, ...), as
   * {@linkcode listenTls} reads it; `null` without mutual TLS, or for a
   * client that sent no certificate to a listener that did not require one.
   */
  readonly peerIdentity: PeerIdentity | null;
}

/** A request handler for {@linkcode serveHttps}. */
export type HttpsHandler = (
  request: Request,
  info: HttpsRequestInfo,
) => Response | Promise<Response>;

/** A running server from {@linkcode serveHttps}. */
export interface HttpsServer extends AsyncDisposable {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Settles when the server has closed. */
  readonly finished: Promise<void>;
  /**
   * Stops accepting connections, closes idle ones, gives requests in
   * flight `gracePeriod` (1 s by default) to finish, then closes every
   * connection. A handler still running then is abandoned (its response is
   * never sent), so shutdown finishes even when a handler never settles;
   * with `gracePeriod: Infinity` it waits for every handler instead.
   *
   * @returns When the server has closed.
   */
  shutdown(): Promise<void>;
  /**
   * Replaces the certificate and key, the client CAs or the SNI map for new
   * TLS handshakes, without a restart; connections already open go on. As
   * {@linkcode TlsListener.setCredentials}: everything is checked first and
   * a bad input throws and changes nothing. On a server given its
   * `listener`, this calls that listener's `setCredentials()`.
   *
   * @param credentials What to replace; fields left out keep their value.
   * @returns When the new credentials are in force.
   * @throws {TypeError} As {@linkcode TlsListener.setCredentials}, or when
   *   the server was given a listener without `setCredentials()` (a
   *   `Deno.Listener`).
   * @throws {TlsError} When a key does not belong to its certificate
   *   (reason `"key-mismatch"`).
   * @throws {Deno.errors.NotFound} When a `*File` field names no file.
   * @throws {Deno.errors.TimedOut} When a `*File` field is not read within
   *   10 s (a named pipe nobody writes to); the calls after it still run.
   * @throws {Deno.errors.BadResource} When the server has shut down.
   *
   * @example Rotate to a certificate from a new CA
   * ```ts
   * import assert from "node:assert/strict";
   * import { generateCertificates } from "./certs.ts";
   * import { serveHttps } from "./https.ts";
   *
   * const first = await generateCertificates({ clients: [] });
   * const next = await generateCertificates({ clients: [] });
   * await using https = await serveHttps(
   *   { cert: first.server.cert, key: first.server.key },
   *   () => new Response("hello"),
   * );
   * await https.setCredentials({ cert: next.server.cert, key: next.server.key });
   * using client = Deno.createHttpClient({ caCerts: [next.ca.cert] });
   * const response = await fetch(`https://localhost:${https.addr.port}/`, {
   *   client,
   * });
   * assert.equal(await response.text(), "hello");
   * ```
   */
  setCredentials(credentials: TlsCredentials): Promise<void>;
}

/**
 * Serves `handler` over HTTPS, requiring client certificates when `clientCa` is
 * given.
 *
 * A request from a client whose certificate is not in `allow` gets HTTP
 * 403; one with a body over `maxBodySize` gets HTTP 413 and the
 * connection is closed; a handler that throws gets HTTP 500 (and
 * `onError`). A client without a certificate, or with one from another CA,
 * is refused right after the TLS handshake (`onError` gets a
 * {@linkcode TlsError} naming the reason). Malformed, oversized or slow
 * requests get 400, 413, 414, 431, 501, 505 or 408 (see the module doc)
 * and the connection is closed; after a refusal sent before the request was
 * read whole, the rest the client sends is read and dropped for a bounded
 * time and byte count first, so that the client reads the refusal.
 *
 * @param options Certificate, key, CAs, address, limits.
 * @param handler Answers each request.
 * @returns The running server, once it listens.
 * @throws {TypeError} When the certificate or the key is missing (neither
 * `cert` nor `certFile`, neither `key` nor `keyFile`), `allow` is given
 * without `clientCa`, a listener option is given with `listener`, or
 * a number option is not a number.
 * @throws {RangeError} When a limit is not a whole number of at least 1
 * (or `Infinity`), a timeout is not above 0, `gracePeriod` is negative,
 * `port` is not from 0 to 65535, or `ipv6Prefix` is not a whole number
 * from 1 to 128.
 * @throws {Deno.errors.NotFound} When a `*File` option names no file.
 * @throws {Deno.errors.TimedOut} When a `*File` option is not read within
 *   10 s (a named pipe nobody writes to).
 * @throws {Error} When the address cannot be bound, or the certificate,
 * key or CA is not valid PEM (as {@linkcode listenTls} throws).
 *
 * @example Server-only TLS
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateCertificates } from "./certs.ts";
 * import { serveHttps } from "./https.ts";
 *
 * const { ca, server } = await generateCertificates({ clients: [] });
 * await using https = await serveHttps(
 *   { cert: server.cert, key: server.key },
 *   async (request) => new Response(await request.text()),
 * );
 * using client = Deno.createHttpClient({ caCerts: [ca.cert] });
 * const response = await fetch(`https://localhost:${https.addr.port}/`, {
 *   method: "POST",
 *   body: "ping",
 *   client,
 * });
 * assert.equal(await response.text(), "ping");
 * ```
 *
 * @example Mutual TLS, allowing one client by its certificate's fingerprint
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateCertificates } from "./certs.ts";
 * import { serveHttps } from "./https.ts";
 *
 * const { ca, server, clients } = await generateCertificates({
 *   clients: ["alice", "bob"],
 * });
 * await using https = await serveHttps({
 *   cert: server.cert,
 *   key: server.key,
 *   clientCa: ca.cert,
 *   allow: { fingerprint: [clients.alice.fingerprint] },
 * }, (_request, info) => new Response(`hello ${info.peerIdentity?.cn}`));
 * const get = async (who: "alice" | "bob") => {
 *   using client = Deno.createHttpClient({
 *     caCerts: [ca.cert],
 *     cert: clients[who].cert,
 *     key: clients[who].key,
 *   });
 *   const response = await fetch(`https://localhost:${https.addr.port}/`, {
 *     client,
 *   });
 *   return `${response.status} ${await response.text()}`;
 * };
 * assert.equal(await get("alice"), "200 hello alice");
 * // Verified by TLS, but not allowed: an answer the client can read.
 * assert.match(await get("bob"), /^403 .*"bob" is not in the allow-list/);
 * ```
 *
 * @example On your own listenTls() listener, which refuses at the TLS layer
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateCertificates } from "./certs.ts";
 * import { serveHttps } from "./https.ts";
 * import { listenTls } from "./tls.ts";
 *
 * const { ca, server, clients } = await generateCertificates({
 *   clients: ["alice"],
 * });
 * await using https = await serveHttps({
 *   listener: await listenTls({
 *     cert: server.cert,
 *     key: server.key,
 *     clientCa: ca.cert,
 *     allow: { cn: ["alice"] },
 *   }),
 * }, (_request, info) => new Response(`hello ${info.peerIdentity?.cn}`));
 * using client = Deno.createHttpClient({
 *   caCerts: [ca.cert],
 *   cert: clients.alice.cert,
 *   key: clients.alice.key,
 * });
 * const response = await fetch(`https://localhost:${https.addr.port}/`, {
 *   client,
 * });
 * assert.equal(await response.text(), "hello alice");
 * ```
 */
export async function serveHttps(
  options: ServeHttpsOptions,
  handler: HttpsHandler,
): Promise<HttpsServer> {
  const limits = resolveHttpsOptions(options);
  const onError = options.onError;
  const report = (error: unknown, info: HttpsErrorInfo) => {
    try {
      onError?.(error, info);
    } catch {
      // a throwing hook must not stop the server
    }
  };
  const listener: HttpsListener = options.listener ??
    await listenTls(
      listenerOptions(
        options,
        limits,
        (error, info) =>
          report(error, { phase: "tls", remoteAddr: info.remoteAddr }),
      ),
    );
  return serveOn(listener, limits, {
    given: options.listener !== undefined,
    allow: options.allow ?? null,
    report,
    signal: options.signal,
  }, handler);
}
