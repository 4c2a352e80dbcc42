import assert from "node:assert/strict";
import {
  connectTls,
  listenTls,
  type ListenTlsOptions,
  type PeerIdentity,
  TlsError,
  type TlsFailure,
  type TlsListener,
  type TlsServerConn,
} from "../tls.ts";
import { type Refusal, refusal } from "./_tls_refusal.ts";
import { serve } from "../server.ts";
import {
  type CertificateAndKey,
  generateCertificates,
  issueCertificate,
} from "../certs.ts";
import { clientAuthenticate, serverAuthenticate } from "../handshake.ts";
import { ProtocolError } from "../errors.ts";
import { readExact, writeAll } from "../_conn_io.ts";
import { utf8 } from "../_bytes.ts";
import { certificateNames } from "../_tls_identity.ts";
import { allowed } from "../_tls_allow.ts";
import * as asn1 from "../_asn1.ts";
import {
  type CommandResult,
  findPython,
  findTool,
  interopScript,
  lines,
  peerTest,
  runCommand,
  type RunningExample,
  spawn,
  startExample,
} from "./_helpers.ts";

// ---------------------------------------------------------------------------
// Fixtures: one development set from certs.ts, a second CA, and the odd
// certificates people actually run into. Files live in a temp dir that is
// removed when the test module unloads.

const dir = await Deno.makeTempDir({ prefix: "connauth-tls-" });
addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // already gone
  }
});

const set = await generateCertificates({ clients: ["alice", "bob"] });
const other = await generateCertificates({ clients: ["mallory"] });
const PAST = {
  notBefore: new Date("2020-01-01"),
  notAfter: new Date("2020-02-01"),
};
const expiredServer = await issueCertificate(set.ca, {
  usage: "server",
  ...PAST,
});
const expiredClient = await issueCertificate(set.ca, {
  usage: "client",
  commonName: "old-client",
  ...PAST,
});
const wrongName = await issueCertificate(set.ca, {
  usage: "server",
  commonName: "example.test",
  includeLocalhost: false,
  names: ["example.test"],
});
const alice = set.clients.alice;
const bob = set.clients.bob;
const mallory = other.clients.mallory;

function file(name: string, contents: string): string {
  const path = `${dir}/${name}`;
  Deno.writeTextFileSync(path, contents);
  return path;
}
const files = {
  ca: file("ca.pem", set.ca.cert),
  caKey: file("ca-key.pem", set.ca.key),
  serverCert: file("server.pem", set.server.cert),
  serverKey: file("server-key.pem", set.server.key),
  aliceCert: file("alice.pem", alice.cert),
  aliceKey: file("alice-key.pem", alice.key),
  malloryCert: file("mallory.pem", mallory.cert),
  malloryKey: file("mallory-key.pem", mallory.key),
  otherCa: file("other-ca.pem", other.ca.cert),
};

const OPENSSL = findTool("openssl");
const PYTHON = findPython("3.12") ?? findPython("3");
const opensslPeer = { label: "openssl", path: OPENSSL };
const pythonPeer = { label: "python3.12 (or python3)", path: PYTHON };

async function openssl(...args: string[]): Promise<string> {
  const out = await new Deno.Command(OPENSSL!, {
    args,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  if (!out.success) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/** What `openssl req -new -x509 -nodes` makes: self-signed, CA:TRUE. */
async function selfSignedCa(): Promise<CertificateAndKey> {
  const key = `${dir}/selfca-key.pem`;
  const cert = `${dir}/selfca.pem`;
  await openssl(
    "req",
    "-new",
    "-x509",
    "-nodes",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-keyout",
    key,
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-days",
    "10",
    "-out",
    cert,
  );
  return { cert: Deno.readTextFileSync(cert), key: Deno.readTextFileSync(key) };
}

/** An X.509 version-1 server certificate (no extensions) from our CA. */
async function version1(): Promise<CertificateAndKey> {
  const key = `${dir}/v1-key.pem`;
  const csr = `${dir}/v1.csr`;
  const cert = `${dir}/v1.pem`;
  await openssl(
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-subj",
    "/CN=localhost",
    "-out",
    csr,
  );
  await openssl(
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    files.ca,
    "-CAkey",
    files.caKey,
    "-set_serial",
    "7",
    "-days",
    "10",
    "-out",
    cert,
  );
  const text = await openssl("x509", "-in", cert, "-noout", "-text");
  assert.match(text, /Version: 1 \(0x0\)/);
  return { cert: Deno.readTextFileSync(cert), key: Deno.readTextFileSync(key) };
}

// ---------------------------------------------------------------------------
// Helpers

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Harness extends AsyncDisposable {
  listener: TlsListener;
  errors: Refusal[];
  identities: (PeerIdentity | null)[];
  port: number;
  /** Waits (bounded) until `count` refusals were reported. */
  waitErrors(count: number): Promise<Refusal[]>;
}

/** A listenTls echo server: each connection echoes until EOF. */
async function echoServer(
  options: Partial<ListenTlsOptions> = {},
  twice = false,
): Promise<Harness> {
  const errors: Refusal[] = [];
  const identities: (PeerIdentity | null)[] = [];
  const listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
    onError: (error, info) => errors.push(refusal(error, info)),
    ...options,
  });
  const tasks = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const conn of listener) {
      identities.push(conn.peerIdentity);
      const task = (async () => {
        const reader = conn.readable.getReader();
        const writer = conn.writable.getWriter();
        try {
          while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            await writer.write(value);
            // A second write right after the first: with Nagle on, this is
            // the write that waits ~40 ms for a delayed ACK.
            if (twice) await writer.write(value);
          }
        } catch {
          // the client went away
        } finally {
          reader.releaseLock();
          writer.releaseLock();
          conn.close();
        }
      })();
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })();
  return {
    listener,
    errors,
    identities,
    port: listener.addr.port,
    async waitErrors(count) {
      const until = Date.now() + 5000;
      while (errors.length < count && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.ok(
        errors.length >= count,
        `expected ${count} TLS error reports, got ${errors.length}`,
      );
      return errors;
    },
    async [Symbol.asyncDispose]() {
      await listener[Symbol.asyncDispose]();
      await loop;
      await Promise.all(tasks);
      // node:tls sockets finish closing on the next turns of the loop.
      await new Promise((resolve) => setTimeout(resolve, 20));
    },
  };
}

async function roundTrip(
  port: number,
  options: Partial<Parameters<typeof connectTls>[0]> = {},
  text = "hello",
): Promise<string> {
  using conn = await connectTls({
    hostname: "localhost",
    port,
    caCerts: [set.ca.cert],
    ...options,
  });
  await writeAll(conn.writable, utf8(text));
  const bytes = await readExact(conn.readable, text.length, undefined, "echo");
  return decoder.decode(bytes);
}

async function rejectsWith(
  promise: Promise<unknown>,
  reason: TlsFailure,
  pattern?: RegExp,
): Promise<TlsError> {
  let caught: TlsError | undefined;
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(
      error instanceof TlsError,
      `expected TlsError, got ${(error as Error)?.name}: ${
        (error as Error)?.message
      }`,
    );
    assert.equal(error.reason, reason, error.message);
    if (pattern) assert.match(error.message, pattern);
    assert.match(error.message, /^Cannot /);
    caught = error;
    return true;
  });
  return caught!;
}

// ---------------------------------------------------------------------------
// listenTls + connectTls

Deno.test("listenTls() echoes over plain TLS to connectTls()", async () => {
  await using server = await echoServer();
  assert.equal(server.listener.addr.hostname, "127.0.0.1");
  assert.equal(await roundTrip(server.port), "hello");
  assert.equal(
    await roundTrip(server.port, { hostname: "127.0.0.1" }),
    "hello",
  );
  assert.deepEqual(server.identities, [null, null]);
  assert.deepEqual(server.errors, []);
});

Deno.test("listenTls() reads cert and key from certFile/keyFile", async () => {
  await using server = await echoServer({
    cert: undefined,
    key: undefined,
    certFile: files.serverCert,
    keyFile: files.serverKey,
  });
  assert.equal(
    await roundTrip(server.port, { caCerts: undefined, caFile: files.ca }),
    "hello",
  );
});

Deno.test("listenTls() rejects unclear certificate options", async () => {
  await assert.rejects(listenTls({}), TypeError);
  await assert.rejects(
    listenTls({
      cert: set.server.cert,
      certFile: files.serverCert,
      key: set.server.key,
    }),
    /not both/,
  );
  await assert.rejects(
    listenTls({ cert: files.serverCert, key: set.server.key }),
    /must be PEM text.*certFile/,
  );
  await assert.rejects(
    listenTls({ certFile: `${dir}/missing.pem`, key: set.server.key }),
    Deno.errors.NotFound,
  );
  await assert.rejects(
    listenTls({
      cert: set.server.cert,
      key: set.server.key,
      requireClientCert: true,
    }),
    /clientCa/,
  );
  await assert.rejects(
    listenTls({
      cert: set.server.cert,
      key: set.server.key,
      allow: { cn: ["x"] },
    }),
    /allow.*clientCa/,
  );
});

