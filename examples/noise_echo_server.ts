/**
 * Noise echo server: every client that holds the pre-shared key gets an
 * encrypted channel and its bytes echoed back; any other is refused before
 * the handler runs (and throttled by `serve()`).
 *
 *     export CONNAUTH_PSK=$(openssl rand -hex 32)
 *     deno task noise-echo-server
 *     deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_PSK examples/noise_echo_server.ts
 *
 * Stops gracefully on Ctrl-C.
 *
 * @module
 */
import { createNoiseAuthenticator, type NoiseConn } from "../noise.ts";
import { serve } from "../server.ts";
import { describeAddr, noiseHelp, parseNoiseFlags } from "./_noise_cli.ts";
import { failListen, setProgram } from "./_program.ts";

const RUN = setProgram({
  script: "examples/noise_echo_server.ts",
  task: "noise-echo-server",
  flags: ["--allow-net=127.0.0.1", "--allow-env=CONNAUTH_PSK"],
});

const USAGE = `Usage: deno task noise-echo-server [options]
   or: ${RUN} [options]

Echoes back whatever a client holding the pre-shared key sends, over
Noise_NNpsk0_25519_AESGCM_SHA256.

Options:
${noiseHelp("handshake deadline in milliseconds")}`;

const flags = parseNoiseFlags(USAGE);
const stop = new AbortController();
Deno.addSignalListener("SIGINT", () => stop.abort());

let server;
try {
  server = serve<NoiseConn>({
    hostname: flags.hostname,
    port: flags.port,
    authenticate: createNoiseAuthenticator(flags.psk, {
      prologue: flags.prologue,
      timeout: flags.timeout,
    }),
    handshakeTimeout: flags.timeout,
    signal: stop.signal,
  }, async (conn, info) => {
    // info.signal aborts on Ctrl-C: an idle client does not hold the
    // shutdown for the whole grace period.
    await conn.readable.pipeTo(conn.writable, { signal: info.signal });
    console.error(`done ${describeAddr(info.remoteAddr)}`);
  });
} catch (error) {
  failListen(error, flags.hostname, flags.port);
}
console.error(
  `noise echo server listening on ${describeAddr(server.addr)} (Ctrl-C stops)`,
);
await server.finished;
