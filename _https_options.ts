// Private: serveHttps()'s option checks and defaults, resolved once before
// anything listens (so that a bad option throws first) into plain numbers
// the server reads without checking again, and the options of the
// listenTls() listener serveHttps() opens when it is given none. Every
// check is one of _options.ts: a timeout or a limit takes Infinity, a grace
// period 0 and Infinity, as in serve() and listenTls().

import { CREDENTIAL_FIELDS } from "./_tls_credentials.ts";
import {
  checkDuration,
  checkIpv6Prefix,
  checkLimit,
  checkPort,
  checkTimeout,
} from "./_options.ts";
import type { ServeHttpsOptions } from "./https.ts";
import type { ListenTlsOptions, TlsError, TlsErrorInfo } from "./tls.ts";

/** serveHttps()'s defaults (documented on the options). */
const DEFAULTS = {
  hostname: "127.0.0.1",
  port: 0,
  maxBodySize: 1024 * 1024,
  maxHeaderSize: 16 * 1024,
  maxHeaderCount: 100,
  handshakeTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 30_000,
  maxConnections: 1024,
  maxPerAddress: 64,
  ipv6Prefix: 64,
  gracePeriod: 1000,
} as const;

/** serveHttps()'s limits and address, checked, with the defaults in. */
export interface ResolvedHttpsOptions {
  maxBodySize: number;
  handshakeTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  maxConnections: number;
  maxPerAddress: number;
  ipv6Prefix: number;
  gracePeriod: number;
  port: number;
  hostname: string;
  maxHeaderSize: number;
  maxHeaderCount: number;
}

/** Options that configure the listener serveHttps() opens itself. */
const LISTENER_OPTIONS = [
  ...CREDENTIAL_FIELDS,
  "hostname",
  "port",
  "handshakeTimeout",
] as const;

/** Checks where serveHttps() gets its connections: `listener` or TLS material. */
function checkSource(options: ServeHttpsOptions): void {
  const given = options?.listener;
  if (given !== undefined) {
    const clash = LISTENER_OPTIONS.filter((name) =>
      options[name] !== undefined
    );
    if (clash.length > 0) {
      throw new TypeError(
        `Cannot serve HTTPS: give \`${
          clash.join("`, `")
        }\` to listenTls() and pass its listener, or leave out \`listener\``,
      );
    }
    if (typeof given?.[Symbol.asyncIterator] !== "function") {
      throw new TypeError(
        "Cannot serve HTTPS: `listener` must be an async iterable listener, such as listenTls() returns",
      );
    }
  } else if (
    (options?.cert === undefined && options?.certFile === undefined) ||
    (options?.key === undefined && options?.keyFile === undefined)
  ) {
    throw new TypeError(
      "Cannot serve HTTPS: cert and key (PEM strings) are required, or certFile and keyFile (paths); make a development set with `deno task certs`",
    );
  }
}

/**
 * Checks serveHttps()'s options: the listener or the certificate and key,
 * and every limit and deadline.
 */
export function resolveHttpsOptions(
  options: ServeHttpsOptions,
): ResolvedHttpsOptions {
  checkSource(options);
  const mutual = options.clientCa !== undefined ||
    options.clientCaFile !== undefined;
  if (
    options.allow !== undefined && !mutual && options.listener === undefined
  ) {
    throw new TypeError(
      "Cannot serve HTTPS: `allow` needs `clientCa` (or `clientCaFile`), the CA certificates that sign the client certificates",
    );
  }
  // Each option is checked under its own name, with its own default.
  type Named = keyof typeof DEFAULTS & keyof ServeHttpsOptions;
  const limit = (name: Named & `max${string}`) =>
    checkLimit(options[name] as number | undefined, DEFAULTS[name], name);
  const timeout = (name: Named & `${string}Timeout`) =>
    checkTimeout(options[name], DEFAULTS[name], name);
  return {
    maxBodySize: limit("maxBodySize"),
    handshakeTimeout: timeout("handshakeTimeout"),
    requestTimeout: timeout("requestTimeout"),
    keepAliveTimeout: timeout("keepAliveTimeout"),
    maxConnections: limit("maxConnections"),
    maxPerAddress: limit("maxPerAddress"),
    ipv6Prefix: checkIpv6Prefix(options.ipv6Prefix, DEFAULTS.ipv6Prefix),
    gracePeriod: checkDuration(
      options.gracePeriod,
      DEFAULTS.gracePeriod,
      "gracePeriod",
    ),
    port: checkPort(options.port, DEFAULTS.port, "port", true),
    hostname: options.hostname ?? DEFAULTS.hostname,
    maxHeaderSize: limit("maxHeaderSize"),
    maxHeaderCount: limit("maxHeaderCount"),
  };
}

/**
 * The options of the listenTls() listener serveHttps() opens: the TLS
 * material (text or files, which listenTls() reads, and the SNI map), the
 * address, the handshake deadline, the IPv6 prefix that names one client
 * (for listenTls's handshake limits as for serveHttps's own), and a read
 * buffer for one request.
 */
export function listenerOptions(
  options: ServeHttpsOptions,
  limits: ResolvedHttpsOptions,
  onError: (error: TlsError, info: TlsErrorInfo) => void,
): ListenTlsOptions {
  // One request (head and body) plus slack may wait unread while the
  // handler runs; a client further ahead than that is cut off. At least
  // 4 MiB: node:tls on Deno hands over up to about 2 MiB at once before
  // any reader runs, and a refused client that is still sending (see
  // serveHttp1's lingering) must not be cut off for that.
  const readBufferLimit = Math.max(
    limits.maxBodySize + 2 * limits.maxHeaderSize + 64 * 1024,
    4 * 1024 * 1024,
  );
  return {
    cert: options.cert,
    key: options.key,
    certFile: options.certFile,
    keyFile: options.keyFile,
    clientCa: options.clientCa,
    clientCaFile: options.clientCaFile,
    sni: options.sni,
    hostname: limits.hostname,
    port: limits.port,
    handshakeTimeout: limits.handshakeTimeout,
    ipv6Prefix: limits.ipv6Prefix,
    // With no body or header limit, no buffer limit either (listenTls
    // takes a whole number of bytes).
    readBufferLimit: Number.isFinite(readBufferLimit)
      ? readBufferLimit
      : Number.MAX_SAFE_INTEGER,
    onError,
  };
}
