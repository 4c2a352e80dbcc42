// Tests for protocol mix-ups on the Cookbook handshake (issue 14): each side
// recognises what it can and says so, with the fix, instead of blaming the
// key or timing out bare. The server: a TLS client, a digest of another
// hash (a real Python 3.7 client on its MD5 default). The client: a TLS
// server (no challenge arrives), a server that closes at once, a TLS
// record where the challenge should be.
import assert from "node:assert/strict";
import { type AuthFailureInfo, connect, serve } from "../server.ts";
import { clientAuthenticate, serverAuthenticate } from "../handshake.ts";
import { AuthenticationError, ProtocolError } from "../errors.ts";
import { generateCertificates } from "../certs.ts";
import {
  duplexPair,
  findPython,
  interopScript,
  peerTest,
  spawn,
  tcpPair,
} from "./_helpers.ts";
import { captureStderr, waitFor } from "./_serve_helpers.ts";

const KEY = "peanut butter";

const set = await generateCertificates();

// ---------------------------------------------------------------------------
// The server side.

Deno.test("serve() calls a TLS client a TLS client, counts it once for the throttle, and logs the fix", async () => {
  const failures: AuthFailureInfo[] = [];
  const log = await captureStderr(async () => {
    await using server = serve(
      {
        port: 0,
        secret: KEY,
        onAuthFailure: (info) => failures.push(info),
      },
      (conn) => conn.close(),
    );
    const { port } = server.addr as Deno.NetAddr;
    const tls = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [set.ca.cert],
    });
    // Its handshake fails (our challenge is no ServerHello).
    await assert.rejects(tls.handshake());
    tls.close();
    await waitFor(() => failures.length === 1, "the failure");
  });
  assert.equal(failures[0].error.reason, "tls-client");
  assert.equal(failures[0].failures, 1);
  assert.equal(
    failures[0].error.message,
    "Cannot authenticate the client: it speaks TLS (a TLS ClientHello arrived where its digest was expected); connect without TLS, or serve with listenTls",
  );
  const line = log.find((l) => l.includes("authentication failed"));
  assert.match(
    line ?? "",
    /^connauth: 127\.0\.0\.1:\d+: authentication failed \(tls-client: it speaks TLS \(a TLS ClientHello arrived where its digest was expected\); connect without TLS, or serve with listenTls\); closing \(failure 1 from 127\.0\.0\.1; its next handshake waits 250 ms\)$/,
  );
});

Deno.test("serverAuthenticate() calls a TLS ClientHello a TLS client, on streams too", async () => {
  const hello = new Uint8Array(200);
  hello.set([0x16, 0x03, 0x01, 0x00, 0xc3, 0x01]);
  {
    using pair = await tcpPair();
    await pair.client.write(hello);
    await assert.rejects(serverAuthenticate(pair.server, KEY), {
      name: "AuthenticationError",
      reason: "tls-client",
    });
  }
  const [server, client] = duplexPair();
  const writer = client.writable.getWriter();
  await writer.write(hello);
  await assert.rejects(serverAuthenticate(server, KEY), {
    name: "AuthenticationError",
    reason: "tls-client",
  });
  await writer.close();
});

Deno.test("serverAuthenticate() names MD5 for 16 bytes that stop, within about a second, not at the deadline", async () => {
  using pair = await tcpPair();
  const reading = new Uint8Array(32);
  const client = (async () => {
    let got = 0;
    while (got < 32) got += (await pair.client.read(reading)) ?? 32;
    await pair.client.write(new Uint8Array(16));
  })();
  const started = performance.now();
  await assert.rejects(
    serverAuthenticate(pair.server, KEY, { timeout: 10_000 }),
    (error) =>
      error instanceof AuthenticationError && error.reason === "wrong-hash" &&
      error.message.startsWith(
        "Cannot authenticate the client: 16 bytes arrived, the length of an MD5 digest (SHA-256 needs 32), then nothing more for 1000 ms: Python before 3.8 defaults hmac.new to MD5",
      ),
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  await client;
});

/**
 * Connects, reads the 32-byte challenge and sends `count` zero bytes as a
 * reply, then waits (at most 5 s) for the server to close: the ms that
 * took from the reply, or null when it did not close.
 */
async function stallAt(port: number, count: number): Promise<number | null> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const challenge = new Uint8Array(32);
  for (let got = 0; got < 32;) {
    const n = await conn.read(challenge.subarray(got));
    if (n === null) return 0; // closed before the challenge: evicted
    got += n;
  }
  await conn.write(new Uint8Array(count));
  const sent = performance.now();
  const closed = conn.read(new Uint8Array(1)).catch(() => null);
  const timer = new Promise<"open">((resolve) => {
    const id = setTimeout(() => resolve("open"), 5000);
    closed.finally(() => clearTimeout(id));
  });
  return (await Promise.race([closed, timer])) === "open"
    ? null
    : performance.now() - sent;
}

