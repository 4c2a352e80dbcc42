// TlsListener.setCredentials() (_tls_credentials.ts): new certificates,
// keys, client CAs and SNI maps for new handshakes, without a restart,
// while handshakes under way and established connections go on; a bad
// input changes nothing.
import assert from "node:assert/strict";
import {
  connectTls,
  listenTls,
  type ListenTlsOptions,
  TlsError,
  type TlsErrorInfo,
} from "../tls.ts";
import {
  createCertificateAuthority,
  issueCertificate,
  type IssuedCertificate,
} from "../certs.ts";
import { findTool, opensslSubject, peerTest, within } from "./_helpers.ts";

// One CA signs every server certificate, so clients trusting it connect
// whichever is in force; two client CAs for the client-CA rotation.
const serverCa = await createCertificateAuthority();
const servers: IssuedCertificate[] = [];
for (let i = 0; i < 4; i++) {
  servers.push(await issueCertificate(serverCa, { commonName: `server-${i}` }));
}
const oldClientCa = await createCertificateAuthority();
const newClientCa = await createCertificateAuthority();
const oldClient = await issueCertificate(oldClientCa, {
  usage: "client",
  commonName: "old-client",
});
const newClient = await issueCertificate(newClientCa, {
  usage: "client",
  commonName: "new-client",
});
const otherCa = await createCertificateAuthority();
const untrusted = await issueCertificate(otherCa, { commonName: "untrusted" });

/** An echo listener that records its errors and the identities it saw. */
async function echoServer(options: Partial<ListenTlsOptions> = {}) {
  const errors: { error: TlsError; info: TlsErrorInfo }[] = [];
  const seen: string[] = [];
  const listener = await listenTls({
    cert: servers[0].cert,
    key: servers[0].key,
    onError: (error, info) => errors.push({ error, info }),
    ...options,
  });
  const tasks = new Set<Promise<void>>();
  const serving = (async () => {
    for await (const conn of listener) {
      seen.push(conn.peerIdentity?.cn ?? "-");
      const task = conn.readable.pipeTo(conn.writable).catch(() => {})
        .finally(() => {
          conn.close();
          tasks.delete(task);
        });
      tasks.add(task);
    }
  })();
  return {
    listener,
    errors,
    seen,
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      await listener[Symbol.asyncDispose]();
      await serving;
      await Promise.all(tasks);
    },
  };
}

/** Connects, sends `text`, reads the echo, closes. */
async function echo(
  port: number,
  text: string,
  options: { caCerts?: string[]; cert?: string; key?: string } = {},
): Promise<string> {
  using client = await connectTls({
    hostname: "localhost",
    port,
    caCerts: [serverCa.cert],
    timeout: 10_000,
    ...options,
  });
  return await roundTrip(client, text);
}

async function roundTrip(
  conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream },
  text: string,
): Promise<string> {
  const writer = conn.writable.getWriter();
  const reader = conn.readable.getReader();
  try {
    await writer.write(new TextEncoder().encode(text));
    let got = "";
    while (got.length < text.length) {
      const { value, done } = await within(reader.read(), 10_000, "the echo");
      if (done) break;
      got += new TextDecoder().decode(value);
    }
    return got;
  } finally {
    reader.releaseLock();
    writer.releaseLock();
  }
}

Deno.test("TlsListener.setCredentials() rotates under load: 300 handshakes, 8 at once, 8 rotations, no failure", async () => {
  await using server = await echoServer({
    clientCa: oldClientCa.cert,
    handshakeTimeout: 30_000,
  });
  const total = 300;
  const concurrency = 8;
  let started = 0;
  let done = 0;
  const failures: unknown[] = [];
  // Client CA rotation in the middle: first both CAs (clients move over),
  // then the new one alone once every client uses a certificate from it.
  let clientCaPhase = 0;
  const rotations: Promise<void>[] = [];
  const rotateAt = new Map<number, () => Promise<void>>([
    [40, () => server.listener.setCredentials(servers[1])],
    [90, () => server.listener.setCredentials(servers[2])],
    [120, async () => {
      await server.listener.setCredentials({
        clientCa: [oldClientCa.cert, newClientCa.cert],
      });
      clientCaPhase = 1;
    }],
    [150, () => server.listener.setCredentials(servers[3])],
    [220, async () => {
      // Only once no handshake with an old client certificate is left.
      clientCaPhase = 2;
      await Promise.all(inFlightOld);
      await server.listener.setCredentials({ clientCa: newClientCa.cert });
    }],
    [260, () => server.listener.setCredentials(servers[0])],
    // connectTls() sends "localhost" as SNI: the SNI callback comes and
    // goes under load too.
    [
      180,
      () => server.listener.setCredentials({ sni: { localhost: servers[2] } }),
    ],
    [240, () => server.listener.setCredentials({ sni: {} })],
  ]);
  const inFlightOld = new Set<Promise<unknown>>();
  const worker = async () => {
    while (started < total) {
      const n = started++;
      const rotate = rotateAt.get(n);
      if (rotate) rotations.push(rotate());
      const client = clientCaPhase === 0 || (clientCaPhase === 1 && n % 2)
        ? oldClient
        : newClient;
      const attempt = echo(server.port, `hello ${n}`, {
        cert: client.cert,
        key: client.key,
      });
      if (client === oldClient) {
        inFlightOld.add(attempt);
        attempt.catch(() => {}).finally(() => inFlightOld.delete(attempt));
      }
      try {
        assert.equal(await attempt, `hello ${n}`);
        done++;
      } catch (error) {
        failures.push(error);
      }
    }
  };
  await within(
    Promise.all(Array.from({ length: concurrency }, worker)),
    120_000,
    "300 handshakes",
  );
  await Promise.all(rotations);
  assert.deepEqual(failures, []);
  assert.deepEqual(server.errors.map(({ error }) => error.message), []);
  assert.equal(done, total);
  assert.equal(rotations.length, 8);
  // Old client certificates are refused now.
  await assert.rejects(
    echo(server.port, "x", { cert: oldClient.cert, key: oldClient.key }),
    TlsError,
  );
});

