/**
 * An HTTPS server for `Request` -> `Response` handlers that can require and
 * verify client certificates (mutual TLS), which `Deno.serve` cannot. It
 * runs on `node:https` (OpenSSL-compatible verification, as Python's `ssl`
 * does), and bridges each request to a web-standard handler such as
 * {@linkcode xmlrpcHandler} from `xmlrpc.ts`.
 *
 * Request bodies are bounded (`maxBodySize`, refused with HTTP 413 from the
 * `Content-Length` header or as soon as the count goes over, before the
 * rest is read) and handed to the handler whole; responses are written with
 * a `Content-Length`. Connections are kept alive and sockets have Nagle's
 * algorithm off, so a client making call after call on one connection does
 * not wait on delayed ACKs.
 *
 * @example Mutual TLS with a client certificate allow-list
 * ```ts
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
 *   allowedClients: ["alice"],
 * }, (_request, info) => new Response(`hello ${info.clientName}\n`));
 *
 * using client = Deno.createHttpClient({
 *   caCerts: [ca.cert],
 *   cert: clients.alice.cert,
 *   key: clients.alice.key,
 * });
 * const response = await fetch(`https://localhost:${https.addr.port}/`, {
 *   client,
 * });
 * console.log(await response.text()); // hello alice
 * ```
 *
 * @module
 */
import { createServer } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { formatAddr } from "./_io.ts";

/** Options for {@linkcode serveHttps}. */
export interface ServeHttpsOptions {
  /** The server's certificate chain (PEM). */
  cert: string;
  /** The server certificate's private key (PEM). */
  key: string;
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
   * Client certificate common names (CN) allowed to make requests; any
   * other verified client gets HTTP 403. Needs `clientCa`. When unset, every
   * client with a certificate from `clientCa` is allowed.
   *
   * @default {undefined}
   */
  allowedClients?: string[];
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
   * Largest request body accepted, in bytes (HTTP 413 above it).
   *
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * Deadline for a TLS handshake, in milliseconds.
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * Time a client has to send a whole request (headers and body), in
   * milliseconds, counted from the end of its previous response (or its
   * handshake) once `keepAliveTimeout` is added: a connection that has not
   * delivered its next complete request within `keepAliveTimeout +
   * requestTimeout` is closed, however slowly it trickles bytes.
   *
   * @default {30000}
   */
  requestTimeout?: number;
  /**
   * How long a connection may stay silent (no byte either way) before it is
   * closed, in milliseconds.
   *
   * @default {30000}
   */
  keepAliveTimeout?: number;
  /**
   * Most connections open at once; more are closed right after their
   * handshake (and reported to `onError`).
   *
   * @default {1024}
   */
  maxConnections?: number;
  /**
   * Aborting it shuts the server down, as {@linkcode HttpsServer.shutdown}.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Called with errors: a handler that throws (the client gets HTTP 500), a
   * failed TLS handshake (a client without a valid certificate, for
   * instance). For logging.
   *
   * @default {undefined}
   */
  onError?: (error: unknown, remote: string) => void;
}

/** What {@linkcode serveHttps} tells the handler about a request. */
export interface HttpsRequestInfo {
  /** The client's address. */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * The verified client certificate's common name, or `null` without
   * mutual TLS.
   */
  readonly clientName: string | null;
  /**
   * The verified client certificate's SHA-256 fingerprint (colon-separated
   * hex, as OpenSSL prints it), or `null` without mutual TLS.
   */
  readonly clientFingerprint: string | null;
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
   * Stops accepting connections, closes idle ones, lets requests in
   * flight finish, then closes every connection.
   *
   * @returns When the server has closed.
   */
  shutdown(): Promise<void>;
}

