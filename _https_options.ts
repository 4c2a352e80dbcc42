// Private: serveHttps()'s option checks and defaults, resolved once before
// anything listens (so that a bad option throws first) into plain numbers
// the server reads without checking again.

import { checkDuration, checkIpv6Prefix } from "./_options.ts";
import type { ServeHttpsOptions } from "./https.ts";

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

function positive(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot serve HTTPS: ${what} must be a positive integer, got ${value}`,
    );
  }
  return value;
}

/**
 * Checks serveHttps()'s options: the listener or the certificate and key,
 * and every limit and deadline.
 */
export function resolveHttpsOptions(
  options: ServeHttpsOptions,
): ResolvedHttpsOptions {
  const given = options?.listener;
  if (given !== undefined) {
    const clash = (
      [
        "cert",
        "key",
        "clientCa",
        "hostname",
        "port",
        "handshakeTimeout",
      ] as const
    ).filter((name) => options[name] !== undefined);
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
    typeof options?.cert !== "string" || typeof options.key !== "string"
  ) {
    throw new TypeError(
      "Cannot serve HTTPS: cert and key (PEM strings) are required; make a development set with `deno task certs`",
    );
  }
  const mutual = options.clientCa !== undefined;
  if (options.allowedClients !== undefined && !mutual && !given) {
    throw new TypeError(
      "Cannot serve HTTPS: allowedClients needs clientCa, the CA that signs client certificates",
    );
  }
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
  const maxPerAddress = options.maxPerAddress ?? 64;
  if (
    maxPerAddress !== Infinity && !(Number.isInteger(maxPerAddress) &&
      maxPerAddress >= 1)
  ) {
    throw new RangeError(
      `Cannot serve HTTPS: maxPerAddress must be a positive integer or Infinity, got ${maxPerAddress}`,
    );
  }
  const ipv6Prefix = checkIpv6Prefix(options.ipv6Prefix, 64);
  const gracePeriod = checkDuration(
    options.gracePeriod,
    1000,
    "gracePeriod",
  );
  if (!Number.isFinite(gracePeriod)) {
    throw new RangeError(
      "Cannot serve HTTPS: gracePeriod must be finite, so that shutdown finishes",
    );
  }
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot serve HTTPS: port must be 0 to 65535, got ${port}`,
    );
  }
  const hostname = options.hostname ?? "127.0.0.1";

  const maxHeaderSize = positive(
    options.maxHeaderSize ?? 16 * 1024,
    "maxHeaderSize",
  );
  const maxHeaderCount = positive(
    options.maxHeaderCount ?? 100,
    "maxHeaderCount",
  );
  return {
    maxBodySize,
    handshakeTimeout,
    requestTimeout,
    keepAliveTimeout,
    maxConnections,
    maxPerAddress,
    ipv6Prefix,
    gracePeriod,
    port,
    hostname,
    maxHeaderSize,
    maxHeaderCount,
  };
}