Deno.test("listenTls() refuses at start a key that does not match the cert", async () => {
  const error = await rejectsWith(
    listenTls({ cert: set.server.cert, key: alice.key }),
    "key-mismatch",
    /does not belong to the certificate/,
  );
  assert.ok(!error.message.includes("PRIVATE KEY"));
});

Deno.test("listenTls() connections carry the HMAC handshake and BYOB reads", async () => {
  await using listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
  });
  const [server, client] = await Promise.all([
    listener.accept(),
    connectTls({
      hostname: "localhost",
      port: listener.addr.port,
      caCerts: [set.ca.cert],
    }),
  ]);
  try {
    await Promise.all([
      serverAuthenticate(server, "peanut butter"),
      clientAuthenticate(client, "peanut butter"),
    ]);
    // Bytes after the handshake stay for the application.
    await writeAll(client.writable, utf8("after"));
    assert.equal(
      decoder.decode(await readExact(server.readable, 5, undefined, "x")),
      "after",
    );
    assert.equal(server.remoteAddr.port, client.localAddr.port);
    assert.equal(server.localAddr.port, listener.addr.port);
    assert.equal(server.remoteAddr.hostname, "127.0.0.1");
  } finally {
    client.close();
    server.close();
  }
});

Deno.test("listenTls() echoes 8 MiB intact while both sides stream", async () => {
  await using server = await echoServer();
  using conn = await connectTls({
    hostname: "localhost",
    port: server.port,
    caCerts: [set.ca.cert],
  });
  const size = 8 * 1024 * 1024;
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 11)) & 0xff;
  const writing = (async () => {
    const writer = conn.writable.getWriter();
    for (let offset = 0; offset < size; offset += 65536) {
      await writer.write(data.subarray(offset, offset + 65536));
    }
    await writer.close();
  })();
  const got = await readExact(
    conn.readable,
    size,
    AbortSignal.timeout(20_000),
    "echo",
  );
  await writing;
  assert.ok(got.every((byte, i) => byte === data[i]));
});

Deno.test("listenTls() cuts off a client that floods past readBufferLimit", async () => {
  // node:tls in Deno 2.9.6 keeps reading while paused, so the limit, not
  // TCP backpressure, is what bounds memory.
  await using listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
    readBufferLimit: 1024 * 1024,
  });
  const [server, client] = await Promise.all([
    listener.accept(),
    connectTls({
      hostname: "localhost",
      port: listener.addr.port,
      caCerts: [set.ca.cert],
    }),
  ]);
  try {
    const chunk = new Uint8Array(256 * 1024);
    const writing = (async () => {
      const writer = client.writable.getWriter();
      for (let i = 0; i < 64; i++) await writer.write(chunk);
    })().then(() => null, (error) => error);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await assert.rejects(
      readExact(server.readable, 64 * chunk.byteLength, undefined, "flood"),
      (error: unknown) =>
        error instanceof ProtocolError && error.reason === "too-large" &&
        /readBufferLimit/.test(error.message),
    );
    assert.ok(
      await writing instanceof Error,
      "the flooding client was not cut off",
    );
  } finally {
    client.close();
    server.close();
  }
});

Deno.test("TlsListener.close() ends iteration and rejects pending accept()", async () => {
  const listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
  });
  const pending = listener.accept();
  listener.close();
  await assert.rejects(pending, Deno.errors.BadResource);
  await assert.rejects(listener.accept(), Deno.errors.BadResource);
  const seen = [];
  for await (const conn of listener) seen.push(conn);
  assert.equal(seen.length, 0);
  await listener[Symbol.asyncDispose]();
});

Deno.test("listenTls() closes on signal abort", async () => {
  const controller = new AbortController();
  const listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
    signal: controller.signal,
  });
  const pending = listener.accept();
  controller.abort();
  await assert.rejects(pending, Deno.errors.BadResource);
  await listener[Symbol.asyncDispose]();
});

Deno.test("listenTls() drops a client that stalls the handshake and keeps serving", async () => {
  await using server = await echoServer({ handshakeTimeout: 200 });
  using raw = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "handshake");
  assert.match(event.message, /within 200 ms/);
  assert.equal(await raw.read(new Uint8Array(16)), null);
  assert.equal(await roundTrip(server.port), "hello");
});

Deno.test("listenTls() with handshakeTimeout Infinity leaves a slow handshake open", async () => {
  // node:tls takes Infinity for 1 ms: every handshake was cut at once.
  await using server = await echoServer({ handshakeTimeout: Infinity });
  using raw = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(server.errors, []);
  assert.equal(await roundTrip(server.port), "hello");
  raw.close();
  const [event] = await server.waitErrors(1);
  assert.equal(
    event.message,
    "Cannot accept the TLS connection: the client closed the connection before completing the TLS handshake",
  );
});

Deno.test("listenTls() reports a garbage handshake and keeps serving", async () => {
  await using server = await echoServer();
  {
    using raw = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await raw.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await raw.read(new Uint8Array(64)).catch(() => null);
  }
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "handshake");
  assert.equal(await roundTrip(server.port), "hello");
});

/** Opens `count` TCP sockets that never send a byte, one after another. */
async function silentSockets(
  port: number,
  count: number,
): Promise<Deno.Conn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < count; i++) {
    conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    // Accepted in this order: the eviction order is the accept order.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return conns;
}

/** The local port of a TCP connection. */
function portOf(conn: Deno.Conn): number {
  return (conn.localAddr as Deno.NetAddr).port;
}