Deno.test("serve() throttles a reply that stops at another hash's length like a wrong key: wrong-hash is no way around the pause", async () => {
  const failures: AuthFailureInfo[] = [];
  await using server = serve(
    {
      port: 0,
      secret: KEY,
      log: false,
      onAuthFailure: (info) => failures.push(info),
    },
    (conn) => conn.close(),
  );
  const { port } = server.addr as Deno.NetAddr;
  // 16 bytes (an MD5 digest's length), then 20 (SHA-1's), each with a
  // close; then a whole wrong digest, all from the same address.
  for (
    const [count, reason] of [[16, "wrong-hash"], [20, "wrong-hash"], [
      32,
      "wrong-key",
    ]] as const
  ) {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const challenge = new Uint8Array(32);
    for (let got = 0; got < 32;) {
      got += (await conn.read(challenge.subarray(got))) ?? 32;
    }
    await conn.write(new Uint8Array(count));
    await conn.closeWrite();
    const before = failures.length;
    await waitFor(() => failures.length === before + 1, `failure ${reason}`);
    assert.equal(failures.at(-1)!.error.reason, reason);
  }
  assert.deepEqual(failures.map((info) => info.failures), [1, 2, 3]);
  assert.ok(failures.every((info) => info.delay > 0));
});

Deno.test("serve() ends a reply stalled at 16 bytes at handshakeTimeout when that comes first: the short-reply wait never outlasts the deadline", async () => {
  const failures: AuthFailureInfo[] = [];
  const errors: unknown[] = [];
  await using server = serve(
    {
      port: 0,
      secret: KEY,
      log: false,
      handshakeTimeout: 300,
      onAuthFailure: (info) => failures.push(info),
      onError: (error) => errors.push(error),
    },
    (conn) => conn.close(),
  );
  const { port } = server.addr as Deno.NetAddr;
  const took = await stallAt(port, 16);
  assert.ok(took !== null && took < 900, `closed after ${took} ms`);
  await waitFor(() => errors.length === 1, "the timeout reported");
  assert.equal((errors[0] as Error).name, "TimeoutError");
  assert.equal(failures.length, 0);
});

