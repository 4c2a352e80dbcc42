/**
 * TLS echo client: verifies the server against `./certs/ca.pem`, sends a
 * message and prints the echo.
 *
 *     deno task tls-echo-client Hello TLS
 *     deno task tls-echo-client --mutual Hello    # presents certs/client.pem
 *     CONNAUTH_SECRET=secret deno task tls-echo-client --hmac Hello
 *
 * Exits 1 with the cause and the fix when the TLS connection fails (unknown
 * CA, hostname mismatch, a refused client certificate...).
 *
 * @module
 */
import { connectTls, type TlsClientConn, TlsError } from "../tls.ts";
import { clientAuthenticate } from "../handshake.ts";
import { receive, send } from "./_tls_io.ts";
import {
  COMMON_HELP,
  fail,
  parseFlags,
  parseTimeout,
  warnDemoKey,
} from "./_cli.ts";

const USAGE = `Usage: deno task tls-echo-client [options] [message...]
   or: deno run --allow-net=localhost:18443 --allow-read=certs --allow-env=CONNAUTH_SECRET examples/tls_echo_client.ts [options] [message...]

Connects with TLS (verifying the server against DIR/ca.pem), sends the
message (default "Hello TLS") and prints the reply.

Options:
${
  COMMON_HELP.replace("default 18000", "default 18443").replace(
    "(default 127.0.0.1)",
    "(default localhost: the name in the certificate)",
  )
}
  --certs DIR       certificate directory (default certs)
  --mutual          present DIR/client.pem and DIR/client-key.pem
  --hmac            also run the HMAC handshake (key: CONNAUTH_SECRET or --secret-file)
  --timeout MS      deadline for each step in milliseconds (default 10000)`;

const { common, values, positionals } = parseFlags(USAGE, {
  certs: { type: "string" },
  mutual: { type: "boolean" },
  hmac: { type: "boolean" },
  timeout: { type: "string" },
}, { port: 18443 });
const dir = String(values.certs ?? "certs");
const hostname = values.hostname === undefined
  ? "localhost"
  : String(values.hostname);
const timeout = parseTimeout(values.timeout as string | undefined);
const message = new TextEncoder().encode(
  positionals.length ? positionals.join(" ") : "Hello TLS",
);
if (values.hmac && common.demoKey) warnDemoKey();

let conn: TlsClientConn;
try {
  conn = await connectTls({
    hostname,
    port: common.port,
    caFile: `${dir}/ca.pem`,
    certFile: values.mutual ? `${dir}/client.pem` : undefined,
    keyFile: values.mutual ? `${dir}/client-key.pem` : undefined,
    timeout,
  });
} catch (error) {
  fail((error as Error).message);
}

try {
  if (values.hmac) {
    await clientAuthenticate(conn, common.key, { hash: common.hash, timeout });
  }
  await send(conn.writable, message, AbortSignal.timeout(timeout));
  const reply = await receive(
    conn.readable,
    message.byteLength,
    AbortSignal.timeout(timeout),
  );
  if (reply === null) {
    fail(
      "Cannot get the echo: the server closed the connection; it refused us (check --mutual, --hmac and the key)",
    );
  }
  console.log(new TextDecoder().decode(reply));
} catch (error) {
  const hint = error instanceof TlsError &&
      error.reason === "certificate-required"
    ? " (run the client with --mutual)"
    : "";
  fail(`Cannot get the echo: ${(error as Error).message}${hint}`);
} finally {
  conn.close();
}
