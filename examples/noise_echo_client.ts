/**
 * Noise echo client: opens an encrypted channel to the Noise echo server with
 * the pre-shared key, sends a message, half-closes and prints the echo.
 *
 *     CONNAUTH_PSK=<the server's key> deno task noise-echo-client Hello World
 *     deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_PSK examples/noise_echo_client.ts Hello World
 *
 * Exits 1 with a clear message when the server refuses the key.
 *
 * @module
 */
import { AuthenticationError, ProtocolError } from "../errors.ts";
import { connectNoise } from "../noise.ts";
import { fail, noiseHelp, parseNoiseFlags } from "./_noise_cli.ts";
import { explain, setProgram } from "./_program.ts";

const RUN = setProgram({
  script: "examples/noise_echo_client.ts",
  task: "noise-echo-client",
  flags: ["--allow-net=127.0.0.1", "--allow-env=CONNAUTH_PSK"],
});

const USAGE = `Usage: deno task noise-echo-client [options] [message...]
   or: ${RUN} [options] [message...]

Opens a Noise_NNpsk0_25519_AESGCM_SHA256 channel to the echo server, sends
the message (default "Hello World") and prints the reply.

Options:
${
  noiseHelp(
    "deadline for each step in milliseconds: connect, handshake,\n                    send, half-close, the whole reply",
  )
}`;

const flags = parseNoiseFlags(USAGE);
const { timeout } = flags;
const message = new TextEncoder().encode(
  flags.positionals.length ? flags.positionals.join(" ") : "Hello World",
);

let tcp: Deno.TcpConn;
try {
  tcp = await Deno.connect({
    hostname: flags.hostname,
    port: flags.port,
    signal: AbortSignal.timeout(timeout),
  });
} catch (error) {
  const cause = error instanceof DOMException && error.name === "TimeoutError"
    ? `no answer within ${timeout} ms`
    : (error as Error).message;
  fail(
    explain(error, `connect to ${flags.hostname}:${flags.port}`) ??
      `Cannot connect to ${flags.hostname}:${flags.port}: ${cause}; is the server running?`,
  );
}

try {
  await using conn = await connectNoise(tcp, flags.psk, {
    prologue: flags.prologue,
    timeout,
  });
  await conn.send(message, { timeout });
  await conn.closeWrite({ timeout });
  // The echo may come back in several messages: one deadline for them all,
  // and no more bytes than we sent.
  const until = performance.now() + timeout;
  const left = () => Math.max(1, Math.ceil(until - performance.now()));
  const decoder = new TextDecoder();
  let echo = "";
  let length = 0;
  for (let part; (part = await conn.receive({ timeout: left() })) !== null;) {
    length += part.byteLength;
    if (length > message.byteLength) {
      fail(
        `Cannot get the echo: the server sent more than the ${message.byteLength} bytes we sent`,
      );
    }
    // A character may be split between two messages: decode as a stream.
    echo += decoder.decode(part, { stream: true });
  }
  console.log(echo + decoder.decode());
} catch (error) {
  if (error instanceof AuthenticationError) {
    fail(
      `Cannot open the channel: ${error.message}. Check CONNAUTH_PSK / --psk-file and --prologue`,
    );
  }
  if (error instanceof ProtocolError) {
    fail(`Cannot get the echo: ${error.message}`);
  }
  fail(`Cannot get the echo: ${(error as Error).message}`);
}
