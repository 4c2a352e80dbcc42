/**
 * Authenticated echo client: connects, proves the key, sends a message and
 * prints the echo.
 *
 *     deno run --allow-net=127.0.0.1:18000 --allow-env=CONNAUTH_SECRET examples/echo_client.ts Hello World
 *
 * Exits 1 with a clear message when the server rejects the key.
 *
 * @module
 */
import { clientAuthenticate } from "../handshake.ts";
import { closeQuietly, readExactOrEof, writeAll } from "../_conn_io.ts";
import { deadline } from "../_deadline.ts";
import { utf8 } from "../_bytes.ts";
import { ProtocolError } from "../errors.ts";
import {
  COMMON_HELP,
  fail,
  parseFlags,
  parseTimeout,
  warnDemoKey,
} from "./_cli.ts";

const USAGE =
  `Usage: deno run --allow-net=127.0.0.1:18000 --allow-env=CONNAUTH_SECRET examples/echo_client.ts [options] [message...]

Authenticates to the echo server, sends the message (default "Hello World")
and prints the reply.

Options:
${COMMON_HELP}
  --timeout MS      deadline for each step in milliseconds (default 10000)`;

const { common, values, positionals } = parseFlags(USAGE, {
  timeout: { type: "string" },
});
if (common.demoKey) warnDemoKey();
const timeout = parseTimeout(values.timeout as string | undefined);
const message = utf8(
  positionals.length ? positionals.join(" ") : "Hello World",
);

let conn: Deno.TcpConn;
{
  using limit = deadline(
    timeout,
    undefined,
    `connect to ${common.hostname}:${common.port}`,
  );
  try {
    conn = await Deno.connect({
      hostname: common.hostname,
      port: common.port,
      signal: limit.signal,
    });
  } catch (error) {
    const cause = limit.signal.aborted ? limit.signal.reason : error;
    fail(
      `Cannot connect to ${common.hostname}:${common.port}: ${
        (cause as Error).message
      }; is the server running?`,
    );
  }
}

try {
  await clientAuthenticate(conn, common.key, { hash: common.hash, timeout });
  await writeAll(conn.writable, message, AbortSignal.timeout(timeout));
  const reply = await readExactOrEof(
    conn.readable,
    message.byteLength,
    AbortSignal.timeout(timeout),
    "the echo",
  );
  if (reply === null) {
    fail(
      "Cannot get the echo: the server closed the connection after the handshake, so it rejected our key; check CONNAUTH_SECRET / --secret-file and --hash",
    );
  }
  console.log(new TextDecoder().decode(reply));
} catch (error) {
  if (
    error instanceof ProtocolError ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe
  ) {
    fail(
      `Cannot get the echo: ${
        (error as Error).message
      }; the server rejected our key or hung up (check CONNAUTH_SECRET / --secret-file and --hash)`,
    );
  }
  fail(`Cannot get the echo: ${(error as Error).message}`);
} finally {
  closeQuietly(conn);
}
