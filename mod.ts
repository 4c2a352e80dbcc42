/**
 * connauth authenticates network connections with nothing but the Deno
 * runtime: the Python Cookbook HMAC challenge-response (byte-compatible with
 * Python peers written from the recipe), built on WebCrypto.
 *
 * The handshake proves that the client knows a shared key. It does not
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