/** Whether the server closed `conn` within `ms` (EOF or reset). */
async function closedByServer(conn: Deno.Conn, ms = 3000): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      conn.read(new Uint8Array(16)).then((n) => n === null, () => true),
      new Promise<boolean>((resolve) => timer = setTimeout(resolve, ms, false)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("listenTls() past maxHandshakes closes the oldest handshake, never a connection past its handshake", async () => {
  await using server = await echoServer({
    ...mutual,
    maxHandshakes: 4,
    handshakeTimeout: 30_000,
  });
  // A verified connection, held: it is past its handshake.
  using held = await connectTls({
    hostname: "localhost",
    port: server.port,
    caCerts: [set.ca.cert],
    cert: alice.cert,
    key: alice.key,
  });
  await writeAll(held.writable, utf8("one"));
  await readExact(held.readable, 3, undefined, "echo");
  const silent = await silentSockets(server.port, 6);
  try {
    const events = await server.waitErrors(2);
    assert.deepEqual(events.map((event) => event.reason), [
      "evicted",
      "evicted",
    ]);
    // The two oldest, in accept order, and no other.
    assert.deepEqual(
      events.map((event) => event.remoteAddr?.port),
      silent.slice(0, 2).map(portOf),
    );
    assert.match(
      events[0].message,
      /^Cannot accept the TLS connection: closed in its TLS handshake after \d+ ms to make room: 127\.0\.0\.1 held 5 of the 4 connections in their handshake, the most of any address \(maxHandshakes 4\)$/,
    );
    assert.equal(events[0].identity, null);
    assert.ok(await closedByServer(silent[0]), "the oldest stayed open");
    assert.ok(await closedByServer(silent[1]), "the second stayed open");
    assert.equal(await closedByServer(silent[5], 200), false);
    // The held connection still echoes, and a new client gets in (it
    // evicts the oldest silent socket left).
    await writeAll(held.writable, utf8("two"));
    const echo = await readExact(held.readable, 3, undefined, "echo");
    assert.equal(decoder.decode(echo), "two");
    assert.equal(
      await roundTrip(server.port, { cert: alice.cert, key: alice.key }),
      "hello",
    );
    assert.equal(server.errors.length, 3);
    assert.equal(server.errors[2].remoteAddr?.port, portOf(silent[2]));
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("listenTls() closes a handshake past maxPerAddress at once", async () => {
  await using server = await echoServer({
    maxPerAddress: 3,
    handshakeTimeout: 30_000,
  });
  const silent = await silentSockets(server.port, 5);
  try {
    const events = await server.waitErrors(2);
    assert.deepEqual(events.map((event) => event.reason), [
      "max-per-address",
      "max-per-address",
    ]);
    // The newest, not the oldest.
    assert.deepEqual(
      events.map((event) => event.remoteAddr?.port),
      silent.slice(3).map(portOf),
    );
    assert.equal(
      events[0].message,
      "Cannot accept the TLS connection: 3 connections from 127.0.0.1 are in their TLS handshake already; this one was closed (maxPerAddress 3)",
    );
    assert.ok(await closedByServer(silent[3]));
    assert.equal(await closedByServer(silent[0], 200), false);
    // Once one handshake ends, the address may start another.
    const first = silent.shift()!;
    first.close();
    const [, , closed] = await server.waitErrors(3);
    assert.equal(closed.reason, "handshake");
    assert.equal(closed.remoteAddr?.port, portOf(first));
    assert.equal(await roundTrip(server.port), "hello");
    assert.equal(server.errors.length, 3);
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("listenTls() closes its handshakes under way when it closes, without a report", async () => {
  const server = await echoServer({ handshakeTimeout: 30_000 });
  const silent = await silentSockets(server.port, 3);
  try {
    await server[Symbol.asyncDispose]();
    for (const conn of silent) assert.ok(await closedByServer(conn));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(server.errors, []);
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("listenTls() and connectTls() check ports, limits and timeouts alike", async () => {
  const base = { cert: set.server.cert, key: set.server.key };
  for (
    const [option, value] of [
      ["port", 70000],
      ["port", -1],
      ["port", 1.5],
      ["readBufferLimit", 0],
      ["acceptQueue", 1.5],
      ["handshakeTimeout", 0],
      ["authorizeTimeout", -5],
    ] as const
  ) {
    await assert.rejects(
      listenTls({ ...base, [option]: value }),
      (error: Error) =>
        error instanceof RangeError &&
        error.message.startsWith(`Cannot use ${option}: expected `),
      `${option}: ${value}`,
    );
  }
  await assert.rejects(
    listenTls({ ...base, port: "443" as unknown as number }),
    TypeError,
  );
  await assert.rejects(connectTls({ port: 0 }), RangeError);
  await assert.rejects(
    connectTls({} as Parameters<typeof connectTls>[0]),
    /^TypeError: Cannot use port: expected a port number from 1 to 65535/,
  );
  await using listener = await listenTls({
    ...base,
    readBufferLimit: Infinity,
    acceptQueue: Infinity,
  });
  assert.ok(listener.addr.port > 0);
});

Deno.test("listenTls() onError names the phase of each refusal", async () => {
  await using server = await echoServer({
    ...mutual,
    allow: { cn: ["alice"] },
    maxPerAddress: 2,
    handshakeTimeout: 30_000,
  });
  {
    using raw = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await raw.write(encoder.encode("GET / HTTP/1.1\r\n\r\n"));
    await raw.read(new Uint8Array(64)).catch(() => null);
  }
  await server.waitErrors(1);
  await rejectsWith(
    roundTrip(server.port, { cert: mallory.cert, key: mallory.key }),
    "certificate-refused",
  );
  await server.waitErrors(2);
  await rejectsWith(
    roundTrip(server.port, { cert: bob.cert, key: bob.key }),
    "certificate-refused",
  );
  await server.waitErrors(3);
  const silent = await silentSockets(server.port, 3);
  try {
    await server.waitErrors(4);
  } finally {
    for (const conn of silent) conn.close();
  }
  assert.deepEqual(
    server.errors.slice(0, 4).map((event) => `${event.phase} ${event.reason}`),
    [
      "handshake handshake",
      "verify unknown-ca",
      "authorize not-allowed",
      "accept max-per-address",
    ],
  );
  assert.equal(server.errors[1].identity?.cn, "mallory");
  assert.equal(server.errors[2].identity?.cn, "bob");
  for (const event of server.errors) {
    assert.ok(event.error instanceof TlsError);
    assert.match(event.message, /^Cannot accept the TLS connection: /);
    assert.equal(event.remoteAddr?.hostname, "127.0.0.1");
  }
  assert.ok(server.errors[0].cause instanceof Error);
});

Deno.test("listenTls() checks maxHandshakes, maxPerAddress and ipv6Prefix", async () => {
  const base = { cert: set.server.cert, key: set.server.key };
  for (
    const [option, value] of [
      ["maxHandshakes", 0],
      ["maxHandshakes", 1.5],
      ["maxPerAddress", -1],
      ["ipv6Prefix", 0],
      ["ipv6Prefix", 129],
    ] as const
  ) {
    await assert.rejects(
      listenTls({ ...base, [option]: value }),
      RangeError,
      `${option}: ${value}`,
    );
  }
  await assert.rejects(
    listenTls({ ...base, maxHandshakes: "9" as unknown as number }),
    TypeError,
  );
  await using listener = await listenTls({
    ...base,
    maxHandshakes: Infinity,
    maxPerAddress: Infinity,
    ipv6Prefix: 128,
  });
  assert.ok(listener.addr.port > 0);
});

Deno.test("listenTls() survives a client that resets mid-stream", async () => {
  await using server = await echoServer();
  {
    const conn = await connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [set.ca.cert],
    });
    await writeAll(conn.writable, utf8("abc"));
    await readExact(conn.readable, 3, undefined, "echo");
    conn.close();
  }
  assert.equal(await roundTrip(server.port), "hello");
});

// ---------------------------------------------------------------------------
// Mutual TLS

const mutual = { clientCa: set.ca.cert };

Deno.test("listenTls() with clientCa accepts a verified client and reports its identity", async () => {
  await using server = await echoServer(mutual);
  assert.equal(
    await roundTrip(server.port, { cert: alice.cert, key: alice.key }),
    "hello",
  );
  const identity = server.identities[0]!;
  assert.equal(identity.cn, "alice");
  assert.equal(identity.subject, "CN = alice");
  assert.equal(identity.issuer, `CN = ${set.ca.commonName}`);
  assert.equal(identity.fingerprint256, alice.fingerprint);
  assert.equal(identity.serialNumber, alice.serialNumber);
  assert.equal(identity.validTo.getTime(), alice.notAfter.getTime());
  assert.equal(identity.validFrom.getTime(), alice.notBefore.getTime());
});

peerTest(
  "listenTls() peer identity equals what openssl x509 reports",
  opensslPeer,
  async () => {
    // A richer subject and SANs than certs.ts makes: an openssl-issued cert.
    const key = `${dir}/rich-key.pem`;
    const csr = `${dir}/rich.csr`;
    const ext = file(
      "rich.ext",
      "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
        "extendedKeyUsage=clientAuth\n" +
        "subjectAltName=DNS:carol.example,IP:10.0.0.5,IP:fd00::5,IP:2001:db8::ab:1,email:carol@example.com\n",
    );
    const certPath = `${dir}/rich.pem`;
    await openssl(
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-utf8",
      "-subj",
      // A comma, a plus sign, quotes and non-ASCII, which openssl escapes.
      '/C=DE/O=Acme, Inc./OU=R\\+D "Ünits"/CN=carol',
      "-out",
      csr,
    );
    await openssl(
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      files.ca,
      "-CAkey",
      files.caKey,
      "-set_serial",
      "0x0abc1234ef",
      "-days",
      "5",
      "-extfile",
      ext,
      "-out",
      certPath,
    );
    await using server = await echoServer(mutual);
    assert.equal(
      await roundTrip(server.port, { certFile: certPath, keyFile: key }),
      "hello",
    );
    const identity = server.identities[0]!;
    const report = await openssl(
      "x509",
      "-in",
      certPath,
      "-noout",
      "-subject",
      "-issuer",
      "-fingerprint",
      "-sha256",
      "-serial",
      "-dates",
      "-ext",
      "subjectAltName",
    );
    const field = (name: string) =>
      new RegExp(`^${name}=(.*)$`, "m").exec(report)![1];
    assert.equal(identity.subject, field("subject"));
    assert.match(
      identity.subject,
      /O = "Acme, Inc\.", OU = "R\+D \\"\\C3\\9Cnits\\""/,
    );
    assert.equal(identity.issuer, field("issuer"));
    assert.equal(identity.fingerprint256, field("sha256 Fingerprint"));
    assert.equal(identity.serialNumber, field("serial"));
    assert.equal(
      identity.validFrom.getTime(),
      new Date(field("notBefore")).getTime(),
    );
    assert.equal(
      identity.validTo.getTime(),
      new Date(field("notAfter")).getTime(),
    );
    const sanLine = report.split("\n").at(
      report.split("\n").findIndex((line) =>
        line.includes("Subject Alternative Name")
      ) + 1,
    )!.trim();
    assert.deepEqual(identity.san, sanLine.split(", "));
    assert.ok(identity.san.includes("IP Address:FD00:0:0:0:0:0:0:5"));
    assert.equal(identity.cn, "carol");
  },
);

// Certificates with awkward names, built from DER (only their printing is
// compared, so the signature is a dummy).
const spki = new Uint8Array(
  await crypto.subtle.exportKey(
    "spki",
    (await crypto.subtle.generateKey(
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["sign"],
    )).publicKey,
  ),
);
type Attribute = [oid: string, tag: number, value: Uint8Array];
function nameDer(rdns: Attribute[][]): Uint8Array {
  return asn1.sequence(
    ...rdns.map((rdn) =>
      asn1.set(
        ...rdn.map(([id, tag, value]) =>
          asn1.sequence(asn1.oid(id), asn1.tlv(tag, value))
        ),
      )
    ),
  );
}
function craftedDer(subject: Uint8Array, sans: Uint8Array[]): Uint8Array {
  const algorithm = asn1.sequence(asn1.oid("1.2.840.10045.4.3.2"));
  const extensions = sans.length === 0 ? [] : [
    asn1.explicit(
      3,
      asn1.sequence(
        asn1.sequence(
          asn1.oid("2.5.29.17"),
          asn1.octetString(asn1.sequence(...sans)),
        ),
      ),
    ),
  ];
  return asn1.sequence(
    asn1.sequence(
      asn1.explicit(0, asn1.smallInteger(2)),
      asn1.smallInteger(5),
      algorithm,
      nameDer([[["2.5.4.3", 0x0c, utf8("Issuer, Inc.")]]]),
      asn1.sequence(
        asn1.time(new Date("2024-01-01")),
        asn1.time(new Date("2034-01-01")),
      ),
      subject,
      spki,
      ...extensions,
    ),
    algorithm,
    asn1.bitString(asn1.sequence(asn1.smallInteger(1), asn1.smallInteger(1))),
  );
}
function pem(der: Uint8Array): string {
  return `-----BEGIN CERTIFICATE-----\n${
    btoa(String.fromCharCode(...der)).match(/.{1,64}/g)!.join("\n")
  }\n-----END CERTIFICATE-----\n`;
}

peerTest(
  "PeerIdentity subject, issuer and SANs match openssl x509 for awkward values",
  opensslPeer,
  async () => {
    const latin1 = (text: string) =>
      Uint8Array.from(text, (char) => char.charCodeAt(0));
    const ucs2 = (text: string) =>
      Uint8Array.from(
        [...text].flatMap((char) => [
          char.charCodeAt(0) >> 8,
          char.charCodeAt(0) & 0xff,
        ]),
      );
    const ucs4 = (text: string) =>
      Uint8Array.from(
        [...text].flatMap((char) => {
          const code = char.codePointAt(0)!;
          return [
            code >>> 24,
            (code >> 16) & 255,
            (code >> 8) & 255,
            code & 255,
          ];
        }),
      );
    const CN = "2.5.4.3";
    const subjects: Attribute[][][] = [
      [
        [[CN, 0x0c, utf8("a, b+c/é")]],
        [["2.5.4.10", 0x0c, utf8('x+y=z;q"w<>#')]],
        [["2.5.4.11", 0x0c, utf8("a")], ["2.5.4.11", 0x0c, utf8("b")]],
        [["2.5.4.7", 0x0c, utf8(" lead")]],
      ],
      [
        [[CN, 0x0c, utf8("#hash")]],
        [[CN, 0x0c, utf8("#")]],
        [[CN, 0x0c, utf8(" ")]],
        [[CN, 0x0c, utf8("")]],
        [[CN, 0x0c, utf8("trail ")]],
        [[CN, 0x0c, utf8("mid dle")]],
        [[CN, 0x0c, utf8("back\\slash")]],
        [[CN, 0x0c, utf8("ctl\x01\n\x1b[31m\x7f")]],
        [[CN, 0x0c, utf8("nul\0x")]],
      ],
      [
        [["2.5.4.6", 0x13, utf8("DE")]],
        [[CN, 0x14, latin1("t61 é")]],
        [[CN, 0x1e, ucs2("bmp €é")]],
        [[CN, 0x1c, ucs4("uni 😀")]],
        [[CN, 0x16, latin1("ia5 é")]],
        [["1.2.840.113549.1.9.1", 0x16, utf8("a@b.test")]],
        [["0.9.2342.19200300.100.1.25", 0x16, utf8("example")]],
        [["1.2.3.4.5", 0x0c, utf8("unknown, oid")]],
        [[CN, 0x03, Uint8Array.of(0, 0x41)]],
        [["2.5.4.5", 0x13, utf8("1234")]],
        [["2.5.4.42", 0x0c, utf8("given")]],
        [["2.5.4.97", 0x0c, utf8("org")]],
      ],
    ];
    const sans = [
      asn1.implicit(2, utf8("dns.test")),
      asn1.implicit(7, Uint8Array.of(10, 0, 0, 5)),
      asn1.implicit(
        7,
        Uint8Array.of(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5),
      ),
      asn1.implicit(1, utf8("e@x.test")),
      asn1.implicit(6, utf8("https://x.test/a, b")),
      asn1.implicit(8, asn1.oid("1.2.3.4").subarray(2)),
      asn1.explicit(
        4,
        nameDer([[[CN, 0x0c, utf8("dir/+é")]], [
          ["2.5.4.10", 0x13, utf8("O")],
          ["2.5.4.11", 0x13, utf8("U")],
        ]]),
      ),
      asn1.tlv(
        0xa0,
        asn1.oid("1.3.6.1.4.1.311.20.2.3"),
        asn1.explicit(0, asn1.utf8String("upn@x.test")),
      ),
      asn1.tlv(
        0xa0,
        asn1.oid("1.2.3.9"),
        asn1.explicit(0, asn1.tlv(0x16, utf8("other"))),
      ),
      asn1.tlv(
        0xa0,
        asn1.oid("1.2.3.9"),
        asn1.explicit(0, asn1.tlv(0x13, utf8("printable"))),
      ),
    ];
    for (const [i, rdns] of subjects.entries()) {
      const der = craftedDer(nameDer(rdns), sans);
      const path = file(`awkward-${i}.pem`, pem(der));
      const report = await openssl(
        "x509",
        "-in",
        path,
        "-noout",
        "-subject",
        "-issuer",
        "-ext",
        "subjectAltName",
      );
      const lines = report.split("\n");
      const field = (name: string) =>
        lines.find((line) => line.startsWith(`${name}=`))!.slice(
          name.length + 1,
        );
      const names = certificateNames(der);
      assert.equal(names.subject, field("subject"), `subject ${i}`);
      assert.equal(names.issuer, field("issuer"), `issuer ${i}`);
      const sanLine = lines[
        lines.findIndex((line) => line.startsWith("X509v3 Subject Alt")) + 1
      ];
      assert.equal(names.san.join(", "), sanLine.trim(), `SANs ${i}`);
    }
    const names = certificateNames(craftedDer(nameDer(subjects[0]), []));
    // The CN itself is the value, unescaped, for allow lists.
    assert.equal(names.cn, "a, b+c/é");
    assert.deepEqual(names.san, []);
    // openssl prints a 3-byte IP address as "<invalid length=3>"; that is
    // no identity, and the reader refuses it.
    assert.throws(
      () =>
        certificateNames(
          craftedDer(nameDer(subjects[0]), [
            asn1.implicit(7, Uint8Array.of(1, 2, 3)),
          ]),
        ),
      /Cannot read the certificate: an IP address name that is not 4 or 16 bytes/,
    );
  },
);

Deno.test("listenTls() refuses a client without a certificate, logs why, keeps serving", async () => {
  await using server = await echoServer(mutual);
  // Our client sent no certificate: the bare close right after the
  // handshake becomes "certificate-required".
  await rejectsWith(
    roundTrip(server.port),
    "certificate-required",
    /pass `cert` and `key`/,
  );
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "no-certificate");
  assert.equal(event.identity, null);
  assert.equal(event.remoteAddr?.hostname, "127.0.0.1");
  assert.equal(
    await roundTrip(server.port, { cert: alice.cert, key: alice.key }),
    "hello",
  );
});

Deno.test("listenTls() refuses a client certificate from an unknown CA", async () => {
  await using server = await echoServer(mutual);
  await rejectsWith(
    roundTrip(server.port, { cert: mallory.cert, key: mallory.key }),
    "certificate-refused",
    /refused our client certificate/,
  );
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "unknown-ca");
  assert.match(event.message, /mallory.*not one of the client CAs/);
  assert.equal(event.identity?.cn, "mallory");
  assert.equal(
    await roundTrip(server.port, { cert: bob.cert, key: bob.key }),
    "hello",
  );
});

/** Writes until a write fails (bounded), as a client that talks first. */
async function writeUntilError(
  conn: { writable: WritableStream<Uint8Array> },
): Promise<unknown> {
  const writer = conn.writable.getWriter();
  try {
    for (let i = 0; i < 400; i++) {
      await writer.write(new Uint8Array(1024));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } catch (error) {
    return error;
  } finally {
    writer.releaseLock();
  }
  assert.fail("no write failed within 2 s");
}

Deno.test("connectTls() names the refusal on the first write when the client talks first", async () => {
  await using server = await echoServer(mutual);
  for (
    const [client, reason] of [
      [mallory, "certificate-refused"],
      [null, "certificate-required"],
    ] as const
  ) {
    using conn = await connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [set.ca.cert],
      ...(client ? { cert: client.cert, key: client.key } : {}),
    });
    const error = await writeUntilError(conn);
    assert.ok(
      error instanceof TlsError,
      `expected TlsError, got ${(error as Error)?.name}: ${
        (error as Error)?.message
      }`,
    );
    assert.equal(error.reason, reason, error.message);
    assert.match(error.message, /^Cannot use the TLS connection to localhost:/);
  }
  const events = await server.waitErrors(2);
  assert.deepEqual(events.map((event) => event.reason), [
    "unknown-ca",
    "no-certificate",
  ]);
  // A server that closes cleanly (close_notify) is not a refusal: the write
  // error stays Deno's own.
  await using plain = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
  });
  const closing = (async () => {
    const conn = await plain.accept();
    conn.close();
  })();
  using conn = await connectTls({
    hostname: "localhost",
    port: plain.addr.port,
    caCerts: [set.ca.cert],
    cert: alice.cert,
    key: alice.key,
  });
  await closing;
  const error = await writeUntilError(conn);
  assert.ok(
    error instanceof Deno.errors.BrokenPipe ||
      error instanceof Deno.errors.ConnectionReset,
    `expected Deno's write error, got ${(error as Error)?.name}`,
  );
  assert.equal(
    await readExact(conn.readable, 1, undefined, "reply").catch((e) => e.name),
    "ProtocolError",
  );
});

Deno.test("listenTls() refuses a server certificate used as a client certificate", async () => {
  await using server = await echoServer(mutual);
  await rejectsWith(
    roundTrip(server.port, { cert: set.server.cert, key: set.server.key }),
    "certificate-refused",
  );
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "wrong-key-usage");
  assert.match(event.message, /clientAuth/);
});

Deno.test("listenTls() refuses an expired client certificate", async () => {
  await using server = await echoServer(mutual);
  await rejectsWith(
    roundTrip(server.port, {
      cert: expiredClient.cert,
      key: expiredClient.key,
    }),
    "certificate-refused",
  );
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "expired");
  assert.match(event.message, /expired on 2020-02-01/);
});

Deno.test("listenTls() without onError logs one line to stderr without secrets", async () => {
  const logged: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    const listener = await listenTls({
      cert: set.server.cert,
      key: set.server.key,
      ...mutual,
    });
    try {
      await rejectsWith(
        roundTrip(listener.addr.port, { cert: mallory.cert, key: mallory.key }),
        "certificate-refused",
      );
      const until = Date.now() + 5000;
      while (logged.length === 0 && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } finally {
      await listener[Symbol.asyncDispose]();
    }
  } finally {
    console.error = original;
  }
  assert.equal(logged.length, 1);
  const line = String(logged[0][0]);
  assert.match(
    line,
    /^connauth tls: refused 127\.0\.0\.1:\d+ \(unknown-ca\): /,
  );
  assert.ok(!line.includes("PRIVATE"));
});

Deno.test("listenTls() without onError prints at most 20 lines a second and sums up the rest", async () => {
  const logged: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) =>
    logged.push(args.map(String).join(" "));
  const FLOOD = 60;
  const silent: Deno.Conn[] = [];
  let elapsed = 0;
  try {
    const listener = await listenTls({
      cert: set.server.cert,
      key: set.server.key,
      maxPerAddress: 1,
      handshakeTimeout: 30_000,
    });
    try {
      const started = Date.now();
      silent.push(
        await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      );
      // Each one more is refused (max-per-address) at once.
      for (let i = 0; i < FLOOD; i++) {
        silent.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port: listener.addr.port,
          }),
        );
      }
      for (const conn of silent.slice(1)) {
        assert.ok(await closedByServer(conn), "a refused socket stayed open");
      }
      elapsed = Date.now() - started;
    } finally {
      await listener[Symbol.asyncDispose]();
    }
  } finally {
    console.error = original;
    for (const conn of silent) conn.close();
  }
  for (const line of logged) assert.match(line, /^connauth tls: /);
  const refusals = logged.filter((line) =>
    /^connauth tls: refused 127\.0\.0\.1:\d+ \(max-per-address\): /.test(line)
  );
  const summaries = logged.filter((line) =>
    /^connauth tls: \d+ more lines suppressed \(over 20 a second\)/.test(line)
  );
  assert.equal(refusals.length + summaries.length, logged.length);
  // At most 20 a second; the rest summed up, the last sum when it closed.
  assert.ok(
    refusals.length <= 20 * (Math.floor(elapsed / 1000) + 1),
    `${refusals.length} lines in ${elapsed} ms`,
  );
  assert.ok(summaries.length >= 1, "no summary line");
  assert.match(logged.at(-1)!, /more lines suppressed/);
  const suppressed = summaries.reduce(
    (sum, line) => sum + Number(/: (\d+) more/.exec(line)![1]),
    0,
  );
  assert.equal(refusals.length + suppressed, FLOOD);
});

