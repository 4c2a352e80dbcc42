/**
 * Noise echo client: opens an encrypted channel to the Noise echo server with
 * the pre-shared key, sends a message, half-closes and prints the echo.
 *
 *     CONNAUTH_PSK=<the server's key> deno run --allow-net=127.0.0.1:18001 --allow-env=CONNAUTH_PSK examples/noise_echo_client.ts Hello World
 *
 * Exits 1 with a clear message when the server refuses the key.
 *
 * @module
 */
import { AuthenticationError, ProtocolError } from "../errors.ts";
import { noiseConnect } from "../noise.ts";
import { utf8 } from "../_io.ts";
import { fail, NOISE_HELP, parseNoiseFlags } from "./_noise_cli.ts";

const USAGE =
  `Usage: deno run --allow-net=127.0.0.1:18001 --allow-env=CONNAUTH_PSK examples/noise_echo_client.ts [options] [message...]

Opens a Noise_NNpsk0_25519_AESGCM_SHA256 channel to the echo server, sends
the message (default "Hello World") and prints the reply.

Options:
${NOISE_HELP}`;

const flags = parseNoiseFlags(USAGE);
const message = utf8(
  flags.positionals.length ? flags.positionals.join(" ") : "Hello World",
);

let tcp: Deno.TcpConn;
try {
  tcp = await Deno.connect({ hostname: flags.hostname, port: flags.port });
} catch (error) {
  fail(
    `Cannot connect to ${flags.hostname}:${flags.port}: ${
      (error as Error).message
    }; is the server running?`,
  );
}

try {
  await using conn = await noiseConnect(tcp, flags.psk, {
    prologue: flags.prologue,
    timeout: flags.timeout,
  });
  const reading = new Response(conn.readable).arrayBuffer();
  await conn.send(message);
  await conn.closeWrite();
  const reply = await reading;
  console.log(new TextDecoder().decode(reply));
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
