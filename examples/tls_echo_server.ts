/**
 * TLS echo server: the Cookbook's TLS recipe on connauth.
 *
 * Serves TLS with the certificate in `./certs` (writing a development set
 * there on first run, with a notice). `--mutual` requires and verifies a
 * client certificate (mutual TLS) and logs the client's identity; `--hmac`
 * adds the Cookbook HMAC handshake inside TLS: TLS gives secrecy and the
 * server's identity, the handshake proves the client knows the key.
 *
 *     deno task tls-echo-server                 # plain TLS
 *     deno task tls-echo-server --mutual        # client certificates required
 *     CONNAUTH_SECRET=secret deno task tls-echo-server --hmac
 *
 * @module
 */
import { listenTls, TlsError, type TlsServerConn } from "../tls.ts";
import { generateCertificates, writeCertificates } from "../certs.ts";
import { serve } from "../server.ts";
import { HmacKey, serverAuthenticate } from "../handshake.ts";
import { showAddr } from "./_tls_io.ts";
import {
  commonHelp,
  fail,
  HELP_LINE,
  parseFlags,
  parseTimeout,
  readCertsFile,
  warnDemoKey,
} from "./_cli.ts";
import { failListen, runLine, setProgram } from "./_program.ts";

const RUN = setProgram({
  script: "examples/tls_echo_server.ts",
  task: "tls-echo-server",
  flags: [
    "--allow-net=127.0.0.1",
    "--allow-read=certs",
    "--allow-write=certs",
    "--allow-env=CONNAUTH_SECRET",
  ],
});

const USAGE = `Usage: deno task tls-echo-server [options]
   or: ${RUN} [options]

Echoes back whatever a TLS client sends. Certificates come from --certs
(server.pem, server-key.pem, ca.pem); when the directory holds none, a
development set is written there first.

Options:
${commonHelp(18443)}
  --certs DIR       certificate directory (default certs)
  --mutual          require a client certificate signed by DIR/ca.pem
  --hmac            also run the HMAC handshake (key: CONNAUTH_SECRET or --secret-file)
  --timeout MS      handshake deadline in milliseconds (default 10000)
${HELP_LINE}`;

const { common, values } = parseFlags(USAGE, {
  certs: { type: "string" },
  mutual: { type: "boolean" },
  hmac: { type: "boolean" },
  timeout: { type: "string" },
}, { port: 18443, needsKey: (values) => values.hmac === true });
const dir = String(values.certs ?? "certs");
const mutual = values.mutual === true;
const hmac = values.hmac === true;
const timeout = parseTimeout(values.timeout as string | undefined);

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

try {
  await prepare();
} catch (error) {
  if (!(error instanceof Deno.errors.NotCapable)) throw error;
  fail(
    `Cannot use --certs ${dir}: no permission to read and write it; run: ${
      runLine(["read", dir], ["write", dir])
    }`,
  );
}

/** Writes a development set to `dir` when it holds none. */
async function prepare(): Promise<void> {
  if (!await exists(`${dir}/server.pem`)) {
    if (
      await exists(`${dir}/server-key.pem`) || await exists(`${dir}/ca.pem`)
    ) {
      fail(
        `Cannot start: ${dir}/ holds some certificate files but no server.pem; complete it or run deno task certs --force`,
      );
    }
    const written = await writeCertificates(dir, await generateCertificates());
    console.error(
      `notice: no certificates in ${dir}/, wrote a development set (do not use in production):`,
    );
    for (const file of written) console.error(`  ${file.path}`);
  }
}

const key = hmac
  ? await HmacKey.import(common.key, { hash: common.hash })
  : null;
if (hmac && common.demoKey) warnDemoKey();

// Read here, so that an error names the file and --certs, not an option.
const cert = readCertsFile(dir, "server.pem");
const certKey = readCertsFile(dir, "server-key.pem");
const clientCa = mutual ? readCertsFile(dir, "ca.pem") : undefined;

let listener;
try {
  listener = await listenTls({
    hostname: common.hostname,
    port: common.port,
    cert,
    key: certKey,
    clientCa,
    handshakeTimeout: timeout,
  });
} catch (error) {
  if (error instanceof TlsError) {
    fail(
      `${
        error.message.split("; ")[0]
      }; check the files in ${dir}/, or make a new set: deno task certs --force`,
    );
  }
  failListen(error, common.hostname, common.port);
}
console.error(
  `TLS echo server listening on ${showAddr(listener.addr)}${
    mutual ? ", client certificates required" : ""
  }${key ? `, HMAC-${key.hash} handshake inside TLS` : ""}`,
);

serve<TlsServerConn>({
  listener,
  handshakeTimeout: timeout,
  authenticate: async (conn, { signal }) => {
    if (key) await serverAuthenticate(conn, key, { signal });
    return conn as TlsServerConn;
  },
}, async (conn) => {
  const peer = showAddr(conn.remoteAddr);
  const who = conn.peerIdentity
    ? ` as "${conn.peerIdentity.subject}" (SHA-256 ${conn.peerIdentity.fingerprint256})`
    : "";
  console.error(`accept ${peer}${who}`);
  await conn.readable.pipeTo(conn.writable, { preventClose: false }).catch(
    (error) => console.error(`error ${peer}: ${(error as Error).message}`),
  );
});
