/**
 * connauth authenticates network connections with nothing but the Deno
 * runtime (WebCrypto, Deno's sockets, and `node:tls` / `node:crypto` where
 * Deno's own API falls short). Every wire format is an existing one with real
 * peers:
 *
 * | module | what |
 * | --- | --- |
 * | `errors.ts` | `AuthenticationError` and `ProtocolError`, what callers catch |
 * | `types.ts` | `Duplex` (the byte stream every handshake runs over) and `ErrorInfo` (what every server's `onError` hook is told) |
 * | `handshake.ts` | the Python Cookbook HMAC challenge-response, byte for byte, and `HmacKey` |
 * | `server.ts` | `serve()` / `connect()`: concurrent authenticated servers with limits, throttling and graceful shutdown |
 * | `tls.ts` | TLS listeners and clients, mutual TLS, the peer's identity |
 * | `certs.ts` | development CA and certificates (ECDSA P-256) without openssl |
 * | `https.ts` | an HTTPS server for `Request -> Response` handlers that can require client certificates |
 * | `xmlrpc.ts` | a strict, bounded XML-RPC codec, handler and client (Python's `xmlrpc.client` talks to it) |
 * | `multiprocessing.ts` | CPython `multiprocessing.connection` listener and client (authkey) |
 * | `noise.ts` | Noise `NNpsk0_25519_AESGCM_SHA256`: an encrypted pre-shared-key channel |
 *
 * The HMAC handshake proves that the client knows a shared key. It does not
 * encrypt the connection: run it inside TLS or use a Noise channel when the
 * traffic must stay private.
 *
 * @example An authenticated echo server and its client
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, serve } from "./mod.ts";
 *
 * await using server = serve(
 *   { port: 0, secret: "peanut butter", log: false },
 *   (conn) => conn.readable.pipeTo(conn.writable),
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * using conn = await connect({ port, secret: "peanut butter" });
 * await conn.write(new TextEncoder().encode("Hello"));
 * const reply = new Uint8Array(5);
 * assert.equal(await conn.read(reply), 5);
 * assert.equal(new TextDecoder().decode(reply), "Hello");
 * ```
 *
 * @example A wrong secret is refused
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   AuthenticationError,
 *   clientAuthenticate,
 *   serverAuthenticate,
 * } from "./mod.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = await Deno.connect({ port: listener.addr.port });
 * using server = await listener.accept();
 * const [verdict] = await Promise.allSettled([
 *   serverAuthenticate(server, "peanut butter"),
 *   clientAuthenticate(client, "jam"),
 * ]);
 * assert.equal(verdict.status, "rejected");
 * assert.ok(verdict.reason instanceof AuthenticationError);
 * ```
 *
 * @module
 */

export * from "./errors.ts";
export * from "./types.ts";
export * from "./handshake.ts";
export * from "./server.ts";
export * from "./tls.ts";
export * from "./certs.ts";
export * from "./noise.ts";
export * from "./multiprocessing.ts";
export * from "./https.ts";
export * from "./xmlrpc.ts";
