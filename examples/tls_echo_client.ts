/**
 * TLS echo client: verifies the server against `./certs/ca.pem`, sends a
 * message and prints the echo.
 *
 *     deno task tls-echo-client Hello TLS
 *     deno task tls-echo-client --mutual Hello    # presents certs/client.pem
 *     CONNAUTH_SECRET=secret deno task tls-echo-client --hmac Hello
 *
 * Exits 1 with the cause and the fix, in terms of this program's flags,
 * when the TLS connection fails (unknown CA, hostname mismatch, a refused
 * client certificate...), and when the server is not the echo server it
 * expects: one that sends an HMAC challenge first (`--hmac` is missing).
 *
 * @module
 */
import { connectTls, type TlsClientConn, TlsError } from "../tls.ts";
import { clientAuthenticate } from "../handshake.ts";
import { send } from "./_tls_io.ts";
import {
  commonHelp,
  fail,
  HELP_LINE,
  parseFlags,
  parseTimeout,
  readCertsFile,
  warnDemoKey,
} from "./_cli.ts";
import { explain, setProgram } from "./_program.ts";

const RUN = setProgram({
  script: "examples/tls_echo_client.ts",
  task: "tls-echo-client",
  flags: [
    "--allow-net=localhost",
    "--allow-read=certs",
    "--allow-env=CONNAUTH_SECRET",
  ],
});

const USAGE = `Usage: deno task tls-echo-client [options] [message...]
   or: ${RUN} [options] [message...]

Connects with TLS (verifying the server against DIR/ca.pem), sends the
message (default "Hello TLS") and prints the reply.

Options:
${
  commonHelp(18443, {
    hostname: "server name (default localhost: the name in the certificate)",
    client: true,
  })
}
  --certs DIR       certificate directory (default certs)
  --mutual          present DIR/client.pem and DIR/client-key.pem
  --hmac            also run the HMAC handshake (key: CONNAUTH_SECRET or --secret-file)
  --timeout MS      deadline for each step in milliseconds (default 10000)
${HELP_LINE}`;

const { common, values, positionals } = parseFlags(USAGE, {
  certs: { type: "string" },
  mutual: { type: "boolean" },
  hmac: { type: "boolean" },
  timeout: { type: "string" },
}, { port: 18443, needsKey: (values) => values.hmac === true });
const dir = String(values.certs ?? "certs");
const hostname = values.hostname === undefined
  ? "localhost"
  : String(values.hostname);
const timeout = parseTimeout(values.timeout as string | undefined);
const message = new TextEncoder().encode(
  positionals.length ? positionals.join(" ") : "Hello TLS",
);
if (values.hmac && common.demoKey) warnDemoKey();

/** The fix of a TLS failure, in this program's flags. */
const FIXES: Partial<Record<string, string>> = {
  "unknown-ca":
    `pass --certs with the folder the server's certificate came from (checked against ${dir}/ca.pem)`,
  "hostname-mismatch":
    "connect with --hostname set to a name in the certificate (localhost), or reissue it: deno task certs --force --name NAME",
  "certificate-required": "run the client with --mutual",
  "certificate-refused":
    "use --mutual with --certs set to the server's certificate folder",
  "expired": "make a new set: deno task certs --force",
  "not-yet-valid":
    "check the clock, or make a new set: deno task certs --force",
};

/** One line for a TLS error: the library's cause, this program's fix. */
function describeTls(error: TlsError): string {
  if (/corrupt message|InvalidContentType/.test(error.message)) {
    // A plain HMAC server speaks first, with its challenge, not TLS.
    return `${
      error.message.split("; ")[0]
    }; the server does not speak TLS on this port (a plain HMAC server sends its challenge first): use deno task echo-client for it, or check --port`;
  }
  const [cause, ...rest] = error.message.split("; ");
  // The library's own fix names its options (`caCerts`): name our flags.
  const fix = FIXES[error.reason] ??
    (/`\w+`/.test(rest.join("; "))
      ? "check --certs, --mutual and --hostname"
      : undefined);
  if (fix === undefined) return error.message;
  return `${cause}; ${fix}`;
}

const ca = readCertsFile(dir, "ca.pem");
const cert = values.mutual ? readCertsFile(dir, "client.pem") : undefined;
const key = values.mutual ? readCertsFile(dir, "client-key.pem") : undefined;

let conn: TlsClientConn;
try {
  conn = await connectTls({
    hostname,
    port: common.port,
    caCerts: [ca],
    cert,
    key,
    timeout,
  });
} catch (error) {
  if (error instanceof TlsError) fail(describeTls(error));
  fail(
    explain(error, `connect to ${hostname}:${common.port}`) ??
      `Cannot connect to ${hostname}:${common.port}: ${
        (error as Error).message
      }; is the TLS echo server running?`,
  );
}

/** Smallest and largest challenge a Cookbook HMAC server sends. */
const CHALLENGE = { min: 16, max: 1024 };

/**
 * Reads until `length` bytes (whole chunks, so possibly more), the end of
 * the stream, or `signal`; stops early at a byte that differs from
 * `expected`.
 */
async function readReply(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  expected: Uint8Array,
  signal: AbortSignal,
): Promise<{ bytes: Uint8Array; closed: boolean }> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const onAbort = () => reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    while (size < expected.length) {
      const { value, done } = await reader.read();
      if (done) return { bytes: concat(chunks, size), closed: !signal.aborted };
      chunks.push(value);
      size += value.byteLength;
      const differs = value.some((byte, i) =>
        size - value.byteLength + i < expected.length &&
        byte !== expected[size - value.byteLength + i]
      );
      if (differs) break;
    }
    return { bytes: concat(chunks, size), closed: false };
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

try {
  if (values.hmac) {
    await clientAuthenticate(conn, common.key, { hash: common.hash, timeout });
  }
  await send(conn.writable, message, AbortSignal.timeout(timeout));
  const reader = conn.readable.getReader();
  const reply = await readReply(reader, message, AbortSignal.timeout(timeout));
  const echoed = reply.bytes.length === message.length &&
    reply.bytes.every((byte, i) => byte === message[i]);
  if (echoed) {
    console.log(new TextDecoder().decode(reply.bytes));
  } else if (
    reply.bytes.length === 0 ||
    message.subarray(0, reply.bytes.length).every((byte, i) =>
      byte === reply.bytes[i]
    )
  ) {
    fail(
      reply.closed
        ? `Cannot get the echo: the server closed the connection${
          reply.bytes.length ? ` after ${reply.bytes.length} bytes` : ""
        }; it refused us (check --mutual, --hmac and the key)`
        : `Cannot get the echo: no echo within ${timeout} ms`,
    );
  } else if (
    !values.hmac && reply.bytes.length >= CHALLENGE.min &&
    reply.bytes.length <= CHALLENGE.max
  ) {
    // A Cookbook HMAC server speaks first: its challenge came back where
    // our echo was expected.
    fail(
      `Cannot get the echo: the server sent an HMAC challenge; run with --hmac (it sent ${reply.bytes.length} random bytes where the echo was expected; the key comes from CONNAUTH_SECRET or --secret-file)`,
    );
  } else {
    fail(
      `Cannot get the echo: the server sent ${reply.bytes.length} bytes that are not our message; is it the TLS echo server (with --hmac if the server has it)?`,
    );
  }
} catch (error) {
  if (error instanceof TlsError) fail(describeTls(error));
  fail(`Cannot get the echo: ${(error as Error).message}`);
} finally {
  conn.close();
}
