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
 *     deno run --allow-net=127.0.0.1:18001 --allow-env=CONNAUTH_SECRET examples/upper_server.ts
 *
 * @module
 */
import { type ConnectionInfo, serve, type ServerConn } from "../server.ts";
import { COMMON_HELP, formatAddr, parseTimedFlags } from "./_cli.ts";
import { shutdownSignal } from "./_shutdown.ts";

/** Longest line accepted, in UTF-16 code units; a longer one ends the session. */
const MAX_LINE = 64 * 1024;

const USAGE =
  `Usage: deno run --allow-net=127.0.0.1:18001 --allow-env=CONNAUTH_SECRET examples/upper_server.ts [options]

Replies to every line an authenticated client sends with the line upper-cased.

Options:
${COMMON_HELP.replace("default 18000", "default 18001")}
  --timeout MS      handshake deadline in milliseconds (default 10000)`;

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
const server = serve({
  hostname: common.hostname,
  port: common.port,
  secret: common.key,
  hash: common.hash,
  handshakeTimeout: timeout,
  signal: stop.signal,
  // The library's default logger reports failures; add the successes.
  onConnection: (info) =>
    console.error(`accept ${formatAddr(info.remoteAddr)} (#${info.id})`),
}, upper);
console.error(
  `upper server listening on ${formatAddr(server.addr)} (HMAC-${common.hash})`,
);
await server.finished;
console.error("upper server stopped");
