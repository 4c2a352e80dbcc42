// Private: serveHttp1(), the HTTP/1.1 server side of one connection for
// https.ts: reads requests with Http1Reader (_http1_reader.ts), hands each
// to a `Request -> Response` handler and writes each response with a
// `Content-Length` in one write (_http1_message.ts). Keep-alive (HTTP/1.1
// by default, HTTP/1.0 with `Connection: keep-alive`), pipelining (requests
// are answered in order, one at a time), a silence deadline and a
// whole-request deadline that both pause while the handler runs
// (_http1_deadlines.ts).
//
// Refusals: 400 (malformed request line, header or trailer line, a bare CR
// or LF, bad or duplicate Content-Length, Content-Length with
// Transfer-Encoding, chunked not the final transfer coding, a bad Host, a
// body that ends early), 408 (request deadline passed after some bytes), 413
// (body, chunk count or chunk framing over the limit), 414 (request line over
// the header limit), 431 (header or trailer section too large or too many
// lines), 501 (a transfer coding other than chunked, a method that a
// `Request` cannot carry: CONNECT, TRACE, TRACK, or a standard method not in
// upper case), 505 (HTTP version other than 1.0 / 1.1). Every refusal closes
// the connection: after a refusal sent before the request was read whole
// (all but 408), the server half-closes and reads and drops what the client
// still sends (RFC 9112, 9.6), for at most `lingerBytes`, `keepAliveTimeout`
// of silence and `requestTimeout` in all, so that the client reads the
// response instead of a reset.

import { closeQuietly } from "./_conn_io.ts";
import { Http1Deadlines } from "./_http1_deadlines.ts";
import { encodeResponse, makeRequest, plainRefusal } from "./_http1_message.ts";
import { HttpRefusal, type RequestHead } from "./_http1_parse.ts";
import { ConnectionGone, Http1Reader } from "./_http1_reader.ts";

/** A connection to serve: the parts of a `Deno.Conn` / `TlsServerConn` used. */
export interface Http1Conn {
  readonly readable: ReadableStream<Uint8Array>;
  /** Closing it ends our side (a `TlsServerConn` half-closes). */
  readonly writable: WritableStream<Uint8Array>;
  close(): void;
  /** Half-closes, where closing `writable` would close it all (`Deno.Conn`). */
  closeWrite?(): Promise<void>;
}

/** Limits and deadlines, all already validated. */
export interface Http1Options {
  maxHeaderSize: number;
  maxHeaderCount: number;
  maxBodySize: number;
  /** Silence (no byte from the client) allowed while waiting on it, ms. */
  keepAliveTimeout: number;
  /** Added to keepAliveTimeout: the deadline for a whole request, ms. */
  requestTimeout: number;
  /**
   * After a refusal, most bytes read and dropped before closing; default
   * the larger of `maxBodySize` and {@linkcode LINGER_BYTES}.
   */
  lingerBytes?: number;
  /** `https://host:port/`, the scheme and the authority of request URLs. */
  base: string;
  /**
   * Called with an error no request should cause: a throw in parsing or in
   * the handler (the client gets 500 and the connection is closed).
   */
  onError?: (error: unknown) => void;
}

/** After a refusal, bytes read and dropped at least, before closing. */
export const LINGER_BYTES = 16 * 1024 * 1024;

/** A response, its body read whole. */
export interface Http1Response {
  status: number;
  headers: Iterable<[string, string]>;
  body: Uint8Array;
}

/**
 * Decides the response to one request; must not throw (answer 500 itself).
 */
export type Http1Handler = (request: Request) => Promise<Http1Response>;

/** The state of one served connection, for shutdown. */
export interface Http1Session {
  /** Closes now if waiting for a request, else after the current response. */
  drain(): void;
  /** Closes now. */
  abort(): void;
  /**
   * Settles when the connection is done: served to the end, or closed (by
   * `abort()`, say) even if the handler it was waiting on never settles.
   */
  readonly done: Promise<void>;
}

/**
 * Serves requests on `conn` until the client closes, a deadline passes, a
 * request is refused, or `drain()` / `abort()`. Closes `conn` at the end.
 * `refuseAll` refuses every request of the connection (the allow-list).
 * Never rejects: a throw in parsing or in `handler` (which should not
 * throw) is passed to `options.onError` and answered with 500.
 */
