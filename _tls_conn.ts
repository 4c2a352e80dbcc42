// Private: what the connections of both ends have in common (listenTls()'s
// TlsServerConn over node:tls, connectTls()'s TlsClientConn over
// Deno.TlsConn): their addresses, the ALPN protocol agreed on, and a
// close() that runs once, also for `using`.
import type { Duplex } from "./types.ts";

/** The part of a TLS connection that does not depend on its backend. */
export abstract class TlsConnBase implements Duplex, Disposable {
  abstract readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  abstract readonly writable: WritableStream<Uint8Array>;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  readonly alpnProtocol: string | null;
  #closed = false;

  constructor(
    ends: { remoteAddr: Deno.NetAddr; localAddr: Deno.NetAddr },
    alpnProtocol: string | null,
  ) {
    this.remoteAddr = ends.remoteAddr;
    this.localAddr = ends.localAddr;
    this.alpnProtocol = alpnProtocol;
  }

  /** Closes the connection; safe to call twice (the backend's once). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.closeBackend();
  }

  /** Closes the backend; called once. */
  protected abstract closeBackend(): void;

  [Symbol.dispose](): void {
    this.close();
  }
}
