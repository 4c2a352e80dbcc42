/**
 * connauth authenticates network connections with nothing but the Deno
 * runtime (WebCrypto, Deno's sockets, and `node:tls` / `node:crypto` where
 * Deno's own API falls short). Every wire format is an existing one with real
 * peers:
 *
 * | module | what |
 * | --- | --- |
 * | `handshake.ts` | the Python Cookbook HMAC challenge-response, byte for byte |
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
 * @example Authenticate a connection
 * ```ts
 * import { clientAuthenticate, serverAuthenticate } from "./mod.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ port: listener.addr.port });
 * const server = await listener.accept();
 * await Promise.all([
 *   serverAuthenticate(server, "peanut butter"),
 *   clientAuthenticate(client, "peanut butter"),
 * ]);
 * client.close();
 * server.close();
 * ```
 *
 @module
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
