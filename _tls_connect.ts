// Private: how connectTls() connects, once its options are read: TCP
// connect and TLS handshake on Deno.connectTls (rustls) under one deadline
// and the caller's signal, a failure mapped to a TlsError naming its cause
// (_tls_client_errors.ts), and the connection wrapped so that a refusal of
// our client certificate shows on its first read or write
// (_tls_client_conn.ts).
import type { TlsClientConn } from "./tls.ts";
import { formatAddr } from "./_address.ts";
import { raceSignal } from "./_deadline.ts";
import type { KeyPair } from "./_pem.ts";
import { ClientConn } from "./_tls_client_conn.ts";
import { handshakeError, refusalError } from "./_tls_client_errors.ts";

/** What connectTls() read from its options. */
export interface ClientConfig {
  hostname: string;
  port: number;
  /** The CA certificates to add to Deno's roots, one PEM block each. */
  caCerts: string[] | undefined;
  /** Our client certificate and key, checked as a pair. */
  pair: KeyPair | undefined;
  alpnProtocols: string[] | undefined;
  /** Milliseconds for connect and handshake; Infinity for none. */
  timeout: number;
  signal: AbortSignal | undefined;
}

/** Connects and completes the handshake; see the file's head. */
export async function openClientConn(
  config: ClientConfig,
): Promise<TlsClientConn> {
  const { hostname, port, caCerts, pair, timeout } = config;
  const server = formatAddr({ transport: "tcp", hostname, port });
  const sentCert = pair !== undefined;
  const controller = new AbortController();
  const timer = Number.isFinite(timeout)
    ? setTimeout(() =>
      controller.abort(
        new DOMException(
          `Cannot connect with TLS to ${server}: timed out after ${timeout} ms waiting for the peer`,
          "TimeoutError",
        ),
      ), timeout)
    : undefined;
  const signal = config.signal
    ? AbortSignal.any([config.signal, controller.signal])
    : controller.signal;
  let conn: Deno.TlsConn | undefined;
  const attempt = (async () => {
    conn = await Deno.connectTls({
      hostname,
      port,
      caCerts,
      alpnProtocols: config.alpnProtocols,
      ...(pair ? { cert: pair.cert, key: pair.key } : {}),
    });
    if (signal.aborted) return null;
    const info = await conn.handshake();
    return info.alpnProtocol;
  })();
  try {
    const alpn = await raceSignal(attempt, signal);
    return new ClientConn(conn!, {
      alpnProtocol: alpn ?? null,
      refusal: (error) => refusalError(error, sentCert, server),
    });
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
