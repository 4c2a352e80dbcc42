// Private: the TlsListener listenTls() returns. Verified connections wait
// in an AcceptQueue (_accept_queue.ts) for accept(); connections waiting on
// the authorize hook hold a slot of it (`reserve`). Closing the listener
// stops the node:tls server, rejects waiting accept() calls, closes queued
// connections, those waiting on the hook and those still in their TLS
// handshake, and flushes the default log; accepted connections stay open.
// setCredentials() hands over to _tls_credentials.ts.
import type * as nodeTls from "node:tls";
import type { TlsCredentials, TlsListener, TlsServerConn } from "./tls.ts";
import { AcceptQueue } from "./_accept_queue.ts";
import type { RateLimitedLog } from "./_log.ts";
import type { ServerCredentials } from "./_tls_credentials.ts";
import type { Handshakes } from "./_tls_handshakes.ts";
import { netAddr } from "./_tls_server_conn.ts";

/** What a {@linkcode Listener} closes with itself. */
export interface ListenerParts {
  /** The node:tls server, listening. */
  server: nodeTls.Server;
  /** Most verified connections held: queued plus reserved. */
  acceptQueue: number;
  /** Connections in their TLS handshake. */
  handshakes: Handshakes;
  /** The credentials in force, for setCredentials(). */
  credentials: ServerCredentials;
  /** The default report's log, flushed on close. */
  log: RateLimitedLog | undefined;
  /** Closes the listener when aborted. */
  signal: AbortSignal | undefined;
}

/** A {@linkcode TlsListener} over a node:tls server. */
export class Listener implements TlsListener {
  readonly addr: Deno.NetAddr;
  #parts: ListenerParts;
  #queue: AcceptQueue<TlsServerConn>;
  /** Sockets past their handshake, not yet queued (the authorize hook). */
  #pending = new Set<nodeTls.TLSSocket>();
  #closedPromise: Promise<void>;
  #onAbort = () => this.close();

  constructor(parts: ListenerParts) {
    this.#parts = parts;
    const address = parts.server.address();
    if (address === null || typeof address === "string") {
      throw new TypeError("Cannot listen with TLS: the server has no address");
    }
    this.addr = netAddr(address.address, address.port);
    this.#queue = new AcceptQueue<TlsServerConn>({
      limit: parts.acceptQueue,
      dispose: (conn) => conn.close(),
    });
    this.#closedPromise = new Promise<void>((resolve) => {
      parts.server.once("close", () => resolve());
    });
    parts.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Tracks a socket past its handshake until it is delivered or dropped. */
  track(socket: nodeTls.TLSSocket): void {
    this.#pending.add(socket);
    socket.once("close", () => this.#pending.delete(socket));
  }

  /**
   * Takes a queue slot for a connection about to wait on the authorize
   * hook; false when the queue is full or closed.
   */
  reserve(): boolean {
    return this.#queue.reserve();
  }

  /** Gives back a slot taken by {@linkcode Listener.reserve}. */
  release(): void {
    this.#queue.release();
  }

  /**
   * Hands a verified connection to `accept()` (a slot it reserved is given
   * back first). False, and the connection closed, when the queue is full.
   */
  deliver(socket: nodeTls.TLSSocket, conn: TlsServerConn): boolean {
    this.#pending.delete(socket);
    if (this.#queue.push(conn)) return true;
    conn.close();
    return false;
  }

  accept(): Promise<TlsServerConn> {
    return this.#queue.take();
  }

  async setCredentials(credentials: TlsCredentials): Promise<void> {
    const action = "set the TLS credentials";
    if (this.#queue.closed) {
      throw new Deno.errors.BadResource(
        `Cannot ${action}: the listener is closed; open a new one with listenTls()`,
      );
    }
    await this.#parts.credentials.set(credentials, action);
  }

  close(): void {
    if (this.#queue.closed) return;
    this.#queue.close();
    const { server, signal, handshakes, log } = this.#parts;
    signal?.removeEventListener("abort", this.#onAbort);
    server.close();
    for (const socket of this.#pending) socket.destroy();
    this.#pending.clear();
    // Handshakes still under way: closed without a report (the listener,
    // not the client, ended them).
    handshakes.close();
    log?.flush();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    // node:tls reports 'close' only once every accepted connection has
    // closed too; accepted connections belong to the caller, so wait for
    // that or for the next turn of the event loop, whichever comes first.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#closedPromise,
      new Promise<void>((resolve) => timer = setTimeout(resolve, 0)),
    ]);
    clearTimeout(timer);
  }

  /** Closes the listener (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TlsServerConn> {
    while (true) {
      try {
        yield await this.accept();
      } catch (error) {
        if (this.#queue.closed && error instanceof Deno.errors.BadResource) {
          return;
        }
        throw error;
      }
    }
  }
}