Deno.test("listenTls() allow list accepts by CN, SAN and fingerprint only", async () => {
  for (
    const allow of [
      { cn: ["alice"] },
      { fingerprint: [alice.fingerprint.replaceAll(":", "").toLowerCase()] },
    ]
  ) {
    await using server = await echoServer({ ...mutual, allow });
    assert.equal(
      await roundTrip(server.port, { cert: alice.cert, key: alice.key }),
      "hello",
    );
    await rejectsWith(
      roundTrip(server.port, { cert: bob.cert, key: bob.key }),
      "certificate-refused",
    );
    const [event] = await server.waitErrors(1);
    assert.equal(event.reason, "not-allowed");
    assert.equal(event.identity?.cn, "bob");
  }
  // SAN: the server certificate has DNS:localhost; issue a client with a SAN.
  const carol = await issueCertificate(set.ca, {
    usage: "client",
    commonName: "carol",
    names: ["carol.example", "10.1.2.3"],
  });
  for (
    const san of [
      "DNS:carol.example",
      "carol.example",
      "IP:10.1.2.3",
      "IP Address:10.1.2.3",
    ]
  ) {
    await using server = await echoServer({ ...mutual, allow: { san: [san] } });
    assert.equal(
      await roundTrip(server.port, { cert: carol.cert, key: carol.key }),
      "hello",
      san,
    );
    await rejectsWith(
      roundTrip(server.port, { cert: alice.cert, key: alice.key }),
      "certificate-refused",
    );
    assert.equal((await server.waitErrors(1))[0].reason, "not-allowed");
  }
  {
    await using server = await echoServer({
      ...mutual,
      allow: { san: ["DNS:10.1.2.3"] },
    });
    await rejectsWith(
      roundTrip(server.port, { cert: carol.cert, key: carol.key }),
      "certificate-refused",
    );
  }
  // IP SANs match by address, whatever the notation: as typed, as openssl
  // prints it, or as Node prints it.
  const dave = await issueCertificate(set.ca, {
    usage: "client",
    commonName: "dave",
    names: ["fd00::5"],
  });
  assert.deepEqual(dave.subjectAltNames, ["IP Address:FD00:0:0:0:0:0:0:5"]);
  const notations = [
    "IP:fd00::5",
    "IP Address:FD00:0:0:0:0:0:0:5",
    "fd00:0::0:5",
    "IP Address:fd00::5",
  ];
  await using server = await echoServer({
    ...mutual,
    allow: { san: [notations[0]] },
  });
  assert.equal(
    await roundTrip(server.port, { cert: dave.cert, key: dave.key }),
    "hello",
  );
  assert.deepEqual(server.identities[0]?.san, dave.subjectAltNames);
  const identity = server.identities[0]!;
  for (const san of notations) {
    assert.ok(allowed(identity, { san: [san] }), san);
  }
  for (const san of ["IP:fd00::6", "DNS:fd00::5", "IP:253.0.0.0"]) {
    assert.ok(!allowed(identity, { san: [san] }), san);
  }
});