export function serveHttp1(
  conn: Http1Conn,
  options: Http1Options,
  handler: Http1Handler,
  refuseAll: HttpRefusal | null,
): Http1Session {
  let draining = false;
  let closed = false;
  let waiting = false; // between requests, no byte of the next one yet
  let lingering = false; // refused and half-closed: reading to drop
  const writer = conn.writable.getWriter();
  writer.closed.catch(() => {});
  const lingerBytes = options.lingerBytes ??
    Math.max(options.maxBodySize, LINGER_BYTES);
  // Settles `done` when the connection is closed, even while a handler that
  // never settles holds the loop: shutdown must not wait on it.
  const gone = Promise.withResolvers<void>();
  const report = (error: unknown) => {
    try {
      options.onError?.(error);
    } catch {
      // a throwing hook must not stop the server
    }
  };

  const close = () => {
    if (closed) return;
    closed = true;
    gone.resolve();
    deadlines.stop();
    // A Deno.Conn throws on a second close (cancelling its readable may
    // close it): closeQuietly.
    closeQuietly(conn);
    reader.cancel();
  };
  const timedOut = () => {
    if (closed) return;
    if (!lingering && (!waiting || reader.buffered > 0)) {
      // Part of a request came, too slowly: say so (best effort), then close.
      const [status, headers, body] = plainRefusal(
        408,
        "Cannot serve the request: the request did not arrive in time",
      );
      writer.write(encodeResponse(status, headers, body, body.length, "close"))
        .catch(() => {});
    }
    close();
  };
  const deadlines = new Http1Deadlines(
    options.keepAliveTimeout,
    timedOut,
    close,
  );
  const reader = new Http1Reader(conn.readable, () => {
    waiting = false;
    deadlines.heard();
  });
  const send = async (bytes: Uint8Array) => {
    // A client that does not read gets keepAliveTimeout to take the response.
    deadlines.writing();
    try {
      await writer.write(bytes);
    } catch (error) {
      throw new ConnectionGone(error);
    } finally {
      deadlines.written();
    }
  };
  // RFC 9112, 9.6: closing with unread bytes makes the kernel send a reset,
  // which can destroy the response before the client reads it. So
  // half-close, then read and drop what the client still sends until it
  // closes, for at most lingerBytes, keepAliveTimeout of silence and
  // requestTimeout in all.
  const linger = async () => {
    lingering = true;
    if (draining) return; // shutting down: close now
    deadlines.expect(options.requestTimeout);
    try {
      // Not awaited: a client that reads only once it has sent everything
      // would never let it finish while nothing reads its bytes.
      const ended = typeof conn.closeWrite === "function"
        ? conn.closeWrite()
        : writer.close();
      ended.catch(() => {});
      await reader.discard(lingerBytes);
    } catch {
      // a reset: nothing more to drop
    }
  };

  const loop = async () => {
    while (!closed) {
      waiting = reader.buffered === 0;
      if (draining && waiting) break;
      deadlines.expect(options.keepAliveTimeout + options.requestTimeout);
      let head: RequestHead | null = null;
      let response: [number, Iterable<[string, string]>, Uint8Array];
      let keepAlive = false;
      let complete = false; // the whole request (head and body) was read
      let broken = false; // a bug: close without reading any further
      try {
        head = await reader.readHead(
          options.maxHeaderSize,
          options.maxHeaderCount,
        );
        if (head === null) break;
        if (refuseAll) throw refuseAll;
        if (
          head.expectContinue && head.minor === 1 && head.contentLength !== 0
        ) {
          if (head.contentLength > options.maxBodySize) {
            await reader.readBody(head.contentLength, options);
          }
          await send(new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n"));
        }
        const body = await reader.readBody(head.contentLength, options);
        complete = true;
        // The whole request is in: the rest is our time, not the client's.
        deadlines.pause();
        keepAlive = head.keepAlive && !draining;
        const result = await handler(makeRequest(head, body, options.base));
        response = [result.status, result.headers, result.body];
      } catch (error) {
        if (error instanceof ConnectionGone || closed) break;
        keepAlive = false;
        if (error instanceof HttpRefusal) {
          response = plainRefusal(error.status, error.message);
        } else {
          report(error);
          broken = true;
          response = plainRefusal(
            500,
            "Cannot serve the request: the server failed",
          );
        }
      }
      deadlines.pause();
      if (closed) break;
      const [status, headers, bytes] = response;
      keepAlive &&= !draining;
      const headRequest = head?.method === "HEAD";
      const noBody = headRequest || status === 204 || status === 304;
      await send(
        encodeResponse(
          status,
          headers,
          noBody ? null : bytes,
          bytes.length,
          keepAlive ? (head?.minor === 0 ? "keep-alive" : null) : "close",
        ),
      );
      if (!keepAlive) {
        // Bytes the client may still send: the rest of a refused request,
        // or requests pipelined after a last one.
        if (!broken && (!complete || reader.buffered > 0)) await linger();
        break;
      }
    }
  };
  const served = loop().catch((error) => {
    // A reset or a write to a closed peer: gone, nothing to answer. Else a
    // bug (a response that cannot be encoded, say): report it.
    if (!(error instanceof ConnectionGone)) report(error);
  });
  const done = Promise.race([served, gone.promise]).finally(close);
  return {
    drain() {
      draining = true;
      if (lingering || (waiting && reader.buffered === 0)) close();
    },
    abort: close,
    done,
  };
}
