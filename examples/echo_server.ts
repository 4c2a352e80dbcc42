/**
 * Authenticated echo server: the Cookbook recipe's server on top of
 * {@linkcode serve}.
 *
 * Each connection is authenticated with the HMAC challenge-response in its
 * own task; a client that proves the key gets its bytes echoed back, any
 * other is logged and closed (a wrong digest also pauses the next handshake
 * from its address, by the throttle's delay). Ctrl-C or SIGTERM stops
 * accepting, lets the open connections finish and exits.
 *
 *     deno run --allow-net=127.0.0.1:18000 --allow-env=CONNAUTH_KEY examples/echo_server.ts
 *
 * @module
 */
import { serve } from "../server.ts";
import { formatAddr } from "../_io.ts";
import { COMMON_HELP, parseFlags, parseTimeout, warnDemoKey } from "./_cli.ts";
import { shutdownSignal } from "./_shutdown.ts";

const USAGE =
  `Usage: deno run --allow-net=127.0.0.1:18000 --allow-env=CONNAUTH_KEY examples/echo_server.ts [options]

Echoes back whatever an authenticated client sends.

Options:
${COMMON_HELP}
  --timeout MS      handshake deadline in milliseconds (default 10000)`;

const { common, values } = parseFlags(USAGE, { timeout: { type: "string" } });
if (common.demoKey) warnDemoKey();
const timeout = parseTimeout(values.timeout as string | undefined);

using stop = shutdownSignal();
const server = serve({
  hostname: common.hostname,
  port: common.port,
  key: common.key,
  hash: common.hash,
  handshakeTimeout: timeout,
  signal: stop.signal,
  // These lines replace the library's default log.
  log: false,
  onConnection: (info) =>
    console.error(`accept ${formatAddr(info.remoteAddr)}`),
  onAuthFailure: ({ remoteAddr, error, delay }) =>
    console.error(
      `reject ${formatAddr(remoteAddr)}: ${error.message}${
        delay ? ` (its address waits ${delay} ms for its next handshake)` : ""
      }`,
    ),
  onRefuse: ({ remoteAddr, reason }) =>
    console.error(`refuse ${formatAddr(remoteAddr)}: ${reason}`),
  onError: (error, { phase, remoteAddr }) =>
    console.error(
      `${phase === "handshake" ? "reject" : "error"} ${
        formatAddr(remoteAddr)
      }: ${(error as Error).message ?? error}`,
    ),
}, async (conn, info) => {
  await conn.readable.pipeTo(conn.writable, { signal: info.signal });
});
console.error(
  `echo server listening on ${formatAddr(server.addr)} (HMAC-${common.hash})`,
);
await server.finished;
console.error("echo server stopped");
