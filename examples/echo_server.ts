/**
 * Authenticated echo server: the Cookbook recipe's server on top of
 * {@linkcode serve}.
 *
 * Each connection is authenticated with the HMAC challenge-response in its
 * own task; a client that proves the key gets its bytes echoed back, any
 * other is logged and closed (a wrong digest also pauses the next handshake
 * from its address, by the throttle's delay). Ctrl-C or SIGTERM stops
 * accepting, ends the echo loops and exits.
 *
 * The handler echoes with a `conn.read()` / `conn.write()` loop on the
 * socket: the fastest idiom in Deno 2.9.6, as it skips the stream machinery
 * that `conn.readable.pipeTo(conn.writable)` goes through (which echoes
 * 40 to 50% fewer connections a second). `serve()`'s own listener hands out
 * `Deno.Conn`s, which have both; a connection without them (a `tls.ts`
 * listener's) falls back to `pipeTo`.
 *
 *     deno task echo-server
 *     deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_SECRET examples/echo_server.ts
 *
 * @module
 */
import { serve, type ServerConn } from "../server.ts";
import { commonHelp, HELP_LINE, parseTimedFlags } from "./_cli.ts";
import { failListen, setProgram } from "./_program.ts";
import { formatAddr, serverLog } from "./_server_log.ts";
import { shutdownSignal } from "./_shutdown.ts";

const RUN = setProgram({
  script: "examples/echo_server.ts",
  task: "echo-server",
  flags: ["--allow-net=127.0.0.1", "--allow-env=CONNAUTH_SECRET"],
});

const USAGE = `Usage: deno task echo-server [options]
   or: ${RUN} [options]

Echoes back whatever an authenticated client sends.

Options:
${commonHelp(18000)}
  --timeout MS      handshake deadline in milliseconds (default 10000)
${HELP_LINE}`;

const { common, timeout } = parseTimedFlags(USAGE);

using stop = shutdownSignal();
// At most 20 lines a second, as the library's own log: a flood of clients
// cannot flood the terminal (or cost the server a write per connection);
// the rest are summed up in one line. The same lines as upper_server.ts.
const log = serverLog(stop.signal);
let server;
try {
  server = serve({
    hostname: common.hostname,
    port: common.port,
    secret: common.key,
    hash: common.hash,
    handshakeTimeout: timeout,
    signal: stop.signal,
    ...log.hooks,
  }, (conn, info) => echo(conn, info.signal));
} catch (error) {
  failListen(error, common.hostname, common.port);
}
console.error(
  `echo server listening on ${formatAddr(server.addr)} (HMAC-${common.hash})`,
);
await server.finished;
log.flush();
console.error("echo server stopped");

/**
 * Echoes until the client closes (or the server shuts down: `signal`
 * aborts, and closing the socket ends the pending read).
 */
async function echo(conn: ServerConn, signal: AbortSignal): Promise<void> {
  if (conn.read === undefined || conn.write === undefined) {
    return await conn.readable.pipeTo(conn.writable, { signal });
  }
  // Small to start with: a short exchange needs no 16 KiB, and zeroing them
  // costs about 2 us, a few percent of a whole connection. Four times
  // larger, up to 64 KiB, each time a read fills it.
  let buffer = new Uint8Array(4096);
  const stop = () => conn.close();
  signal.addEventListener("abort", stop, { once: true });
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) {
      for (let offset = 0; offset < n;) {
        offset += await conn.write(buffer.subarray(offset, n));
      }
      if (n === buffer.length && n < 65536) buffer = new Uint8Array(n * 4);
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  } finally {
    signal.removeEventListener("abort", stop);
  }
}