Deno.test("serve() holds replies stalled at 16 bytes within maxHandshakes and ends each within about a second", async () => {
  const failures: AuthFailureInfo[] = [];
  await using server = serve(
    {
      port: 0,
      secret: KEY,
      log: false,
      maxHandshakes: 4,
      throttle: false,
      onAuthFailure: (info) => failures.push(info),
    },
    (conn) => conn.close(),
  );
  const { port } = server.addr as Deno.NetAddr;
  let most = 0;
  let sampling = true;
  const sampler = (async () => {
    for (let i = 0; i < 1000 && sampling; i++) {
      most = Math.max(most, server.stats.handshaking);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  const took = await Promise.all(
    Array.from({ length: 12 }, () => stallAt(port, 16)),
  );
  sampling = false;
  await sampler;
  for (const ms of took) assert.ok(ms !== null && ms < 3000, `${took}`);
  assert.ok(most <= 4, `${most} handshakes at once`);
  await waitFor(
    () => failures.length + server.stats.evicted === 12,
    "every stalled reply ended",
  );
  for (const info of failures) assert.equal(info.error.reason, "wrong-hash");
  using conn = await connect({ port, secret: KEY, timeout: 5000 });
  assert.equal(await conn.read(new Uint8Array(1)), null);
});

const python37 = { label: "Python 3.7 (pyenv 3.7.x)", path: findPython("3.7") };

/** Runs the recipe client on its hmac.new(key, msg) default. */
async function recipeDefault(python: string, port: number, message: string) {
  const child = spawn(python, [
    interopScript("cookbook_client.py"),
    "127.0.0.1",
    String(port),
    KEY,
    "default",
    message,
  ]);
  child.stdin.close();
  const output = await child.output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout).trim(),
  };
}

peerTest(
  "serve() tells a Python 3.7 recipe client on its MD5 default to pass digestmod, not that its key is wrong",
  python37,
  async (python) => {
    const failures: AuthFailureInfo[] = [];
    await using server = serve(
      {
        port: 0,
        secret: KEY,
        log: false,
        throttle: false,
        onAuthFailure: (info) => failures.push(info),
      },
      (conn) => conn.close(),
    );
    const { port } = server.addr as Deno.NetAddr;
    // No message after the digest: the client closes after its 16 bytes.
    assert.deepEqual(await recipeDefault(python, port, ""), {
      code: 3,
      stdout: "rejected",
    });
    await waitFor(() => failures.length === 1, "the first failure");
    assert.equal(failures[0].error.reason, "wrong-hash");
    assert.equal(
      failures[0].error.message,
      "Cannot authenticate the client: 16 bytes arrived, the length of an MD5 digest (SHA-256 needs 32), then the client closed the connection: Python before 3.8 defaults hmac.new to MD5; pass digestmod='sha256' or set hash: 'MD5'",
    );
    // "Hello World" right after the digest: 27 bytes, then it waits for
    // its echo. The server says so within about a second.
    const started = performance.now();
    assert.deepEqual(await recipeDefault(python, port, "Hello World"), {
      code: 3,
      stdout: "rejected",
    });
    assert.ok(performance.now() - started < 5000);
    await waitFor(() => failures.length === 2, "the second failure");
    assert.equal(failures[1].error.reason, "wrong-hash");
    assert.match(failures[1].error.message, /MD5: 16 bytes/);
    assert.match(failures[1].error.message, /digestmod='sha256'/);
  },
);

// ---------------------------------------------------------------------------
// The client side.

const HINT =
  "no challenge arrived; the server may expect TLS (use connectTls), or it refused or holds back this address (too many connections, or failed handshakes)";

Deno.test("connect() to a TLS server says that no challenge arrived and the server may expect TLS", async () => {
  using listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: set.server.cert,
    key: set.server.key,
  });
  const accepted = listener.accept();
  await assert.rejects(
    connect({ port: listener.addr.port, secret: KEY, timeout: 300 }),
    (error) =>
      error instanceof DOMException && error.name === "TimeoutError" &&
      error.message.endsWith(`waiting for the peer; ${HINT}`) &&
      !/key/.test(error.message.replace(HINT, "")),
  );
  (await accepted).close();
});

Deno.test("connect() to a server that closes before its challenge says so, with the hint", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closing = listener.accept().then((conn) => conn.close());
  await assert.rejects(
    connect({ port: listener.addr.port, secret: KEY, timeout: 5000 }),
    (error) =>
      error instanceof ProtocolError && error.reason === "closed" &&
      error.message ===
        `Cannot read the server's challenge: the peer closed the connection after 0 of 32 bytes; ${HINT}`,
  );
  await closing;
});

Deno.test("connect() to a server that sends a TLS alert says the server expects TLS", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const alerting = listener.accept().then(async (conn) => {
    // A TLS 1.2 fatal alert (decode_error), then close.
    await conn.write(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 2, 50]));
    conn.close();
  });
  await assert.rejects(
    connect({ port: listener.addr.port, secret: KEY, timeout: 5000 }),
    {
      name: "ProtocolError",
      message:
        "Cannot read the server's challenge: the peer closed the connection after 7 of 32 bytes; the server sent a TLS record, not a challenge: it expects TLS (use connectTls)",
    },
  );
  await alerting;
});

Deno.test("connect() leaves other cut-short challenges and the caller's abort as they are", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const partial = listener.accept().then(async (conn) => {
    await conn.write(new Uint8Array(7));
    conn.close();
  });
  await assert.rejects(
    connect({ port: listener.addr.port, secret: KEY, timeout: 5000 }),
    {
      name: "ProtocolError",
      message:
        "Cannot read the server's challenge: the peer closed the connection after 7 of 32 bytes",
    },
  );
  await partial;
  const controller = new AbortController();
  const silent = listener.accept();
  const connecting = connect({
    port: listener.addr.port,
    secret: KEY,
    signal: controller.signal,
  });
  const held = await silent;
  controller.abort(new Error("the caller gave up"));
  await assert.rejects(connecting, { message: "the caller gave up" });
  held.close();
});

Deno.test("clientAuthenticate() on streams says that no challenge arrived when the server closes", async () => {
  const [client, server] = duplexPair();
  await server.writable.close();
  await assert.rejects(clientAuthenticate(client, KEY, { timeout: 5000 }), {
    name: "ProtocolError",
    message:
      `Cannot read the server's challenge: the peer closed the connection after 0 of 32 bytes; ${HINT}`,
  });
});