Deno.test("allow.san compares DNS names without regard to case, other types exactly", () => {
  const identity = {
    cn: "alice",
    san: ["DNS:alice.test", "email:Alice@example.test"],
    fingerprint256: "AB:CD",
  } as unknown as PeerIdentity;
  for (const san of ["DNS:alice.test", "DNS:Alice.TEST", "dns:ALICE.test"]) {
    assert.ok(allowed(identity, { san: [san] }), san);
  }
  for (
    const san of ["DNS:bob.test", "DNS:alice.test.", "email:alice@example.test"]
  ) {
    assert.ok(!allowed(identity, { san: [san] }), san);
  }
  assert.ok(allowed(identity, { san: ["email:Alice@example.test"] }));
});

Deno.test("listenTls() authorize hook decides after verification", async () => {
  const seen: (string | undefined)[] = [];
  await using server = await echoServer({
    ...mutual,
    authorize: async (identity, remoteAddr) => {
      await Promise.resolve();
      assert.equal(remoteAddr.hostname, "127.0.0.1");
      seen.push(identity?.cn);
      if (identity?.cn === "bob") throw new Error("bob is on holiday");
      return identity?.cn === "alice";
    },
  });
  assert.equal(
    await roundTrip(server.port, { cert: alice.cert, key: alice.key }),
    "hello",
  );
  await rejectsWith(
    roundTrip(server.port, { cert: bob.cert, key: bob.key }),
    "certificate-refused",
  );
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "not-allowed");
  assert.match(event.message, /bob is on holiday/);
  // An unverified client never reaches the hook.
  await rejectsWith(
    roundTrip(server.port, { cert: mallory.cert, key: mallory.key }),
    "certificate-refused",
  );
  await server.waitErrors(2);
  assert.deepEqual(seen, ["alice", "bob"]);
});