function positive(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot serve HTTPS: ${what} must be a positive integer, got ${value}`,
    );
  }
  return value;
}

function plain(status: number, message: string): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/**
 * Serves `handler` over HTTPS, requiring client certificates when `clientCa` is
 * given.
 *
 * A request from a client whose certificate is not in `allowedClients` gets
 * HTTP 403; one with a body over `maxBodySize` gets HTTP 413 and the
 * connection is closed; a handler that throws gets HTTP 500 (and
 * `onError`). A client without a certificate, or with one from another CA,
 * fails the TLS handshake.
 *
 * @param options Certificate, key, CAs, address, limits.
 * @param handler Answers each request.
 * @returns The running server, once it listens.
 * @throws {TypeError} When `cert` or `key` is missing, or `allowedClients`
 * is given without `clientCa`.
 * @throws {RangeError} When a limit or timeout is not a positive integer.
 * @throws {Error} When the address cannot be bound, or the certificate,
 * key or CA is not valid PEM.
 *
 * @example Server-only TLS
 * ```ts
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
 * console.log(await response.text()); // ping
 * ```
 */
export async function serveHttps(
  options: ServeHttpsOptions,
  handler: HttpsHandler,
): Promise<HttpsServer> {
  if (typeof options?.cert !== "string" || typeof options.key !== "string") {
    throw new TypeError(
      "Cannot serve HTTPS: cert and key (PEM strings) are required; make a development set with `deno task certs`",
    );
  }
  const mutual = options.clientCa !== undefined;
  if (options.allowedClients !== undefined && !mutual) {
    throw new TypeError(
      "Cannot serve HTTPS: allowedClients needs clientCa, the CA that signs client certificates",
    );
  }
  const allowed = options.allowedClients
    ? new Set(options.allowedClients)
    : null;
  const maxBodySize = positive(
    options.maxBodySize ?? 1024 * 1024,
    "maxBodySize",
  );
  const handshakeTimeout = positive(
    options.handshakeTimeout ?? 10_000,
    "handshakeTimeout",
  );
  const requestTimeout = positive(
    options.requestTimeout ?? 30_000,
    "requestTimeout",
  );
  const keepAliveTimeout = positive(
    options.keepAliveTimeout ?? 30_000,
    "keepAliveTimeout",
  );
  const maxConnections = positive(
    options.maxConnections ?? 1024,
    "maxConnections",
  );
  const onError = options.onError;
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot serve HTTPS: port must be 0 to 65535, got ${port}`,
    );
  }
  const hostname = options.hostname ?? "127.0.0.1";

  let base = "https://localhost/";
  const server = createServer({
    cert: options.cert,
    key: options.key,
    ca: options.clientCa,
    requestCert: mutual,
    rejectUnauthorized: mutual,
    minVersion: "TLSv1.2",
    handshakeTimeout,
    noDelay: true,
    keepAlive: true,
  });

  // node's requestTimeout, headersTimeout and keepAliveTimeout are not
  // enforced by Deno's node:http, so the deadlines are kept here.
  const deadlines = new Map<TLSSocket, ReturnType<typeof setTimeout>>();
  const arm = (socket: TLSSocket) => {
    clearTimeout(deadlines.get(socket));
    deadlines.set(
      socket,
      setTimeout(() => socket.destroy(), keepAliveTimeout + requestTimeout),
    );
  };
  const disarm = (socket: TLSSocket) => {
    clearTimeout(deadlines.get(socket));
    deadlines.delete(socket);
  };
  let connections = 0;
  server.on("secureConnection", (socket: TLSSocket) => {
    socket.setNoDelay(true);
    if (connections >= maxConnections) {
      onError?.(
        new RangeError(
          `Cannot accept the connection: ${maxConnections} are open (maxConnections)`,
        ),
        `${socket.remoteAddress}:${socket.remotePort}`,
      );
      socket.destroy();
      return;
    }
    connections++;
    socket.once("close", () => {
      connections--;
      disarm(socket);
    });
    // Silence (no byte either way) closes it, except while a handler runs.
    socket.on("timeout", () => socket.destroy());
    socket.setTimeout(keepAliveTimeout);
    arm(socket);
  });
  server.on("tlsClientError", (error: Error, socket: TLSSocket) => {
    onError?.(
      error,
      socket?.remoteAddress
        ? `${socket.remoteAddress}:${socket.remotePort}`
        : "a client",
    );
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error) => {
      onError?.(error, `${req.socket.remoteAddress}:${req.socket.remotePort}`);
      res.destroy();
    });
  });

  const peers = new WeakMap<
    TLSSocket,
    { name: string; fingerprint: string | null }
  >();

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const socket = req.socket as TLSSocket;
    const remoteAddr: Deno.NetAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
    };
    let clientName: string | null = null;
    let clientFingerprint: string | null = null;
    if (mutual) {
      // Parsing the certificate costs more than a small request: once per
      // connection.
      let peer = peers.get(socket);
      if (peer === undefined) {
        const cert = socket.getPeerCertificate();
        const cn = cert?.subject?.CN;
        peer = {
          name: Array.isArray(cn) ? cn.join(",") : cn ?? "",
          fingerprint: cert?.fingerprint256 ?? null,
        };
        peers.set(socket, peer);
      }
      clientName = peer.name;
      clientFingerprint = peer.fingerprint;
      if (!socket.authorized) {
        return send(
          res,
          plain(
            403,
            "Cannot serve the request: the client certificate is not verified",
          ),
          true,
        );
      }
      if (allowed && !allowed.has(clientName)) {
        req.resume();
        return send(
          res,
          plain(
            403,
            `Cannot serve the request: the client certificate's common name ${
              JSON.stringify(clientName)
            } is not in the allow-list`,
          ),
          true,
        );
      }
    }
    const method = req.method ?? "GET";
    let body: Uint8Array | null = null;
    if (method !== "GET" && method !== "HEAD") {
      const declared = req.headers["content-length"];
      if (declared !== undefined && Number(declared) > maxBodySize) {
        return send(
          res,
          plain(
            413,
            `Cannot serve the request: the body is ${declared} bytes, over the ${maxBodySize}-byte limit`,
          ),
          true,
        );
      }
      body = await readBounded(req, maxBodySize);
      if (body === null) {
        return send(
          res,
          plain(
            413,
            `Cannot serve the request: the body is over the ${maxBodySize}-byte limit`,
          ),
          true,
        );
      }
    }
    // The whole request is in: the rest is our time, not the client's.
    disarm(socket);
    socket.setTimeout(0);
    res.once("finish", () => {
      if (socket.destroyed) return;
      socket.setTimeout(keepAliveTimeout);
      arm(socket);
    });
    const headers = new Headers();
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      try {
        headers.append(raw[i], raw[i + 1]);
      } catch {
        return send(
          res,
          plain(400, "Cannot serve the request: a header is malformed"),
          true,
        );
      }
    }
    let url: URL;
    try {
      url = new URL(
        req.url ?? "/",
        base,
      );
    } catch {
      return send(
        res,
        plain(400, "Cannot serve the request: the URL is malformed"),
        true,
      );
    }
    const request = new Request(url, {
      method,
      headers,
      body: body as Uint8Array<ArrayBuffer> | null,
    });
    let response: Response;
    try {
      response = await handler(request, {
        remoteAddr,
        clientName,
        clientFingerprint,
      });
    } catch (error) {
      onError?.(error, formatAddr(remoteAddr));
      response = plain(500, "Cannot serve the request: the handler failed");
    }
    await send(res, response, false);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error: Error) => onError?.(error, "the server"));
  const address = server.address();
  const addr: Deno.NetAddr = {
    transport: "tcp",
    hostname,
    port: typeof address === "object" && address ? address.port : port,
  };
  base = `https://${
    hostname.includes(":") ? `[${hostname}]` : hostname
  }:${addr.port}/`;

  const finished = new Promise<void>((resolve) =>
    server.once("close", resolve)
  );
  let closing: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    if (!closing) {
      server.close();
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), 1000);
      closing = finished.then(() => clearTimeout(timer));
      options.signal?.removeEventListener("abort", onAbort);
    }
    return closing;
  };
  const onAbort = () => void shutdown();
  if (options.signal?.aborted) void shutdown();
  else options.signal?.addEventListener("abort", onAbort, { once: true });

  return {
    addr,
    finished,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

/** Reads the whole body, or returns null as soon as it is over `max`. */
function readBounded(
  req: IncomingMessage,
  max: number,
): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    const onData = (chunk: Uint8Array) => {
      size += chunk.byteLength;
      if (size > max) {
        cleanup();
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      if (chunks.length === 1) return resolve(new Uint8Array(chunks[0]));
      const out = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        out.set(chunk, offset);
        offset += chunk.byteLength;
      }
      resolve(out);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

async function send(
  res: ServerResponse,
  response: Response,
  close: boolean,
): Promise<void> {
  const body = response.body === null
    ? new Uint8Array(0)
    : await response.bytes();
  // One flat list and one writeHead: cheaper than a setHeader per header.
  const headers: string[] = [];
  for (const [name, value] of response.headers) {
    if (name === "content-length" || name === "connection") continue;
    headers.push(name, value); // set-cookie comes once per cookie
  }
  headers.push("content-length", String(body.byteLength));
  if (close) headers.push("connection", "close");
  res.writeHead(response.status, headers);
  res.end(body);
}