Deno.test("TlsListener.setCredentials() with a new client CA refuses the old CA's clients and accepts the new one's", async () => {
  await using server = await echoServer({ clientCa: oldClientCa.cert });
  const old = { cert: oldClient.cert, key: oldClient.key };
  const next = { cert: newClient.cert, key: newClient.key };
  assert.equal(await echo(server.port, "a", old), "a");
  await assert.rejects(echo(server.port, "b", next), TlsError);
  await server.listener.setCredentials({ clientCa: newClientCa.cert });
  assert.equal(await echo(server.port, "c", next), "c");
  await assert.rejects(
    echo(server.port, "d", old),
    (error) =>
      error instanceof TlsError && error.reason === "certificate-refused",
  );
  const reasons = server.errors.map(({ error }) => error.reason);
  assert.deepEqual(reasons, ["unknown-ca", "unknown-ca"]);
  // The refusal says why, in the client CA's terms.
  assert.match(
    server.errors[1].error.message,
    /its issuer "CN = connauth development CA [0-9A-F]{8}" is not one of the client CAs/,
  );
  assert.deepEqual(server.seen, ["old-client", "new-client"]);
});

Deno.test("TlsListener.setCredentials() with a new client CA applies to certificates chosen by SNI too", async () => {
  // connectTls() sends "localhost" as SNI: the SNI certificate answers,
  // and its context must verify clients against the client CA in force.
  const sniCa = await createCertificateAuthority();
  const local = await issueCertificate(sniCa, { commonName: "sni-localhost" });
  await using server = await echoServer({
    clientCa: oldClientCa.cert,
    sni: { localhost: local },
  });
  const old = {
    caCerts: [sniCa.cert],
    cert: oldClient.cert,
    key: oldClient.key,
  };
  const next = {
    caCerts: [sniCa.cert],
    cert: newClient.cert,
    key: newClient.key,
  };
  assert.equal(await echo(server.port, "a", old), "a");
  await server.listener.setCredentials({ clientCa: newClientCa.cert });
  assert.equal(await echo(server.port, "b", next), "b");
  await assert.rejects(echo(server.port, "c", old), TlsError);
  // A new SNI map keeps the client CA in force.
  await server.listener.setCredentials({ sni: { localhost: local } });
  assert.equal(await echo(server.port, "d", next), "d");
  await assert.rejects(echo(server.port, "e", old), TlsError);
  assert.deepEqual(server.seen, ["old-client", "new-client", "new-client"]);
});

Deno.test("TlsListener.setCredentials() leaves an established connection working", async () => {
  await using server = await echoServer({ clientCa: oldClientCa.cert });
  using client = await connectTls({
    hostname: "localhost",
    port: server.port,
    caCerts: [serverCa.cert],
    cert: oldClient.cert,
    key: oldClient.key,
  });
  assert.equal(await roundTrip(client, "before"), "before");
  await server.listener.setCredentials({
    cert: servers[1].cert,
    key: servers[1].key,
    clientCa: newClientCa.cert,
  });
  assert.equal(await roundTrip(client, "after"), "after");
  // New handshakes use the new credentials.
  await assert.rejects(
    echo(server.port, "x", { cert: oldClient.cert, key: oldClient.key }),
    TlsError,
  );
  assert.equal(
    await echo(server.port, "y", { cert: newClient.cert, key: newClient.key }),
    "y",
  );
  assert.equal(await roundTrip(client, "still"), "still");
});

