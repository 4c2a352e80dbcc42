// Private: the serving part of serveHttps(): takes connections from a
// listener (through AcceptLoop), admits each under maxConnections and
// maxPerAddress, serves its requests with serveHttp1() (_http1_session.ts)
// and the handler, and shuts down gracefully (drain, grace period, abort).

import { AcceptLoop, type AcceptSource } from "./_accept.ts";
import { AddressCounts, addressKey } from "./_address.ts";
import type { ResolvedHttpsOptions } from "./_https_options.ts";
import { HttpRefusal } from "./_http1_parse.ts";
import { type Http1Session, serveHttp1 } from "./_http1_session.ts";
import { allowed } from "./_tls_allow.ts";
import type {
  HttpsConn,
  HttpsErrorInfo,
  HttpsHandler,
  HttpsListener,
  HttpsRequestInfo,
  HttpsServer,
} from "./https.ts";
import type {
  PeerIdentity,
  TlsAllowList,
  TlsCredentials,
  TlsListener,
} from "./tls.ts";

/**
 * What the accept loop takes from: the listener itself when it has
 * `accept()`, else its iterator (which may end at its first failed accept).
 */
function acceptSource(listener: HttpsListener): AcceptSource<HttpsConn> {
  if (typeof listener.accept === "function") {
    return listener as AcceptSource<HttpsConn>;
  }
  const iterator = listener[Symbol.asyncIterator]();
  return {
    accept: async () => {
      const next = await iterator.next();
      if (next.done) {
        throw new Deno.errors.BadResource("Listener has been closed");
      }
      return next.value;
    },
    close: () => listener.close(),
  };
}

function plain(status: number, message: string): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/**
 * The refusal (HTTP 403) of every request from a client `allow` does not
 * list, or null.
 */
function refuse(
  identity: PeerIdentity | null,
  allow: TlsAllowList,
): HttpRefusal | null {
  if (allowed(identity, allow)) return null;
  return new HttpRefusal(
    403,
    identity === null
      ? "Cannot serve the request: the client sent no certificate, and the allow-list needs one"
      : `Cannot serve the request: the client certificate's common name ${
        JSON.stringify(identity.cn ?? "")
      } is not in the allow-list`,
  );
}

/** How serveHttps() serves, besides the limits. */
export interface HttpsServing {
  /** The listener was given by the caller (else it is ours, from listenTls). */
  given: boolean;
  /** The clients allowed (HTTP 403 for others), or null for all. */
  allow: TlsAllowList | null;
  /** The guarded onError hook. */
  report: (error: unknown, info: HttpsErrorInfo) => void;
  /** Shuts the server down when it aborts. */
  signal?: AbortSignal;
}

/**
 * Serves `handler` on `listener` until shutdown (see serveHttps() in
 * https.ts); closes the listener at the end when it is ours.
 */
export function serveOn(
  listener: HttpsListener,
  limits: ResolvedHttpsOptions,
  serving: HttpsServing,
  handler: HttpsHandler,
): HttpsServer {
  const {
    maxConnections,
    maxPerAddress,
    ipv6Prefix,
    gracePeriod,
    maxHeaderSize,
    maxHeaderCount,
    maxBodySize,
    keepAliveTimeout,
    requestTimeout,
  } = limits;
  const { given, allow, report } = serving;
  const addr = listener.addr;
  const host = `${
    addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname
  }:${addr.port}/`;

  const sessions = new Set<Http1Session>();
  const perAddress = new AddressCounts();
  let draining = false;
  const serveConn = (conn: HttpsConn) => {
    const remoteAddr = conn.remoteAddr;
    const tls = !given || "peerIdentity" in conn;
    // Nagle off (listenTls() connections already are; a Deno.TcpConn is not).
    (conn as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    if (draining) return conn.close();
    if (sessions.size >= maxConnections) {
      report(
        new RangeError(
          `Cannot accept the connection: ${maxConnections} are open (maxConnections)`,
        ),
        { phase: "accept", remoteAddr },
      );
      return conn.close();
    }
    const addressName = addressKey(conn.remoteAddr, ipv6Prefix);
    const fromAddress = perAddress.add(addressName);
    if (fromAddress > maxPerAddress) {
      perAddress.remove(addressName);
      report(
        new RangeError(
          `Cannot accept the connection: ${maxPerAddress} from ${addressName} are open (maxPerAddress)`,
        ),
        { phase: "accept", remoteAddr },
      );
      return conn.close();
    }
    const info: HttpsRequestInfo = {
      remoteAddr: remoteAddr as Deno.NetAddr,
      peerIdentity: conn.peerIdentity ?? null,
    };
    const refusal = allow ? refuse(info.peerIdentity, allow) : null;
    const session = serveHttp1(conn, {
      maxHeaderSize,
      maxHeaderCount,
      maxBodySize,
      keepAliveTimeout,
      requestTimeout,
      base: `${tls ? "https" : "http"}://${host}`,
      onError: (error) => report(error, { phase: "request", remoteAddr }),
    }, async (request) => {
      let response: Response;
      let body: Uint8Array;
      try {
        response = await handler(request, info);
        body = response.body === null
          ? new Uint8Array(0)
          : await response.bytes();
      } catch (error) {
        report(error, { phase: "handler", remoteAddr });
        response = plain(500, "Cannot serve the request: the handler failed");
        body = await response.bytes();
      }
      return { status: response.status, headers: response.headers, body };
    }, refusal);
    sessions.add(session);
    session.done.then(() => {
      sessions.delete(session);
      perAddress.remove(addressName);
    });
  };
  const accepting = new AcceptLoop<HttpsConn>({
    listener: acceptSource(listener),
    onConnection: serveConn,
    // A connection reset before accept is skipped at once; the process out
    // of file descriptors is retried after a back-off.
    onError: (error) => report(error, { phase: "accept" }),
  });

  let closing: Promise<void> | undefined;
  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => resolveFinished = resolve);
  const shutdown = (): Promise<void> => {
    if (!closing) {
      draining = true;
      serving.signal?.removeEventListener("abort", onAbort);
      accepting.stop();
      for (const session of sessions) session.drain();
      // An infinite grace period waits for every request in flight, however
      // long it takes.
      const timer = gracePeriod !== Infinity
        ? setTimeout(() => {
          for (const session of sessions) session.abort();
        }, gracePeriod)
        : undefined;
      closing = (async () => {
        await accepting.done;
        while (sessions.size > 0) {
          await Promise.all([...sessions].map((session) => session.done));
        }
        clearTimeout(timer);
        if (!given) {
          await (listener as TlsListener)[Symbol.asyncDispose]();
        }
        resolveFinished();
      })();
    }
    return closing;
  };
  const onAbort = () => void shutdown();
  if (serving.signal?.aborted) void shutdown();
  else serving.signal?.addEventListener("abort", onAbort, { once: true });

  const setCredentials = async (credentials: TlsCredentials) => {
    const target = listener as Partial<Pick<TlsListener, "setCredentials">>;
    if (typeof target.setCredentials !== "function") {
      throw new TypeError(
        "Cannot set the TLS credentials: the server was given a listener without setCredentials(); give serveHttps() a listenTls() listener, or its `cert`/`key` to open one",
      );
    }
    await target.setCredentials(credentials);
  };

  return {
    addr,
    finished,
    shutdown,
    setCredentials,
    [Symbol.asyncDispose]: shutdown,
  };
}