Deno.test("listenTls() refuses a client whose authorize hook never answers, by authorizeTimeout", async () => {
  const signals: AbortSignal[] = [];
  await using server = await echoServer({
    ...mutual,
    handshakeTimeout: 60_000,
    authorizeTimeout: 300,
    authorize: (identity, _remoteAddr, signal) => {
      signals.push(signal);
      // alice is answered; everyone else waits forever.
      return identity?.cn === "alice" ? true : new Promise<boolean>(() => {});
    },
  });
  const started = Date.now();
  using conn = await connectTls({
    hostname: "localhost",
    port: server.port,
    caCerts: [set.ca.cert],
    cert: bob.cert,
    key: bob.key,
  });
  await rejectsWith(
    readExact(conn.readable, 1, AbortSignal.timeout(5000), "reply"),
    "certificate-refused",
  );
  assert.ok(Date.now() - started < 3000, "the deadline did not close it");
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "authorize-timeout");
  assert.equal(event.identity?.cn, "bob");
  assert.match(event.message, /did not answer within 300 ms.*authorizeTimeout/);
  assert.equal(signals[0].aborted, true);
  assert.equal((signals[0].reason as DOMException).name, "TimeoutError");
  // The listener keeps serving, and an answered hook's signal stays quiet.
  assert.equal(
    await roundTrip(server.port, { cert: alice.cert, key: alice.key }),
    "hello",
  );
  assert.equal(signals[1].aborted, false);
  await assert.rejects(
    listenTls({
      ...mutual,
      cert: set.server.cert,
      key: set.server.key,
      authorizeTimeout: 0,
    }),
    RangeError,
  );
});

Deno.test("listenTls() cuts off a client that floods while the authorize hook runs", async () => {
  let release!: (ok: boolean) => void;
  const answer = new Promise<boolean>((resolve) => release = resolve);
  const signals: AbortSignal[] = [];
  await using server = await echoServer({
    ...mutual,
    readBufferLimit: 1024 * 1024,
    authorize: (_identity, _remoteAddr, signal) => {
      signals.push(signal);
      return answer;
    },
  });
  try {
    using conn = await connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [set.ca.cert],
      cert: alice.cert,
      key: alice.key,
    });
    const chunk = new Uint8Array(64 * 1024);
    const writing = (async () => {
      const writer = conn.writable.getWriter();
      // 32 MiB at most: far past the limit, far short of the old 256 MiB.
      for (let i = 0; i < 512; i++) await writer.write(chunk);
    })().then(() => null, (error: unknown) => error);
    const [event] = await server.waitErrors(1);
    assert.equal(event.reason, "too-large");
    assert.match(
      event.message,
      /more than 1048576 bytes while the authorize hook ran/,
    );
    assert.ok(
      await writing instanceof Error,
      "the flooding client was not cut off",
    );
    assert.equal(signals[0].aborted, true);
  } finally {
    release(true);
  }
  assert.equal(server.identities.length, 0, "a refused client was delivered");
});

Deno.test("listenTls() counts connections waiting on the authorize hook against acceptQueue", async () => {
  let release!: (ok: boolean) => void;
  const answer = new Promise<boolean>((resolve) => release = resolve);
  let calls = 0;
  await using server = await echoServer({
    ...mutual,
    acceptQueue: 2,
    authorize: () => {
      calls++;
      return answer;
    },
  });
  const open = (client: CertificateAndKey) =>
    connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [set.ca.cert],
      cert: client.cert,
      key: client.key,
    });
  const waiting = [await open(alice), await open(alice)];
  const until = Date.now() + 5000;
  while (calls < 2 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  using third = await open(bob);
  await rejectsWith(
    readExact(third.readable, 1, AbortSignal.timeout(5000), "reply"),
    "certificate-refused",
  );
  const [event] = await server.waitErrors(1);
  assert.equal(event.reason, "queue-full");
  assert.equal(event.identity?.cn, "bob");
  assert.match(event.message, /waiting for the authorize hook/);
  assert.equal(calls, 2, "the hook ran for a client over the limit");
  // Once the hook answers, the two waiting clients are served.
  release(true);
  for (const conn of waiting) {
    await writeAll(conn.writable, utf8("hi"));
    assert.equal(
      decoder.decode(
        await readExact(conn.readable, 2, AbortSignal.timeout(5000), "echo"),
      ),
      "hi",
    );
    conn.close();
  }
});

Deno.test("listenTls() with requireClientCert false accepts no certificate, not a bad one", async () => {
  await using server = await echoServer({
    ...mutual,
    requireClientCert: false,
  });
  assert.equal(await roundTrip(server.port), "hello");
  assert.equal(
    await roundTrip(server.port, { cert: alice.cert, key: alice.key }),
    "hello",
  );
  assert.equal(server.identities[0], null);
  assert.equal(server.identities[1]?.cn, "alice");
  await rejectsWith(
    roundTrip(server.port, { cert: mallory.cert, key: mallory.key }),
    "certificate-refused",
  );
  assert.equal((await server.waitErrors(1))[0].reason, "unknown-ca");
});

// ---------------------------------------------------------------------------
// connectTls failures

Deno.test("connectTls() names an unknown CA", async () => {
  await using server = await echoServer();
  await rejectsWith(
    connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [other.ca.cert],
    }),
    "unknown-ca",
    /unknown certificate authority.*caCerts/,
  );
  // Deno's default roots do not know a development CA either.
  await rejectsWith(
    connectTls({ hostname: "localhost", port: server.port }),
    "unknown-ca",
    /Deno's default roots \(the Mozilla roots bundled with Deno, or the system's with DENO_TLS_CA_STORE=system\)/,
  );
});

Deno.test({
  name:
    "connectTls() trusts Deno's bundled Mozilla roots, the system's only with DENO_TLS_CA_STORE=system, and adds caCerts",
  // rustls-native-certs reads SSL_CERT_FILE as the system store on Linux.
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await using server = await echoServer();
    const attempt = async (env: Record<string, string>, caFile?: string) => {
      const code = `import { connectTls } from ${
        JSON.stringify(new URL("../tls.ts", import.meta.url).href)
      };
try {
  const conn = await connectTls({ hostname: "localhost", port: ${server.port}${
        caFile ? `, caFile: ${JSON.stringify(caFile)}` : ""
      } });
  conn.close();
  console.log("connected");
} catch (error) {
  console.log(error.reason ?? error.name);
}`;
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["eval", code],
        clearEnv: true,
        env: {
          PATH: Deno.env.get("PATH") ?? "",
          HOME: Deno.env.get("HOME") ?? "",
          ...(Deno.env.get("DENO_DIR")
            ? { DENO_DIR: Deno.env.get("DENO_DIR")! }
            : {}),
          // The "system" store, for rustls-native-certs: our development CA.
          SSL_CERT_FILE: files.ca,
          ...env,
        },
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      return decoder.decode(output.stdout).trim() ||
        decoder.decode(output.stderr).trim();
    };
    assert.equal(await attempt({}), "unknown-ca");
    assert.equal(await attempt({ DENO_TLS_CA_STORE: "mozilla" }), "unknown-ca");
    assert.equal(await attempt({ DENO_TLS_CA_STORE: "system" }), "connected");
    // caCerts (here another CA) add to the default roots, not replace them.
    assert.equal(
      await attempt({ DENO_TLS_CA_STORE: "system" }, files.otherCa),
      "connected",
    );
  },
});

Deno.test("connectTls() names a hostname mismatch", async () => {
  await using server = await echoServer({
    cert: wrongName.cert,
    key: wrongName.key,
  });
  await rejectsWith(
    connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [set.ca.cert],
    }),
    "hostname-mismatch",
    /not valid for "localhost"/,
  );
});

Deno.test("connectTls() names an expired server certificate", async () => {
  await using server = await echoServer({
    cert: expiredServer.cert,
    key: expiredServer.key,
  });
  await rejectsWith(
    connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [set.ca.cert],
    }),
    "expired",
    /has expired; renew it/,
  );
});

Deno.test("connectTls() names a server certificate that is not valid yet", async () => {
  const start = new Date(Date.now() + 86_400_000);
  const future = await issueCertificate(set.ca, {
    usage: "server",
    notBefore: start,
    days: 10,
  });
  await using server = await echoServer({
    cert: future.cert,
    key: future.key,
  });
  await rejectsWith(
    connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [set.ca.cert],
    }),
    "not-yet-valid",
    new RegExp(
      `not valid yet \\(it is valid from ${
        future.notBefore.toISOString().replace(".", "\\.")
      }\\); check the clocks`,
    ),
  );
});

peerTest(
  "connectTls() refuses a version-1 server certificate",
  opensslPeer,
  async () => {
    const v1 = await version1();
    await using server = await echoServer(v1);
    await rejectsWith(
      connectTls({
        hostname: "localhost",
        port: server.port,
        caCerts: [set.ca.cert],
      }),
      "version-1",
      /version 1.*version 3/,
    );
  },
);

peerTest(
  "connectTls() refuses a self-signed CA:TRUE server certificate",
  opensslPeer,
  async () => {
    const selfCa = await selfSignedCa();
    await using server = await echoServer(selfCa);
    await rejectsWith(
      connectTls({
        hostname: "localhost",
        port: server.port,
        caCerts: [selfCa.cert],
      }),
      "ca-as-leaf",
      /CA:TRUE.*openssl req -new -x509/,
    );
  },
);

Deno.test("connectTls() refuses a client key that does not match the cert", async () => {
  await rejectsWith(
    connectTls({ port: 1, cert: alice.cert, key: bob.key }),
    "key-mismatch",
    /does not belong to the certificate/,
  );
  await assert.rejects(
    connectTls({ port: 1, cert: alice.cert }),
    /needs its private key/,
  );
});

