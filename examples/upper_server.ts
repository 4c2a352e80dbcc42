/**
 * Authenticated upper-case server: the `socketserver.ThreadingTCPServer`
 * recipe on top of {@linkcode serve}.
 *
 * Clients authenticate with the Cookbook HMAC handshake, then send lines of
 * UTF-8 text; each line comes back upper-cased. Many clients at once, each in
 * its own task; a silent or wrong-key client never holds up the others.
 * Ctrl-C or SIGTERM stops accepting, tells the open sessions to finish and
 * exits. Talk to it with `examples/chat_client.ts`.
 *
 *     deno task upper-server
 *     deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_SECRET examples/upper_server.ts
 *
 * @module
 */
import { type ConnectionInfo, serve, type ServerConn } from "../server.ts";
import { commonHelp, HELP_LINE, parseTimedFlags } from "./_cli.ts";
import { failListen, setProgram } from "./_program.ts";
import { formatAddr, serverLog } from "./_server_log.ts";
import { shutdownSignal } from "./_shutdown.ts";

/** Longest line accepted, in UTF-16 code units; a longer one ends the session. */
const MAX_LINE = 64 * 1024;

const RUN = setProgram({
  script: "examples/upper_server.ts",
  task: "upper-server",
  flags: ["--allow-net=127.0.0.1", "--allow-env=CONNAUTH_SECRET"],
});

const USAGE = `Usage: deno task upper-server [options]
   or: ${RUN} [options]

Replies to every line an authenticated client sends with the line upper-cased.

Options:
${commonHelp(18001)}
  --timeout MS      handshake deadline in milliseconds (default 10000)
${HELP_LINE}`;

const { common, timeout } = parseTimedFlags(USAGE, { port: 18001 });

/** Upper-cases each line of one session until the client leaves. */
async function upper(conn: ServerConn, info: ConnectionInfo): Promise<void> {
  const encoder = new TextEncoder();
  const writer = conn.writable.getWriter();
  let pending = "";
  try {
    const text = conn.readable.pipeThrough(new TextDecoderStream(), {
      signal: info.signal,
    });
    for await (const chunk of text) {
      pending += chunk;
      let end: number;
      while ((end = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, end).replace(/\r$/, "");
        pending = pending.slice(end + 1);
        await writer.write(encoder.encode(`${line.toUpperCase()}\n`));
      }
      if (pending.length > MAX_LINE) {
        throw new RangeError(
          `Cannot read the message: over ${MAX_LINE} characters without a newline`,
        );
      }
    }
  } finally {
    writer.releaseLock();
  }
}

using stop = shutdownSignal();
// The same log lines as echo_server.ts.
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
  }, upper);
} catch (error) {
  failListen(error, common.hostname, common.port);
}
console.error(
  `upper server listening on ${formatAddr(server.addr)} (HMAC-${common.hash})`,
);
await server.finished;
log.flush();
console.error("upper server stopped");
