/**
 * Authenticated echo server: the Cookbook recipe's server, the Deno way.
 *
 * Each connection is authenticated with the HMAC challenge-response in its
 * own task; a client that proves the key gets its bytes echoed back, any
 * other is logged and closed.
 *
 *     deno run --allow-net=127.0.0.1:18000 --allow-env=CONNAUTH_KEY examples/echo_server.ts
 *
 * @module
 */
import { serverAuthenticate } from "../handshake.ts";
import { HmacKey } from "../handshake.ts";
import { formatAddr } from "../_io.ts";
import { COMMON_HELP, parseFlags, warnDemoKey } from "./_cli.ts";

const USAGE =
  `Usage: deno run --allow-net=127.0.0.1:18000 --allow-env=CONNAUTH_KEY examples/echo_server.ts [options]

Echoes back whatever an authenticated client sends.

Options:
${COMMON_HELP}
  --timeout MS      handshake deadline in milliseconds (default 10000)`;

const { common, values } = parseFlags(USAGE, { timeout: { type: "string" } });
if (common.demoKey) warnDemoKey();
const timeout = Number(values.timeout ?? 10_000);
const key = await HmacKey.import(common.key, { hash: common.hash });

const listener = Deno.listen({ hostname: common.hostname, port: common.port });
console.error(
  `echo server listening on ${formatAddr(listener.addr)} (HMAC-${key.hash})`,
);

async function handle(conn: Deno.Conn): Promise<void> {
  const peer = formatAddr(conn.remoteAddr);
  try {
    await serverAuthenticate(conn, key, { timeout });
  } catch (error) {
    console.error(`reject ${peer}: ${(error as Error).message}`);
    conn.close();
    return;
  }
  console.error(`accept ${peer}`);
  try {
    await conn.readable.pipeTo(conn.writable);
  } catch (error) {
    console.error(`error ${peer}: ${(error as Error).message}`);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

for await (const conn of listener) handle(conn);