Deno.test("connectTls() times out on a server that never answers", async () => {
  using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) accepted.push(conn);
  })();
  await assert.rejects(
    connectTls({ port: silent.addr.port, timeout: 150 }),
    (error: unknown) =>
      error instanceof DOMException && error.name === "TimeoutError" &&
      /timed out after 150 ms/.test(error.message),
  );
  const controller = new AbortController();
  const pending = connectTls({
    port: silent.addr.port,
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(
    pending,
    (error: unknown) => (error as Error).name === "AbortError",
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  silent.close();
  await accepting;
  for (const conn of accepted) conn.close();
});

Deno.test("connectTls() reports a refused port as Deno's error", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  await assert.rejects(connectTls({ port }), Deno.errors.ConnectionRefused);
});

// ---------------------------------------------------------------------------
// Real peers: openssl s_client / s_server, Python ssl

async function sClient(
  port: number,
  extra: string[],
): Promise<{ out: string; echoed: boolean }> {
  const child = spawn(OPENSSL!, [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "localhost",
    "-CAfile",
    files.ca,
    "-verify_return_error",
    "-quiet",
    ...extra,
  ], { timeout: 15_000 });
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode("hello from openssl\n"));
  let echoed = false;
  let out = "";
  const stderr = new Response(child.stderr).text();
  for await (const line of lines(child.stdout)) {
    out += line + "\n";
    if (line === "hello from openssl") {
      echoed = true;
      break;
    }
  }
  await writer.close().catch(() => {});
  if (echoed) child.kill();
  await child.status;
  await child.stdout.cancel().catch(() => {});
  out += await stderr;
  return { out, echoed };
}

peerTest(
  "listenTls() serves openssl s_client with and without a client certificate",
  opensslPeer,
  async () => {
    {
      await using server = await echoServer();
      const result = await sClient(server.port, []);
      assert.ok(result.echoed, result.out);
    }
    await using server = await echoServer(mutual);
    const good = await sClient(server.port, [
      "-cert",
      files.aliceCert,
      "-key",
      files.aliceKey,
    ]);
    assert.ok(good.echoed, good.out);
    assert.equal(server.identities[0]?.cn, "alice");
    const none = await sClient(server.port, []);
    assert.ok(!none.echoed, none.out);
    const [event] = await server.waitErrors(1);
    assert.equal(event.reason, "no-certificate");
    const bad = await sClient(server.port, [
      "-cert",
      files.malloryCert,
      "-key",
      files.malloryKey,
    ]);
    assert.ok(!bad.echoed, bad.out);
    assert.equal((await server.waitErrors(2))[1].reason, "unknown-ca");
  },
);

