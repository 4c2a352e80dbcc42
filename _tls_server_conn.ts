// Private: the connection listenTls() hands out, a `Deno.Conn`-shaped
// duplex over a node:tls server socket (Nagle off), with the client's
// verified identity. Its readable side holds at most `readBufferLimit`
// bytes the application has not read: node:tls on Deno 2.9.6 cannot push
// back on a fast sender (see the constructor).
import type * as nodeTls from "node:tls";
import type { PeerIdentity, TlsServerConn } from "./tls.ts";
import { ProtocolError } from "./errors.ts";
import { TlsConnBase } from "./_tls_conn.ts";

/** The readable side's high-water mark, in bytes. */
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

/**
 * A node socket's address as a `Deno.NetAddr` (an IPv4-mapped IPv6 address
 * as IPv4).
 */
export function netAddr(
  address: string | undefined,
  port: number | undefined,
): Deno.NetAddr {
  return {
    transport: "tcp" as const,
    hostname: (address ?? "").replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, "$1"),
    port: port ?? 0,
  };
}

/** A {@linkcode TlsServerConn} over a node:tls socket. */
export class ServerConn extends TlsConnBase implements TlsServerConn {
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  readonly writable: WritableStream<Uint8Array>;
  readonly peerIdentity: PeerIdentity | null;
  #socket: nodeTls.TLSSocket;

  constructor(
    socket: nodeTls.TLSSocket,
    peerIdentity: PeerIdentity | null,
    readBufferLimit: number,
    onOverflow?: () => void,
    onFault?: (error: unknown) => void,
  ) {
    super(
      {
        remoteAddr: netAddr(socket.remoteAddress, socket.remotePort),
        localAddr: netAddr(socket.localAddress, socket.localPort),
      },
      typeof socket.alpnProtocol === "string" ? socket.alpnProtocol : null,
    );
    this.#socket = socket;
    this.peerIdentity = peerIdentity;
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

  protected closeBackend(): void {
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

/** A TCP socket under a TLS one, as node:tls hands it over. */
export type RawSocket = {
  remoteAddress?: string;
  remotePort?: number;
  setNoDelay?: (on: boolean) => void;
  once(event: "close", listener: () => void): unknown;
  destroy(): void;
};

/**
 * The peer's address of a server-side socket. On Deno 2.9.6 a TLS socket
 * whose handshake failed early has no `remoteAddress`; the TCP socket under
 * it (`_parent`, not a public field) still knows it.
 */
export function peerOf(socket: unknown): Deno.NetAddr | undefined {
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
