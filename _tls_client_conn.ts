// Private: the connection connectTls() returns, a duplex over a
// `Deno.TlsConn`. A node:tls server (listenTls among them) refuses a client
// certificate with no TLS alert: the client sees a bare EOF or reset right
// after its handshake, on whichever of its reads or writes comes first.
// Until the server has sent anything, this connection maps such a failure
// to the TlsError `refusal` gives. A write that fails cannot tell why, so
// it makes a read (the write probe) to learn how the server closed; what
// that read returns (bytes, EOF or an error) is kept as the leftover for
// the application's next read, so no byte is lost.
import type { TlsClientConn } from "./tls.ts";
import { TlsConnBase } from "./_tls_conn.ts";

/** What the connection needs of a `Deno.TlsConn` (a fake in tests). */
export interface ClientTransport {
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/** Bytes a read asks the transport for at most. */
const READ_CHUNK = 64 * 1024;
/** Milliseconds a failed write waits for its probe's answer. */
const PROBE_WAIT = 1000;

/** Options of a {@linkcode ClientConn}. */
export interface ClientConnOptions {
  /** The ALPN protocol agreed on, or null. */
  alpnProtocol: string | null;
  /**
   * The TlsError for an error met before the server sent anything, or null
   * when the error is no refusal.
   */
  refusal(error: unknown): unknown | null;
  /** Milliseconds a failed write waits for its probe (tests). */
  probeWait?: number;
}

/** A {@linkcode TlsClientConn} over a {@linkcode ClientTransport}. */
export class ClientConn extends TlsConnBase implements TlsClientConn {
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  readonly writable: WritableStream<Uint8Array>;
  #conn: ClientTransport;

  constructor(conn: ClientTransport, options: ClientConnOptions) {
    super(conn, options.alpnProtocol);
    this.#conn = conn;
    const probeWait = options.probeWait ?? PROBE_WAIT;
    // Whether the server has sent us anything: a refusal (a bare close right
    // after the handshake) is only recognized before that.
    let heard = false;
    const mapError = (error: unknown): unknown => {
      if (heard) return error;
      return options.refusal(error) ?? error;
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
          const buffer = new Uint8Array(READ_CHUNK);
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
        new Promise<null>((resolve) =>
          timer = setTimeout(resolve, probeWait, null)
        ),
      ]);
      clearTimeout(timer);
      if (result === null || !("error" in result)) return error;
      return mapError(result.error);
    };
    this.readable = new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: READ_CHUNK,
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

  protected closeBackend(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}
