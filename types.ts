/**
 * Shared types: the duplex byte stream every connauth handshake runs over.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Duplex } from "./types.ts";
 *
 * function describe(conn: Duplex): string {
 *   return conn.readable.locked ? "busy" : "ready";
 * }
 * const { readable, writable } = new TransformStream<Uint8Array>();
 * assert.equal(describe({ readable: readable as never, writable }), "ready");
 * ```
 *
 * @module
 */

/**
 * A duplex byte stream: a `Deno.Conn`, a `Deno.TlsConn`, a TLS connection from
 * `tls.ts`, or an in-memory pair in tests.
 *
 * `readable` must be a byte stream (one that supports
 * `getReader({ mode: "byob" })`) so that a handshake can read exactly the
 * bytes it needs and leave the rest for the application.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Duplex } from "./types.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = await Deno.connect({ port: listener.addr.port });
 * using server = await listener.accept();
 * const conn: Duplex = server; // a Deno.Conn fits this shape
 * const reader = conn.readable.getReader({ mode: "byob" });
 * await client.write(new Uint8Array([1, 2, 3]));
 * const { value } = await reader.read(new Uint8Array(3), { min: 3 });
 * assert.deepEqual(value, new Uint8Array([1, 2, 3]));
 * reader.releaseLock();
 * ```
 */
export interface Duplex {
  /** Bytes from the peer. Must support BYOB readers. */
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  /** Bytes to the peer. */
  readonly writable: WritableStream<Uint8Array>;
}

/**
 * What every connauth server's `onError` hook is told besides the error:
 * where it happened (`phase`; each server names its own phases) and, when
 * the error belongs to one connection, the peer's address. Every server's
 * hook has the one shape `onError(error, info)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ErrorInfo } from "./types.ts";
 *
 * const lines: string[] = [];
 * const onError = (error: unknown, info: ErrorInfo) =>
 *   lines.push(`${info.phase}: ${(error as Error).message}`);
 * onError(new Error("reset"), { phase: "handshake" });
 * assert.deepEqual(lines, ["handshake: reset"]);
 * ```
 */
export interface ErrorInfo {
  /** Where the error happened, in the server's own words. */
  readonly phase: string;
  /** The peer's address, when the error belongs to one connection. */
  readonly remoteAddr?: Deno.Addr;
}