Deno.test("TlsListener.setCredentials() serves the new certificate to new handshakes", async () => {
  await using server = await echoServer();
  // A certificate from a CA the client does not trust yet...
  await server.listener.setCredentials({
    cert: untrusted.cert,
    key: untrusted.key,
  });
  await assert.rejects(
    echo(server.port, "x"),
    (error) => error instanceof TlsError && error.reason === "unknown-ca",
  );
  assert.equal(
    await echo(server.port, "y", { caCerts: [otherCa.cert] }),
    "y",
  );
  // ...and back, from files.
  const dir = await Deno.makeTempDir({ prefix: "connauth-rotate-" });
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, servers[2].cert);
    await Deno.writeTextFile(`${dir}/key.pem`, servers[2].key);
    await server.listener.setCredentials({
      certFile: `${dir}/cert.pem`,
      keyFile: `${dir}/key.pem`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(await echo(server.port, "z"), "z");
});

Deno.test("TlsListener.setCredentials() checks everything first: a bad input throws and changes nothing", async () => {
  await using server = await echoServer();
  const set = (credentials: unknown) =>
    server.listener.setCredentials(
      credentials as Parameters<typeof server.listener.setCredentials>[0],
    );
  // deno-lint-ignore no-explicit-any
  const cases: [unknown, new (...args: any[]) => Error, RegExp][] = [
    [
      null,
      TypeError,
      /^Cannot set the TLS credentials: expected a credentials object .*got null$/,
    ],
    [
      {},
      TypeError,
      /^Cannot set the TLS credentials: no credentials given; pass `cert`\/`key`/,
    ],
    [
      { cert: untrusted.cert },
      TypeError,
      /a certificate and its private key are required/,
    ],
    [
      { cert: "cert.pem", key: untrusted.key },
      TypeError,
      /`cert` must be PEM text/,
    ],
    [
      { cert: untrusted.cert, key: servers[1].key },
      TlsError,
      /^Cannot set the TLS credentials: the private key in `key` does not belong to the certificate in `cert`/,
    ],
    [
      { clientCa: newClientCa.cert },
      TypeError,
      /the listener was opened without `clientCa`, so it asks for no client certificate; open a new listener with `clientCa`/,
    ],
    [
      // A good certificate with a bad SNI entry: nothing of it applies.
      {
        cert: untrusted.cert,
        key: untrusted.key,
        sni: { "a..test": untrusted },
      },
      TypeError,
      /`sni` name "a\.\.test" is not a DNS name/,
    ],
    [
      { keyFile: "/nonexistent/key.pem", cert: untrusted.cert },
      Deno.errors.NotFound,
      /does not exist/,
    ],
  ];
  for (const [input, type, message] of cases) {
    await assert.rejects(set(input), (error: Error) => {
      assert.ok(error instanceof type, `${error}`);
      assert.match(error.message, message);
      return true;
    });
    // Still the first certificate, from the CA the client trusts.
    assert.equal(await echo(server.port, "ok"), "ok");
  }
  server.listener.close();
  await assert.rejects(
    set({ cert: servers[1].cert, key: servers[1].key }),
    (error) =>
      error instanceof Deno.errors.BadResource &&
      /^Cannot set the TLS credentials: the listener is closed/.test(
        error.message,
      ),
  );
});

Deno.test("TlsListener.setCredentials() applies calls in call order", async () => {
  await using server = await echoServer();
  await Promise.all([
    server.listener.setCredentials({
      cert: untrusted.cert,
      key: untrusted.key,
    }),
    server.listener.setCredentials({
      cert: servers[1].cert,
      key: servers[1].key,
    }),
    server.listener.setCredentials({ cert: "bad", key: "bad" }).catch(() => {}),
  ]);
  assert.equal(await echo(server.port, "last"), "last");
});

const openssl = { label: "openssl", path: findTool("openssl") };

peerTest(
  "TlsListener.setCredentials() adds and removes SNI names at run time (openssl s_client)",
  openssl,
  async (path) => {
    const dir = await Deno.makeTempDir({ prefix: "connauth-rotate-" });
    try {
      const caFile = `${dir}/ca.pem`;
      await Deno.writeTextFile(caFile, serverCa.cert);
      const a = await issueCertificate(serverCa, {
        commonName: "a.test",
        names: ["a.test"],
        includeLocalhost: false,
      });
      await using server = await echoServer();
      const subject = (name: string) =>
        opensslSubject(path, server.port, caFile, ["-servername", name]);
      assert.equal(await subject("a.test"), "CN = server-0");
      await server.listener.setCredentials({ sni: { "a.test": a } });
      assert.equal(await subject("a.test"), "CN = a.test");
      assert.equal(await subject("b.test"), "CN = server-0");
      // A new default keeps the SNI map.
      await server.listener.setCredentials(servers[1]);
      assert.equal(await subject("a.test"), "CN = a.test");
      assert.equal(await subject("b.test"), "CN = server-1");
      await server.listener.setCredentials({ sni: {} });
      assert.equal(await subject("a.test"), "CN = server-1");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