async function python(args: string[]): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(PYTHON!, {
    args: [interopScript("tls_echo_peer.py"), ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  return {
    code: out.code,
    out: decoder.decode(out.stdout) + decoder.decode(out.stderr),
  };
}

peerTest(
  "listenTls() serves Python ssl clients with and without a client certificate",
  pythonPeer,
  async () => {
    {
      await using server = await echoServer();
      const result = await python([
        "client",
        String(server.port),
        "localhost",
        files.ca,
      ]);
      assert.equal(result.code, 0, result.out);
      assert.match(result.out, /^echo hello from python$/m);
    }
    await using server = await echoServer(mutual);
    const good = await python([
      "client",
      String(server.port),
      "localhost",
      files.ca,
      "--cert",
      files.aliceCert,
      "--key",
      files.aliceKey,
    ]);
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, /^echo hello from python$/m);
    assert.equal(server.identities[0]?.cn, "alice");
    const none = await python([
      "client",
      String(server.port),
      "localhost",
      files.ca,
    ]);
    assert.equal(none.code, 1, none.out);
    assert.match(none.out, /^error eof/m);
    assert.equal((await server.waitErrors(1))[0].reason, "no-certificate");
    const bad = await python([
      "client",
      String(server.port),
      "localhost",
      files.ca,
      "--cert",
      files.malloryCert,
      "--key",
      files.malloryKey,
    ]);
    assert.equal(bad.code, 1, bad.out);
    assert.equal((await server.waitErrors(2))[1].reason, "unknown-ca");
  },
);

peerTest(
  "listenTls() has no Nagle stall: p50 of 20 Python connect+echo round trips under 20 ms",
  pythonPeer,
  async () => {
    // The server writes each echo twice: with Nagle on, the second write waits
    // for the client's delayed ACK (~40 ms). Generous bound; typical p50 is a
    // few ms on loopback.
    await using server = await echoServer({}, true);
    const result = await python([
      "latency",
      String(server.port),
      "localhost",
      files.ca,
      "--count",
      "20",
    ]);
    assert.equal(result.code, 0, result.out);
    const p50 = Number(/^p50 ([\d.]+)$/m.exec(result.out)![1]);
    assert.ok(p50 < 20, `p50 ${p50} ms: Nagle stall? (${result.out.trim()})`);
  },
);

async function sServer(
  extra: string[],
): Promise<
  & { port: number; child: Deno.ChildProcess; output: Promise<string> }
  & AsyncDisposable
> {
  const child = spawn(OPENSSL!, [
    "s_server",
    "-accept",
    "127.0.0.1:0",
    "-cert",
    files.serverCert,
    "-key",
    files.serverKey,
    "-rev",
    "-naccept",
    "1",
    "-verify_return_error",
    ...extra,
  ], { timeout: 15_000 });
  const stdout = lines(child.stdout);
  let port = 0;
  for await (const line of stdout) {
    const match = /^ACCEPT .*:(\d+)$/.exec(line);
    if (match) {
      port = Number(match[1]);
      break;
    }
  }
  assert.ok(port > 0, "openssl s_server printed no port");
  const output = (async () => {
    let text = "";
    for await (const line of stdout) text += line + "\n";
    return text + await new Response(child.stderr).text();
  })();
  return {
    port,
    child,
    output,
    async [Symbol.asyncDispose]() {
      await child.stdin.close().catch(() => {});
      try {
        child.kill();
      } catch {
        // already exited
      }
      await child.status;
      await output;
    },
  };
}

async function reversed(
  port: number,
  options: Partial<Parameters<typeof connectTls>[0]> = {},
): Promise<string> {
  using conn = await connectTls({
    hostname: "localhost",
    port,
    caCerts: [set.ca.cert],
    ...options,
  });
  await writeAll(conn.writable, utf8("hello\n"));
  return decoder.decode(
    await readExact(conn.readable, 6, AbortSignal.timeout(10_000), "reply"),
  );
}

peerTest(
  "connectTls() talks to openssl s_server, plain and mutual",
  opensslPeer,
  async () => {
    {
      await using server = await sServer([]);
      assert.equal(await reversed(server.port), "olleh\n");
    }
    {
      await using server = await sServer(["-Verify", "1", "-CAfile", files.ca]);
      assert.equal(
        await reversed(server.port, { cert: alice.cert, key: alice.key }),
        "olleh\n",
      );
    }
    {
      // s_server sends an alert when we present no certificate.
      await using server = await sServer(["-Verify", "1", "-CAfile", files.ca]);
      await rejectsWith(
        reversed(server.port),
        "certificate-required",
      );
    }
    {
      await using server = await sServer(["-Verify", "1", "-CAfile", files.ca]);
      await rejectsWith(
        reversed(server.port, { cert: mallory.cert, key: mallory.key }),
        "certificate-refused",
        /alert/,
      );
    }
  },
);

async function pythonServer(
  extra: string[],
): Promise<{ port: number; output: Promise<string> } & AsyncDisposable> {
  const child = spawn(PYTHON!, [
    interopScript("tls_echo_peer.py"),
    "server",
    files.serverCert,
    files.serverKey,
    "--count",
    "1",
    ...extra,
  ], { timeout: 20_000 });
  const stdout = lines(child.stdout);
  const first = await stdout.next();
  const port = Number(/^port (\d+)$/.exec(String(first.value))?.[1]);
  assert.ok(port > 0, `python server printed ${first.value}`);
  const output = (async () => {
    let text = "";
    for await (const line of stdout) text += line + "\n";
    return text + await new Response(child.stderr).text();
  })();
  return {
    port,
    output,
    async [Symbol.asyncDispose]() {
      await child.stdin.close().catch(() => {});
      try {
        child.kill();
      } catch {
        // already exited
      }
      await child.status;
      await output;
    },
  };
}

peerTest(
  "connectTls() talks to a Python ssl server, plain and mutual",
  pythonPeer,
  async () => {
    {
      await using server = await pythonServer([]);
      assert.equal(await roundTrip(server.port), "hello");
    }
    {
      await using server = await pythonServer(["--ca", files.ca]);
      assert.equal(
        await roundTrip(server.port, { cert: alice.cert, key: alice.key }),
        "hello",
      );
    }
    {
      await using server = await pythonServer(["--ca", files.ca]);
      await rejectsWith(roundTrip(server.port), "certificate-required");
    }
    {
      await using server = await pythonServer(["--ca", files.ca]);
      await rejectsWith(
        roundTrip(server.port, { cert: mallory.cert, key: mallory.key }),
        "certificate-refused",
      );
      assert.match(
        await server.output,
        /error .*(unknown ca|certificate verify failed)/i,
      );
    }
  },
);

// ---------------------------------------------------------------------------
// serve() over TLS, and the examples end to end

Deno.test("serve() runs the HMAC handshake inside listenTls() connections", async () => {
  const failures: string[] = [];
  await using server = serve({
    listener: await listenTls({
      cert: set.server.cert,
      key: set.server.key,
      ...mutual,
    }),
    secret: "peanut butter",
    log: false,
    onAuthFailure: (info) => failures.push(info.error.reason),
  }, async (conn) => {
    // The handler gets the TLS connection with read() and write() added.
    const identity = (conn as unknown as TlsServerConn).peerIdentity;
    await writeAll(conn.writable, utf8(`hello ${identity?.cn}`));
  });
  const port = (server.addr as Deno.NetAddr).port;
  {
    using conn = await connectTls({
      hostname: "localhost",
      port,
      caCerts: [set.ca.cert],
      cert: alice.cert,
      key: alice.key,
    });
    await clientAuthenticate(conn, "peanut butter");
    const reply = await readExact(conn.readable, 11, undefined, "greeting");
    assert.equal(decoder.decode(reply), "hello alice");
  }
  {
    using conn = await connectTls({
      hostname: "localhost",
      port,
      caCerts: [set.ca.cert],
      cert: bob.cert,
      key: bob.key,
    });
    // The Cookbook client learns the verdict only from what follows: the
    // server closes instead of greeting.
    await clientAuthenticate(conn, "wrong key");
    await assert.rejects(readExact(conn.readable, 11, undefined, "greeting"));
  }
  const until = Date.now() + 5000;
  while (failures.length === 0 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.deepEqual(failures, ["wrong-key"]);
});

const EXAMPLES = new URL("../examples/", import.meta.url).pathname;

function startTlsExample(
  certs: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<RunningExample> {
  return startExample([
    "run",
    "--allow-net=127.0.0.1",
    `--allow-read=${certs}`,
    `--allow-write=${certs}`,
    "--allow-env=CONNAUTH_SECRET",
    `${EXAMPLES}tls_echo_server.ts`,
    "--port",
    "0",
    "--certs",
    certs,
    ...args,
  ], { env });
}

function runTlsClient(
  certs: string,
  port: number,
  args: string[],
  env: Record<string, string> = {},
): Promise<CommandResult> {
  return runCommand(Deno.execPath(), [
    "run",
    `--allow-net=localhost:${port}`,
    `--allow-read=${certs}`,
    "--allow-env=CONNAUTH_SECRET",
    `${EXAMPLES}tls_echo_client.ts`,
    "--port",
    String(port),
    "--certs",
    certs,
    ...args,
  ], { env, trim: true });
}

Deno.test("examples/tls_echo_server.ts and tls_echo_client.ts work end to end", async () => {
  const certs = `${dir}/example-certs`;
  {
    await using server = await startTlsExample(certs, []);
    assert.match(
      server.log.join("\n"),
      /notice: no certificates in .*wrote a development set/,
    );
    const ok = await runTlsClient(certs, server.port, ["Hello", "TLS"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "Hello TLS");
  }
  {
    await using server = await startTlsExample(certs, ["--mutual"]);
    assert.ok(
      !server.log.join("\n").includes("notice"),
      "certificates were reused",
    );
    const ok = await runTlsClient(certs, server.port, ["--mutual", "hi"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "hi");
    const none = await runTlsClient(certs, server.port, ["hi"]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /client certificate.*--mutual/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const log = server.log.join("\n");
    assert.match(log, /accept 127\.0\.0\.1:\d+ as "CN = client"/);
    assert.match(log, /refused 127\.0\.0\.1:\d+ \(no-certificate\)/);
  }
  {
    const env = { CONNAUTH_SECRET: "tls example key" };
    await using server = await startTlsExample(certs, ["--hmac"], env);
    const ok = await runTlsClient(certs, server.port, ["--hmac", "keyed"], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "keyed");
    const wrong = await runTlsClient(certs, server.port, ["--hmac", "x"], {
      CONNAUTH_SECRET: "wrong",
    });
    assert.equal(wrong.code, 1);
    assert.ok(!server.log.join("\n").includes("tls example key"));
  }
});

Deno.test("examples/tls_echo_server.ts and tls_echo_client.ts refuse a bad --timeout with exit 2", async () => {
  const certs = `${dir}/timeout-certs`;
  for (const bad of ["abc", "0", "-5"]) {
    const server = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        `--allow-read=${certs}`,
        `--allow-write=${certs}`,
        `${EXAMPLES}tls_echo_server.ts`,
        "--port",
        "0",
        "--certs",
        certs,
        `--timeout=${bad}`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    assert.equal(server.code, 2, decoder.decode(server.stderr));
    assert.match(
      decoder.decode(server.stderr),
      new RegExp(`Cannot use --timeout "${bad}": expected a number`),
    );
    // Checked before anything is written.
    await assert.rejects(Deno.stat(certs), Deno.errors.NotFound);
    const client = await runTlsClient(certs, 1, [`--timeout=${bad}`, "hi"]);
    assert.equal(client.code, 2, client.stderr);
    assert.match(client.stderr, /Cannot use --timeout/);
  }
});

peerTest(
  "bench/tls_compare.ts flags a row whose handshakes the server refused",
  opensslPeer,
  async () => {
    const bench = await import("../bench/tls_compare.ts");
    const benchDir = `${dir}/bench`;
    await Deno.mkdir(benchDir);
    const env = await bench.benchEnv(benchDir, {
      openssl: OPENSSL!,
      python: "python3",
      seconds: 1,
    });
    // s_time without a client certificate against a mutual-TLS server: it
    // counts every refused connection as a handshake done.
    const mutualServer = await bench.ourServer(env, true);
    try {
      const row = await bench.measureRow(
        env,
        { ...mutualServer, mutual: false },
        1,
        false,
      );
      assert.ok(row.handshakesPerSecond > 0, "s_time counted nothing");
      assert.ok(row.refused > 0, "the refusals were not counted");
      assert.ok(bench.flagged(row));
      assert.match(row.failures[0], /^no-certificate: /);
    } finally {
      await mutualServer.stop();
    }
    const plainServer = await bench.ourServer(env, false);
    try {
      const row = await bench.measureRow(env, plainServer, 1, false);
      assert.equal(row.refused, 0, row.failures.join("; "));
      assert.equal(row.failedRuns, 0, row.failures.join("; "));
      assert.ok(!bench.flagged(row));
    } finally {
      await plainServer.stop();
    }
    // A client run that fails (nothing listens) is a failed run, not 0.
    const row = await bench.measureRow(
      env,
      { ...plainServer, port: 1 },
      1,
      false,
    );
    assert.equal(row.failedRuns, 1);
    assert.match(row.failures[0], /^openssl s_time exited/);
  },
);

Deno.test("TlsListener disposal does not wait for accepted connections", async () => {
  const listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
  });
  const [server, client] = await Promise.all([
    listener.accept(),
    connectTls({
      hostname: "localhost",
      port: listener.addr.port,
      caCerts: [set.ca.cert],
    }),
  ]);
  await listener[Symbol.asyncDispose]();
  // The accepted connection still works after the listener is gone.
  await writeAll(client.writable, utf8("still here"));
  assert.equal(
    decoder.decode(await readExact(server.readable, 10, undefined, "x")),
    "still here",
  );
  await assert.rejects(
    connectTls({
      hostname: "localhost",
      port: listener.addr.port,
      caCerts: [set.ca.cert],
    }),
    Deno.errors.ConnectionRefused,
  );
  client.close();
  server.close();
  await new Promise((resolve) => setTimeout(resolve, 20));
});

Deno.test("listenTls() serves 16 concurrent verified clients among 8 refused ones", async () => {
  await using server = await echoServer(mutual);
  const results = await Promise.allSettled(
    Array.from(
      { length: 24 },
      (_, i) =>
        i % 3 === 2
          ? roundTrip(
            server.port,
            { cert: mallory.cert, key: mallory.key },
            `m${i}`,
          )
          : roundTrip(
            server.port,
            { cert: alice.cert, key: alice.key },
            `client ${i}`,
          ),
    ),
  );
  results.forEach((result, i) => {
    if (i % 3 === 2) {
      assert.equal(result.status, "rejected");
    } else {
      assert.deepEqual(result, { status: "fulfilled", value: `client ${i}` });
    }
  });
  const events = await server.waitErrors(8);
  assert.ok(events.every((event) => event.reason === "unknown-ca"));
});

Deno.test("listenTls() and connectTls() agree on an ALPN protocol", async () => {
  await using listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
    alpnProtocols: ["connauth/1", "http/1.1"],
  });
  const [server, client] = await Promise.all([
    listener.accept(),
    connectTls({
      hostname: "localhost",
      port: listener.addr.port,
      caCerts: [set.ca.cert],
      alpnProtocols: ["connauth/1"],
    }),
  ]);
  assert.equal(client.alpnProtocol, "connauth/1");
  assert.equal(server.alpnProtocol, "connauth/1");
  client.close();
  server.close();
  await new Promise((resolve) => setTimeout(resolve, 20));
});
