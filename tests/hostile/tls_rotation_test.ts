// TlsListener.setCredentials() (_tls_credentials.ts) against what could
// outlast it: a credentials file that never finishes reading (a named pipe
// nobody writes to; the calls run one after the other, so one read that
// never ends held every later rotation for ever), and a client that opened
// its TCP connection before a client CA was taken out and sends its
// ClientHello after (node:tls verifies it against the CAs in force at
// accept). The tests marked "Regression" failed before the fix they name.
import assert from "node:assert/strict";
import {
  connectTls,
  listenTls,
  TlsError,
  type TlsErrorInfo,
} from "../../tls.ts";
import {
  createCertificateAuthority,
  generateCertificates,
  issueCertificate,
} from "../../certs.ts";
import { readPem } from "../../_pem.ts";
import { within } from "../_helpers.ts";

/** A named pipe in a new directory, removed (and unblocked) at dispose. */
async function fifo(): Promise<AsyncDisposable & { path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "connauth-fifo-" });
  const path = `${dir}/cert.pem`;
  const made = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(made.success, "mkfifo failed");
  return {
    path,
    async [Symbol.asyncDispose]() {
      // A reader the deadline gave up on still waits in open(): a writer
      // that comes and goes lets it end.
      try {
        using writer = await within(
          Deno.open(path, { write: true }),
          5000,
          "open the pipe for writing",
        );
        void writer;
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}

// Regression: the read had no deadline (_pem.ts).
Deno.test("readPem() gives up on a file that does not finish reading within its deadline", async () => {
  await using pipe = await fifo();
  const started = performance.now();
  const read = readPem(
    undefined,
    pipe.path,
    {
      what: "the server certificate",
      textOption: "cert",
      fileOption: "certFile",
    },
    "set the TLS credentials",
    300,
  );
  await assert.rejects(
    within(read, 5000, "the read"),
    (error) => {
      assert.ok(error instanceof Deno.errors.TimedOut, String(error));
      assert.equal(
        error.message,
        `Cannot set the TLS credentials: the server certificate file "${pipe.path}" was not read within 300 ms (a named pipe nobody writes to, or a stalled network file system?); check \`certFile\``,
      );
      return true;
    },
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 250 && elapsed < 5000, `gave up after ${elapsed} ms`);
});

Deno.test("TlsListener.setCredentials() with a file that never reads fails, and later calls still apply", async () => {
  const set = await generateCertificates({ clients: [] });
  const next = await generateCertificates({ clients: [] });
  await using pipe = await fifo();
  await using listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
    onError: () => {},
  });
  const stuck = listener.setCredentials({
    certFile: pipe.path,
    key: next.server.key,
  });
  stuck.catch(() => {});
  const later = listener.setCredentials({
    cert: next.server.cert,
    key: next.server.key,
  });
  await within(
    assert.rejects(stuck, Deno.errors.TimedOut),
    20_000,
    "the stuck call",
  );
  await within(later, 20_000, "the call after it");
});

const serverCa = await createCertificateAuthority();
const server = await issueCertificate(serverCa, { commonName: "localhost" });
const oldCa = await createCertificateAuthority();
const newCa = await createCertificateAuthority();
const oldClient = await issueCertificate(oldCa, {
  usage: "client",
  commonName: "old-client",
});
const newClient = await issueCertificate(newCa, {
  usage: "client",
  commonName: "new-client",
});

/**
 * A listener trusting `clientCa`'s clients, and a TCP connection of
 * `client` to it opened
 * now, through a relay that sends nothing until `connect()`: a client
 * that connected before what happens next and completes its handshake
 * after it.
 */
async function preOpened(
  clientCa: string | string[] = oldCa.cert,
  client = oldClient,
) {
  const errors: { error: TlsError; info: TlsErrorInfo }[] = [];
  const seen: string[] = [];
  const listener = await listenTls({
    cert: server.cert,
    key: server.key,
    clientCa,
    handshakeTimeout: 10_000,
    onError: (error, info) => errors.push({ error, info }),
  });
  const serving = (async () => {
    for await (const conn of listener) {
      seen.push(conn.peerIdentity?.cn ?? "-");
      const writer = conn.writable.getWriter();
      await writer.write(new TextEncoder().encode("k")).catch(() => {});
      writer.releaseLock();
      conn.close();
    }
  })();
  const upstream = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const relaying = (async () => {
    const conn = await relay.accept();
    relay.close();
    await Promise.allSettled([
      conn.readable.pipeTo(upstream.writable),
      upstream.readable.pipeTo(conn.writable),
    ]);
  })();
  // The listener has accepted it (node:tls has made its TLS socket).
  await new Promise((resolve) => setTimeout(resolve, 100));
  return {
    listener,
    errors,
    seen,
    /** The handshake of the connection opened earlier: the first byte. */
    async connect(): Promise<string> {
      using conn = await connectTls({
        hostname: "localhost",
        port: relay.addr.port,
        caCerts: [serverCa.cert],
        cert: client.cert,
        key: client.key,
        timeout: 5000,
      });
      const reader = conn.readable.getReader();
      try {
        const { value } = await reader.read();
        return new TextDecoder().decode(value);
      } finally {
        reader.releaseLock();
      }
    },
    async [Symbol.asyncDispose]() {
      try {
        relay.close();
      } catch {
        // accepted already
      }
      listener.close();
      await serving;
      await within(relaying, 5000, "the relay");
    },
  };
}

// Regression: the client was accepted, verified against the client CAs in
// force when its TCP connection was accepted (_tls_server.ts).
Deno.test("TlsListener.setCredentials() taking a client CA out refuses its client that connected before and sends its ClientHello after", async () => {
  await using pre = await preOpened();
  await pre.listener.setCredentials({ clientCa: newCa.cert });
  await assert.rejects(pre.connect(), TlsError);
  await within(
    (async () => {
      while (pre.errors.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })(),
    5000,
    "the refusal report",
  );
  assert.deepEqual(pre.seen, []);
  assert.equal(pre.errors.length, 1);
  const [{ error, info }] = pre.errors;
  assert.equal(info.phase, "verify");
  assert.equal(error.reason, "unknown-ca");
  assert.equal(info.identity?.cn, "old-client");
  assert.match(
    error.message,
    /^Cannot accept the TLS connection: the certificate of client "CN = old-client" \(SHA-256 [0-9A-F:]+\) was refused: setCredentials\(\) took a client CA out of `clientCa` while its handshake was under way, and none of those in force now issued it; the client may reconnect$/,
  );
});

Deno.test("TlsListener.setCredentials() that keeps a client's CA lets it complete a handshake it started before", async () => {
  for (
    const credentials of [
      { clientCa: [oldCa.cert, newCa.cert] },
      { cert: server.cert, key: server.key },
    ]
  ) {
    await using pre = await preOpened();
    await pre.listener.setCredentials(credentials);
    assert.equal(await pre.connect(), "k");
    assert.deepEqual(pre.seen, ["old-client"]);
    assert.deepEqual(pre.errors, []);
  }
  // Another CA taken out: a client of one still in force goes on.
  await using pre = await preOpened([oldCa.cert, newCa.cert], newClient);
  await pre.listener.setCredentials({ clientCa: newCa.cert });
  assert.equal(await pre.connect(), "k");
  assert.deepEqual(pre.seen, ["new-client"]);
  assert.deepEqual(pre.errors, []);
});
