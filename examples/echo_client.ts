/**
 * Authenticated echo client: connects, proves the key, sends a message and
 * prints the echo.
 *
 *     deno task echo-client Hello World
 *     deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_SECRET examples/echo_client.ts Hello World
 *
 * Exits 1 with a clear message when the server rejects the key.
 *
 * @module
 */
import { clientAuthenticate } from "../handshake.ts";
import { ProtocolError } from "../errors.ts";
import { commonHelp, fail, HELP_LINE, parseTimedFlags } from "./_cli.ts";
import { explain, setProgram } from "./_program.ts";

const RUN = setProgram({
  script: "examples/echo_client.ts",
  task: "echo-client",
  flags: ["--allow-net=127.0.0.1", "--allow-env=CONNAUTH_SECRET"],
});

const USAGE = `Usage: deno task echo-client [options] [message...]
   or: ${RUN} [options] [message...]

Authenticates to the echo server, sends the message (default "Hello World")
and prints the reply.

Options:
${commonHelp(18000, { client: true })}
  --timeout MS      deadline in milliseconds to connect, to authenticate and
                    for the echo (default 10000)
${HELP_LINE}`;

const { common, timeout, positionals } = parseTimedFlags(USAGE);
const message = new TextEncoder().encode(
  positionals.length ? positionals.join(" ") : "Hello World",
);
const address = `${common.hostname}:${common.port}`;

let conn: Deno.TcpConn;
try {
  conn = await Deno.connect({
    hostname: common.hostname,
    port: common.port,
    signal: AbortSignal.timeout(timeout),
  });
} catch (error) {
  const cause = (error as Error).name === "TimeoutError"
    ? `timed out after ${timeout} ms`
    : (error as Error).message;
  fail(
    explain(error, `connect to ${address}`) ??
      `Cannot connect to ${address}: ${cause}; is the server running?`,
  );
}

/** Reads `length` bytes; null when the peer closes before the first. */
async function readExactly(
  conn: Deno.Conn,
  length: number,
): Promise<Uint8Array | null> {
  const bytes = new Uint8Array(length);
  for (let got = 0; got < length;) {
    const count = await conn.read(bytes.subarray(got));
    if (count === null) {
      if (got === 0) return null;
      throw new ProtocolError(
        `the server closed the connection after ${got} of ${length} bytes`,
        "closed",
      );
    }
    got += count;
  }
  return bytes;
}

// The handshake has its own deadline; sending and the echo get one more,
// which closes the connection (ending a pending read) when it passes.
let timedOut = false;
let timer: ReturnType<typeof setTimeout> | undefined;
try {
  await clientAuthenticate(conn, common.key, { hash: common.hash, timeout });
  timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, timeout);
  for (let sent = 0; sent < message.length;) {
    sent += await conn.write(message.subarray(sent));
  }
  const reply = await readExactly(conn, message.length);
  if (reply === null) {
    fail(
      "Cannot get the echo: the server closed the connection after the handshake, so it rejected our key; check CONNAUTH_SECRET / --secret-file and --hash",
    );
  }
  console.log(new TextDecoder().decode(reply));
} catch (error) {
  if (timedOut) {
    fail(`Cannot get the echo: no echo within ${timeout} ms`);
  }
  const message = (error as Error).message ?? String(error);
  if (/challenge|timed out/.test(message)) {
    // The client waits only for the challenge (the echo's own deadline is
    // above), and the key plays no part before it: not a key error.
    fail(
      `Cannot get the echo: ${message}; the server sent no HMAC challenge, so it never saw our key: is this the HMAC echo server's port? (a TLS server: use deno task tls-echo-client)`,
    );
  }
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
  fail(`Cannot get the echo: ${message}`);
} finally {
  clearTimeout(timer);
  try {
    conn.close();
  } catch {
    // already closed
  }
}
