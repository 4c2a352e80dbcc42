// serveHttps(): mutual TLS for Request -> Response handlers, with the
// XML-RPC client from xmlrpc.ts and fetch as peers.
import assert from "node:assert/strict";
import {
  type CertificateSet,
  createCertificateAuthority,
  generateCertificates,
  issueCertificate,
} from "../certs.ts";
import {
  type HttpsErrorInfo,
  type HttpsRequestInfo,
  serveHttps,
} from "../https.ts";
import { listenTls, TlsError, type TlsErrorInfo } from "../tls.ts";
import { createXmlRpcClient, createXmlRpcHandler } from "../xmlrpc.ts";
import { within } from "./_helpers.ts";
import { exchange } from "./_http1_helpers.ts";

let shared: CertificateSet | undefined;
async function certs(): Promise<CertificateSet> {
  shared ??= await generateCertificates({ clients: ["alice", "mallory"] });
  return shared;
}

/** An onError hook for serveHttps() that keeps what it is told. */
function recorder() {
  const errors: unknown[] = [];
  const infos: HttpsErrorInfo[] = [];
  const onError = (error: unknown, info: HttpsErrorInfo) => {
    errors.push(error);
    infos.push(info);
  };
  return { errors, infos, onError };
}

function clientFor(
  set: CertificateSet,
  port: number,
  who: { cert: string; key: string } | null,
) {
  return createXmlRpcClient(`https://localhost:${port}/`, {
    caCerts: [set.ca.cert],
    ...(who ? { cert: who.cert, key: who.key } : {}),
    timeout: 10_000,
  });
}

Deno.test("serveHttps() serves a verified client and tells the handler who it is", async () => {
  const set = await certs();
  const seen: HttpsRequestInfo[] = [];
  const handler = createXmlRpcHandler({ echo: (value) => value });
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    clientCa: set.ca.cert,
    allow: { cn: ["alice"] },
  }, (request, info) => {
    seen.push(info);
    return handler(request);
  });
  using client = clientFor(set, server.addr.port, set.clients.alice);
  for (let i = 0; i < 10; i++) {
    assert.deepEqual(await client.call("echo", [i, "x"]), [i, "x"]);
  }
  assert.equal(seen.length, 10);
  assert.equal(seen[0].peerIdentity?.cn, "alice");
  assert.match(
    seen[0].peerIdentity?.fingerprint256 ?? "",
    /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/,
  );
  assert.equal(seen[0].remoteAddr.hostname.replace("::ffff:", ""), "127.0.0.1");
  const ports = new Set(seen.map((info) => info.remoteAddr.port));
  assert.equal(ports.size, 1, "calls should share one kept-alive connection");
});

Deno.test("serveHttps() refuses clients without a certificate, from another CA, or outside the allow-list", async () => {
  const set = await certs();
  const other = await createCertificateAuthority({ commonName: "other CA" });
  const stranger = await issueCertificate(other, {
    usage: "client",
    commonName: "alice",
  });
  const { errors, infos, onError } = recorder();
  let served = 0;
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    clientCa: set.ca.cert,
    allow: { cn: ["alice"] },
    onError,
  }, () => {
    served++;
    return new Response("secret");
  });
  // The refusal is reported before the client can see the connection close,
  // so the errors since the probe started are its own (one per connection
  // the client tried).
  const refusals = async (
    who: { cert: string; key: string } | null,
    reason: string,
    message: RegExp,
  ) => {
    const from = errors.length;
    using client = clientFor(set, server.addr.port, who);
    await assert.rejects(client.call("a"), TypeError);
    const mine = errors.slice(from);
    assert.ok(mine.length > 0, `no error reported for ${reason}`);
    for (const info of infos.slice(from)) {
      assert.equal(info.phase, "tls");
      assert.match((info.remoteAddr as Deno.NetAddr).hostname, /127\.0\.0\.1$/);
    }
    for (const error of mine) {
      assert.ok(error instanceof TlsError, String(error));
      assert.equal(error.reason, reason);
      assert.match(error.message, /^Cannot accept the TLS connection: /);
      assert.match(error.message, message);
    }
  };
  await refusals(
    null,
    "no-certificate",
    /the client sent no certificate; this server requires one/,
  );
  await refusals(
    stranger,
    "unknown-ca",
    /"CN ?= ?alice".* was refused: its issuer "CN ?= ?other CA" is not one of the client CAs/,
  );
  const before = errors.length;
  {
    using client = clientFor(set, server.addr.port, set.clients.mallory);
    await assert.rejects(
      client.call("a"),
      /HTTP 403: Cannot serve the request: the client certificate's common name "mallory" is not in the allow-list/,
    );
  }
  // Verified by TLS, refused by the allow-list: an answer, not an error.
  assert.equal(errors.length, before);
  assert.equal(served, 0);
});

Deno.test("serveHttps() without clientCa serves server-only TLS, passing status and headers through", async () => {
  const set = await certs();
  await using server = await serveHttps(
    { cert: set.server.cert, key: set.server.key },
    (request, info) => {
      const headers = new Headers({ "x-path": new URL(request.url).pathname });
      headers.append("set-cookie", "a=1");
      headers.append("set-cookie", "b=2");
      return Response.json({ identity: info.peerIdentity }, {
        status: 201,
        headers,
      });
    },
  );
  using http = Deno.createHttpClient({ caCerts: [set.ca.cert] });
  const response = await fetch(
    `https://localhost:${server.addr.port}/some/path?q=1`,
    { client: http },
  );
  assert.equal(response.status, 201);
  assert.equal(response.headers.get("x-path"), "/some/path");
  assert.deepEqual(response.headers.getSetCookie(), ["a=1", "b=2"]);
  assert.deepEqual(await response.json(), { identity: null });
});

Deno.test("serveHttps() answers 413 to oversized bodies and 500 when the handler throws", async () => {
  const set = await certs();
  const { errors, infos, onError } = recorder();
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    maxBodySize: 1000,
    onError,
  }, async (request) => {
    const body = await request.text();
    if (body === "throw") throw new Error("handler bug");
    return new Response(`got ${body.length}`);
  });
  using http = Deno.createHttpClient({ caCerts: [set.ca.cert] });
  const url = `https://localhost:${server.addr.port}/`;
  const ok = await fetch(url, {
    method: "POST",
    body: "x".repeat(1000),
    client: http,
  });
  assert.equal(await ok.text(), "got 1000");
  const declared = await fetch(url, {
    method: "POST",
    body: "x".repeat(1001),
    client: http,
  });
  assert.equal(declared.status, 413);
  assert.match(await declared.text(), /1001 bytes, over the 1000-byte limit/);
  // Streamed without a length: refused as soon as the count goes over.
  const chunks = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < 5; i++) controller.enqueue(new Uint8Array(400));
      controller.close();
    },
  });
  const streamed = await fetch(url, {
    method: "POST",
    body: chunks,
    client: http,
  });
  assert.equal(streamed.status, 413);
  await streamed.body?.cancel();
  const failed = await fetch(url, {
    method: "POST",
    body: "throw",
    client: http,
  });
  assert.equal(failed.status, 500);
  assert.match(await failed.text(), /the handler failed/);
  assert.equal((errors[0] as Error).message, "handler bug");
  assert.equal(errors.length, 1, "a 413 is not reported");
  assert.equal(infos[0].phase, "handler");
  assert.match((infos[0].remoteAddr as Deno.NetAddr).hostname, /127\.0\.0\.1$/);
});

Deno.test("serveHttps() shuts down on abort and refuses bad options", async () => {
  const set = await certs();
  const controller = new AbortController();
  const server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    signal: controller.signal,
  }, () => new Response("ok"));
  controller.abort();
  await server.finished;
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    Deno.errors.ConnectionRefused,
  );
  await assert.rejects(
    serveHttps({
      cert: set.server.cert,
      key: set.server.key,
      allow: { cn: ["a"] },
    }, () => new Response()),
    /`allow` needs `clientCa` \(or `clientCaFile`\)/,
  );
  await assert.rejects(
    serveHttps({} as never, () => new Response()),
    /cert and key \(PEM strings\) are required/,
  );
  await assert.rejects(
    serveHttps({ cert: "x", key: "y", maxBodySize: 0 }, () => new Response()),
    RangeError,
  );
});

/**
 * Starts serveHttps() with `gracePeriod` and a handler that never settles,
 * sends it one request, shuts it down and returns how long `finished` took;
 * asserts the connection was closed.
 */
async function shutdownWithHungHandler(
  gracePeriod: number | undefined,
): Promise<number> {
  const set = await certs();
  const entered = Promise.withResolvers<void>();
  const server = await serveHttps(
    { cert: set.server.cert, key: set.server.key, gracePeriod },
    () => {
      entered.resolve();
      return new Promise<Response>(() => {}); // hangs forever
    },
  );
  using conn = await Deno.connectTls({
    hostname: "localhost",
    port: server.addr.port,
    caCerts: [set.ca.cert],
  });
  await conn.write(
    new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
  );
  await within(entered.promise, 5000, "the request reaching the handler");
  const start = performance.now();
  void server.shutdown();
  await within(
    server.finished,
    10_000,
    "shutdown (waiting on the hung handler?)",
  );
  const ms = performance.now() - start;
  assert.ok((await closedWithin(conn, 5000)) !== null, "the conn stayed open");
  return ms;
}

Deno.test("serveHttps() shutdown finishes after its grace period when a handler never settles", async () => {
  const ms = await shutdownWithHungHandler(undefined);
  // The request in flight had its grace period (1 s) before the close.
  assert.ok(ms >= 900, `finished after ${ms} ms`);
});

Deno.test("serveHttps() gracePeriod sets how long shutdown waits for a request in flight", async () => {
  const set = await certs();
  await assert.rejects(
    serveHttps(
      { cert: set.server.cert, key: set.server.key, gracePeriod: -1 },
      () => new Response(),
    ),
    RangeError,
  );
  const ms = await shutdownWithHungHandler(3000);
  // 3 s, not the default 1 s.
  assert.ok(ms >= 2900, `finished after ${ms} ms`);
});

Deno.test("serveHttps() gracePeriod: Infinity lets a request in flight finish, however long it takes", async () => {
  const set = await certs();
  const entered = Promise.withResolvers<void>();
  const server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    gracePeriod: Infinity,
  }, async () => {
    entered.resolve();
    // Longer than the default grace period (1 s).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    return new Response("finished");
  });
  using http = Deno.createHttpClient({ caCerts: [set.ca.cert] });
  const response = fetch(`https://localhost:${server.addr.port}/`, {
    client: http,
  });
  await within(entered.promise, 5000, "the request reaching the handler");
  const start = performance.now();
  const finished = server.shutdown();
  const answered = await within(response, 10_000, "the response");
  assert.equal(await answered.text(), "finished");
  await within(finished, 10_000, "shutdown");
  const ms = performance.now() - start;
  assert.ok(ms >= 1400, `shutdown took ${ms} ms`);
});

/** Reads until the server closes; the elapsed ms, or null after `limit`. */
async function closedWithin(conn: Deno.TlsConn, limit: number) {
  const start = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const read = (async () => {
    const buffer = new Uint8Array(1024);
    try {
      while ((await conn.read(buffer)) !== null) { /* drain */ }
    } catch {
      // a reset or an EOF without close_notify: closed too
    }
    return performance.now() - start;
  })();
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), limit);
  });
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("serveHttps() closes connections that stay silent or trickle a request", async () => {
  const set = await certs();
  let served = 0;
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    keepAliveTimeout: 300,
    requestTimeout: 300,
  }, () => {
    served++;
    return new Response("ok");
  });
  const connect = async () => {
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port: server.addr.port,
      caCerts: [set.ca.cert],
    });
    await conn.handshake();
    return conn;
  };
  {
    using silent = await connect();
    const ms = await closedWithin(silent, 5000);
    assert.ok(ms !== null, "a silent connection stayed open");
  }
  {
    using trickle = await connect();
    const request = new TextEncoder().encode(
      `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n${
        "a".repeat(50)
      }`,
    );
    const closed = closedWithin(trickle, 10_000);
    let sent = 0;
    // One byte every 100 ms: never silent for 300 ms, but far too slow.
    for (; sent < request.length; sent++) {
      try {
        await trickle.write(request.subarray(sent, sent + 1));
      } catch {
        break; // closed under us
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (sent > 60) break; // 6 s: ten times the 600 ms allowed
    }
    const ms = await closed;
    assert.ok(ms !== null, "a trickling connection stayed open");
    // Closed by the request deadline (600 ms), not by the silence after the
    // loop gave up (6 s): generous for a loaded machine.
    assert.ok(ms < 4000, `closed after ${ms} ms`);
    assert.ok(sent < 40, `${sent} bytes were accepted`);
  }
  assert.equal(served, 0);
});

Deno.test("serveHttps() closes connections over maxConnections", async () => {
  const set = await certs();
  const { errors, infos, onError } = recorder();
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    maxConnections: 1,
    onError,
  }, () => new Response("ok"));
  const connect = async () => {
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port: server.addr.port,
      caCerts: [set.ca.cert],
    });
    await conn.handshake();
    return conn;
  };
  const get = async (conn: Deno.TlsConn) => {
    await conn.write(
      new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    const buffer = new Uint8Array(1024);
    const n = await conn.read(buffer);
    return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
  };
  using first = await connect();
  // A full exchange first, so the server has surely counted this one.
  assert.match(await get(first), /^HTTP\/1.1 200/);
  using second = await connect();
  assert.ok((await closedWithin(second, 5000)) !== null);
  assert.match(
    errors.map((error) => (error as Error).message).join("\n"),
    /1 are open \(maxConnections\)/,
  );
  assert.equal(infos.at(-1)?.phase, "accept");
  assert.equal(
    (infos.at(-1)?.remoteAddr as Deno.NetAddr).port,
    (second.localAddr as Deno.NetAddr).port,
  );
  // The first is still served.
  assert.match(await get(first), /^HTTP\/1.1 200/);
});

Deno.test("serveHttps() does not count a slow handler against the client's deadlines", async () => {
  const set = await certs();
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    keepAliveTimeout: 200,
    requestTimeout: 200,
  }, async () => {
    await new Promise((resolve) => setTimeout(resolve, 800));
    return new Response("slow but fine");
  });
  using http = Deno.createHttpClient({ caCerts: [set.ca.cert] });
  for (let i = 0; i < 2; i++) {
    const response = await fetch(`https://localhost:${server.addr.port}/`, {
      client: http,
    });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "slow but fine");
  }
});

/** A plain-TLS server that echoes method, path and body length. */
async function echoServer(
  set: CertificateSet,
  options: Partial<Parameters<typeof serveHttps>[0]> = {},
  seen: string[] = [],
) {
  return await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    ...options,
  }, async (request) => {
    const body = await request.text();
    seen.push(`${request.method} ${new URL(request.url).pathname} ${body}`);
    return new Response(`${request.method} ${body.length}`);
  });
}

Deno.test("serveHttps() refuses oversized or too many headers with 431, a long request line with 414", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, {
    maxHeaderSize: 1024,
    maxHeaderCount: 5,
  }, seen);
  const port = server.addr.port;
  const big = await exchange(
    port,
    set.ca.cert,
    `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2000)}\r\n\r\n`,
  );
  assert.match(big.text, /^HTTP\/1.1 431 /);
  assert.match(big.text, /over the 1024-byte limit/);
  assert.match(big.text, /connection: close/);
  assert.ok(big.closed);
  const many = await exchange(
    port,
    set.ca.cert,
    `GET / HTTP/1.1\r\nHost: x\r\n${
      Array.from({ length: 6 }, (_, i) => `X-${i}: ${i}\r\n`).join("")
    }\r\n`,
  );
  assert.match(many.text, /^HTTP\/1.1 431 /);
  assert.match(many.text, /7 header lines, over the limit of 5/);
  assert.ok(many.closed);
  const line = await exchange(
    port,
    set.ca.cert,
    `GET /${"a".repeat(2000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
  );
  assert.match(line.text, /^HTTP\/1.1 414 /);
  assert.ok(line.closed);
  // Exactly at the limit is fine.
  const head =
    "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: \r\n\r\n";
  const fits = await exchange(
    port,
    set.ca.cert,
    head.replace("X-Pad: ", `X-Pad: ${"p".repeat(1024 - head.length)}`),
  );
  assert.match(fits.text, /^HTTP\/1.1 200 /);
  assert.deepEqual(seen, ["GET / "]);
});

Deno.test("serveHttps() answers 400 to malformed request lines and headers, 505 to other versions", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, {}, seen);
  const cases: [string, RegExp][] = [
    ["garbage\r\n\r\n", /^HTTP\/1.1 400 .*request line/s],
    ["GET  / HTTP/1.1\r\nHost: x\r\n\r\n", /^HTTP\/1.1 400 /],
    ["GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", /^HTTP\/1.1 400 /],
    ["GET nopath HTTP/1.1\r\nHost: x\r\n\r\n", /^HTTP\/1.1 400 .*target/s],
    ["G@T / HTTP/1.1\r\nHost: x\r\n\r\n", /^HTTP\/1.1 400 /],
    ["GET / HTTP/2.0\r\nHost: x\r\n\r\n", /^HTTP\/1.1 505 /],
    ["GET / HTTP/1.1\r\n\r\n", /^HTTP\/1.1 400 .*exactly one Host/s],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", /^HTTP\/1.1 400 /],
    ["GET / HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n", /^HTTP\/1.1 400 /],
    ["GET / HTTP/1.1\r\nHost: x\r\nBad name: 1\r\n\r\n", /^HTTP\/1.1 400 /],
    ["GET / HTTP/1.1\r\nHost : x\r\n\r\n", /^HTTP\/1.1 400 /],
    [
      "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
      /^HTTP\/1.1 400 .*folded/s,
    ],
    [
      "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
      /^HTTP\/1.1 400 .*bare CR or LF/s,
    ],
    [
      "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
      /^HTTP\/1.1 400 .*control/s,
    ],
  ];
  for (const [request, expected] of cases) {
    const { text, closed } = await exchange(
      server.addr.port,
      set.ca.cert,
      request,
    );
    assert.match(text, expected, JSON.stringify(request));
    assert.ok(closed, JSON.stringify(request));
  }
  assert.deepEqual(seen, []);
});

Deno.test("serveHttps() refuses bad, duplicate or conflicting body lengths", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, { maxBodySize: 100 }, seen);
  const post = (headers: string, body = "") =>
    exchange(
      server.addr.port,
      set.ca.cert,
      `POST / HTTP/1.1\r\nHost: x\r\n${headers}\r\n${body}`,
    );
  const cases: [string, RegExp][] = [
    ["Content-Length: abc\r\n", /^HTTP\/1.1 400 .*not a decimal/s],
    ["Content-Length: -1\r\n", /^HTTP\/1.1 400 /],
    ["Content-Length: 1e2\r\n", /^HTTP\/1.1 400 /],
    ["Content-Length: 3\r\nContent-Length: 3\r\n", /^HTTP\/1.1 400 .*twice/s],
    ["Content-Length: 3, 3\r\n", /^HTTP\/1.1 400 /],
    [
      "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
      /^HTTP\/1.1 400 .*Transfer-Encoding with Content-Length/s,
    ],
    ["Transfer-Encoding: gzip, chunked\r\n", /^HTTP\/1.1 501 /],
    ["Content-Length: 101\r\n", /^HTTP\/1.1 413 .*101 bytes/s],
    ["Transfer-Encoding: chunked\r\n", /^HTTP\/1.1 400 .*hexadecimal/s],
  ];
  for (const [headers, expected] of cases) {
    const { text, closed } = await post(headers, "xyz\r\n");
    assert.match(text, expected, JSON.stringify(headers));
    assert.ok(closed, JSON.stringify(headers));
  }
  // A chunked body is decoded and bounded.
  const chunked = await post(
    "Transfer-Encoding: chunked\r\nConnection: close\r\n",
    "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
  );
  assert.match(chunked.text, /^HTTP\/1.1 200 [^]*\r\n\r\nPOST 5$/);
  const over = await post(
    "Transfer-Encoding: chunked\r\n",
    `40\r\n${"a".repeat(64)}\r\n40\r\n${"b".repeat(64)}\r\n0\r\n\r\n`,
  );
  assert.match(over.text, /^HTTP\/1.1 413 .*over the 100-byte limit/s);
  const long = await post("Transfer-Encoding: chunked\r\n", "2\r\nabc\r\n");
  assert.match(long.text, /^HTTP\/1.1 400 .*longer than its size/s);
  assert.deepEqual(seen, ["POST / abcde"]);
});

Deno.test("serveHttps() answers 408 to headers or a body that come too slowly", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, {
    keepAliveTimeout: 300,
    requestTimeout: 300,
  }, seen);
  // Headers that never end: silent after the first line.
  const headers = await exchange(
    server.addr.port,
    set.ca.cert,
    "GET / HTTP/1.1\r\nHost: x\r\n",
  );
  assert.match(headers.text, /^HTTP\/1.1 408 /);
  assert.ok(headers.closed);
  // A body shorter than its Content-Length.
  const body = await exchange(
    server.addr.port,
    set.ca.cert,
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
  );
  assert.match(body.text, /^HTTP\/1.1 408 /);
  assert.ok(body.closed);
  // Idle between requests: closed without a response.
  const idle = await exchange(server.addr.port, set.ca.cert, "");
  assert.equal(idle.text, "");
  assert.ok(idle.closed);
  assert.deepEqual(seen, []);
});

Deno.test("serveHttps() answers pipelined requests in order and honours Connection: close", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, {}, seen);
  const { text, closed } = await exchange(
    server.addr.port,
    set.ca.cert,
    "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" +
      "GET /b HTTP/1.1\r\nHost: x\r\n\r\n" +
      "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye" +
      "GET /never HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  assert.ok(closed);
  const statuses = text.match(/HTTP\/1.1 \d+/g);
  assert.deepEqual(statuses, [
    "HTTP/1.1 200",
    "HTTP/1.1 200",
    "HTTP/1.1 200",
  ]);
  assert.match(text, /\r\n\r\nPOST 2HTTP\/1.1 200 [^]*\r\n\r\nGET 0HTTP/);
  assert.match(text, /connection: close\r\n\r\nPOST 3$/);
  assert.deepEqual(seen, ["POST /a hi", "GET /b ", "POST /c bye"]);
});

Deno.test("serveHttps() keeps HTTP/1.0 connections alive only when asked", async () => {
  const set = await certs();
  await using server = await echoServer(set);
  const once = await exchange(
    server.addr.port,
    set.ca.cert,
    "GET / HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n",
  );
  assert.ok(once.closed);
  assert.equal(once.text.match(/HTTP\/1.1 200/g)?.length, 1);
  assert.match(once.text, /connection: close/);
  const kept = await exchange(
    server.addr.port,
    set.ca.cert,
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" +
      "POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nz",
  );
  assert.ok(kept.closed);
  assert.equal(kept.text.match(/HTTP\/1.1 200/g)?.length, 2);
  assert.match(kept.text, /connection: keep-alive\r\n\r\nGET 0HTTP/);
  assert.match(kept.text, /connection: close\r\n\r\nPOST 1$/);
});

Deno.test("serveHttps() survives a client that closes mid-body and keeps serving", async () => {
  const set = await certs();
  const seen: string[] = [];
  const errors: unknown[] = [];
  await using server = await echoServer(set, {
    onError: (error) => errors.push(error),
  }, seen);
  {
    using conn = await Deno.connectTls({
      hostname: "localhost",
      port: server.addr.port,
      caCerts: [set.ca.cert],
    });
    await conn.write(
      new TextEncoder().encode(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial",
      ),
    );
    await conn.closeWrite();
    const buffer = new Uint8Array(1024);
    let text = "";
    while (true) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    assert.match(text, /^HTTP\/1.1 400 .*before the end of the body/s);
  }
  const after = await exchange(
    server.addr.port,
    set.ca.cert,
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
  );
  assert.match(after.text, /^HTTP\/1.1 200 [^]*POST 2$/);
  assert.deepEqual(seen, ["POST / ok"]);
  assert.deepEqual(errors, []);
});

Deno.test("serveHttps() answers Expect: 100-continue, HEAD without a body, and streamed fetch bodies", async () => {
  const set = await certs();
  await using server = await echoServer(set, { maxBodySize: 10 });
  const cont = await exchange(
    server.addr.port,
    set.ca.cert,
    "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
  );
  assert.match(cont.text, /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 /);
  const refused = await exchange(
    server.addr.port,
    set.ca.cert,
    "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
  );
  assert.match(refused.text, /^HTTP\/1.1 413 /);
  const head = await exchange(
    server.addr.port,
    set.ca.cert,
    "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  );
  assert.match(head.text, /content-length: 6\r\n/);
  assert.match(head.text, /\r\n\r\n$/);
  using http = Deno.createHttpClient({ caCerts: [set.ca.cert] });
  const streamed = await fetch(`https://localhost:${server.addr.port}/`, {
    method: "POST",
    body: new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("abc"));
        controller.enqueue(new TextEncoder().encode("defg"));
        controller.close();
      },
    }),
    client: http,
  });
  assert.equal(await streamed.text(), "POST 7");
});

Deno.test("serveHttps() serves a listenTls() listener, whose allow-list refuses at the TLS layer", async () => {
  const set = await certs();
  const refused: { error: TlsError; info: TlsErrorInfo }[] = [];
  const seen: HttpsRequestInfo[] = [];
  await using server = await serveHttps({
    listener: await listenTls({
      cert: set.server.cert,
      key: set.server.key,
      clientCa: set.ca.cert,
      allow: { fingerprint: [set.clients.alice.fingerprint] },
      onError: (error, info) => refused.push({ error, info }),
    }),
  }, (request, info) => {
    seen.push(info);
    return new Response(new URL(request.url).protocol);
  });
  {
    using http = Deno.createHttpClient({
      caCerts: [set.ca.cert],
      cert: set.clients.alice.cert,
      key: set.clients.alice.key,
    });
    const response = await fetch(`https://localhost:${server.addr.port}/`, {
      client: http,
    });
    assert.equal(await response.text(), "https:");
  }
  assert.equal(seen.length, 1);
  assert.equal(seen[0].peerIdentity?.cn, "alice");
  assert.equal(
    seen[0].peerIdentity?.fingerprint256,
    set.clients.alice.fingerprint,
  );
  {
    using client = clientFor(set, server.addr.port, set.clients.mallory);
    await assert.rejects(client.call("a"), TypeError);
  }
  assert.equal(seen.length, 1);
  assert.deepEqual(refused.map(({ error }) => error.reason), ["not-allowed"]);
  assert.equal(refused[0].info.identity?.cn, "mallory");
});

Deno.test("serveHttps() serves plain HTTP on a Deno.listen() listener and refuses conflicting options", async () => {
  const set = await certs();
  await using server = await serveHttps(
    {
      listener: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    },
    (request, info) =>
      Response.json({ url: request.url, identity: info.peerIdentity }),
  );
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/x`);
  assert.deepEqual(await response.json(), {
    url: `http://127.0.0.1:${server.addr.port}/x`,
    identity: null,
  });
  using other = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await assert.rejects(
    serveHttps({
      listener: other,
      cert: set.server.cert,
      key: set.server.key,
    }, () => new Response()),
    /give `cert`, `key` to listenTls\(\) and pass its listener/,
  );
  await assert.rejects(
    serveHttps({ listener: {} as never }, () => new Response()),
    /must be an async iterable listener/,
  );
});

/**
 * A plain listener whose connections claim to come from `alias` (the
 * address at the time each is accepted), for addresses loopback cannot
 * give a client: IPv6 prefixes, IPv4-mapped addresses.
 */
function aliasListener() {
  const real = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = { alias: "192.0.2.1" };
  const disguise = (conn: Deno.Conn): Deno.Conn => {
    const remoteAddr: Deno.NetAddr = {
      transport: "tcp",
      hostname: state.alias,
      port: (conn.remoteAddr as Deno.NetAddr).port,
    };
    return new Proxy(conn, {
      get(target, property) {
        if (property === "remoteAddr") return remoteAddr;
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
  const listener = {
    addr: real.addr,
    accept: async () => disguise(await real.accept()),
    close: () => real.close(),
    async *[Symbol.asyncIterator]() {
      while (true) yield await listener.accept();
    },
  };
  return { listener, state };
}

Deno.test("serveHttps() counts an IPv6 /64 as one address for maxPerAddress; ipv6Prefix changes the prefix", async () => {
  // Each address connects in turn with maxPerAddress: 1 and stays open;
  // true when it is served, false when closed unanswered.
  async function served(
    ipv6Prefix: number | undefined,
    addresses: string[],
  ): Promise<{ served: boolean[]; errors: string[] }> {
    const { listener, state } = aliasListener();
    const errors: string[] = [];
    const open: Deno.Conn[] = [];
    const result: boolean[] = [];
    try {
      await using server = await serveHttps({
        listener,
        maxPerAddress: 1,
        ipv6Prefix,
        onError: (error) => errors.push((error as Error).message),
      }, () => new Response("ok"));
      for (const address of addresses) {
        state.alias = address;
        const conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: server.addr.port,
        });
        open.push(conn);
        await conn.write(
          new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        const buffer = new Uint8Array(1024);
        const n = await within(
          conn.read(buffer).catch(() => null),
          5000,
          `the answer to ${address}`,
        );
        result.push(
          n !== null &&
            /^HTTP\/1.1 200/.test(
              new TextDecoder().decode(buffer.subarray(0, n)),
            ),
        );
      }
    } finally {
      for (const conn of open) conn.close();
    }
    return { served: result, errors };
  }
  const addresses = [
    "2001:db8:1:2::1",
    "2001:DB8:1:2:0:0:ffff:5", // the same /64, written otherwise
    "2001:db8:1:3::1",
    "::ffff:192.0.2.1",
    "192.0.2.1", // the same IPv4 address as the mapped one
  ];
  const byDefault = await served(undefined, addresses);
  assert.deepEqual(byDefault.served, [true, false, true, true, false]);
  assert.match(byDefault.errors[0], /1 from 2001:db8:1:2::\/64 are open/);
  assert.match(byDefault.errors[1], /1 from 192\.0\.2\.1 are open/);
  assert.deepEqual(
    (await served(128, addresses)).served,
    [true, true, true, true, false],
  );
  assert.deepEqual(
    (await served(48, addresses)).served,
    [true, false, false, true, false],
  );
});

Deno.test("serveHttps() refuses a bad maxPerAddress or ipv6Prefix, and takes Infinity for no per-address limit", async () => {
  for (const maxPerAddress of [0, -1, 1.5]) {
    await assert.rejects(
      serveHttps({ cert: "x", key: "y", maxPerAddress }, () => new Response()),
      RangeError,
      String(maxPerAddress),
    );
  }
  // Not a number: a TypeError, as for every option (_options.ts).
  await assert.rejects(
    serveHttps(
      { cert: "x", key: "y", maxPerAddress: NaN },
      () => new Response(),
    ),
    TypeError,
  );
  for (const ipv6Prefix of [0, 129, 64.5]) {
    await assert.rejects(
      serveHttps({ cert: "x", key: "y", ipv6Prefix }, () => new Response()),
      RangeError,
      String(ipv6Prefix),
    );
  }
  await assert.rejects(
    serveHttps(
      { cert: "x", key: "y", ipv6Prefix: "64" as never },
      () => new Response(),
    ),
    TypeError,
  );
  await using server = await serveHttps({
    listener: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    maxPerAddress: Infinity,
  }, () => new Response("ok"));
  const responses = await Promise.all(
    Array.from(
      { length: 3 },
      () =>
        fetch(`http://127.0.0.1:${server.addr.port}/`).then((r) => r.text()),
    ),
  );
  assert.deepEqual(responses, ["ok", "ok", "ok"]);
});

Deno.test("serveHttps() checks its options as serve() and listenTls() do, and takes Infinity for every limit and deadline", async () => {
  const bad: [Parameters<typeof serveHttps>[0], ErrorConstructor, RegExp][] = [
    [
      { port: 65536 },
      RangeError,
      /^Cannot use port: expected a port number from 0 to 65535, got 65536$/,
    ],
    [{ port: -1 }, RangeError, /^Cannot use port: /],
    [
      { handshakeTimeout: 0 },
      RangeError,
      /^Cannot use handshakeTimeout: expected a number of milliseconds above 0/,
    ],
    [{ requestTimeout: -5 }, RangeError, /^Cannot use requestTimeout: /],
    [
      { keepAliveTimeout: "1" as never },
      TypeError,
      /^Cannot use keepAliveTimeout: /,
    ],
    [
      { maxBodySize: 0 },
      RangeError,
      /^Cannot use maxBodySize: expected a whole number of at least 1/,
    ],
    [{ maxHeaderSize: 1.5 }, RangeError, /^Cannot use maxHeaderSize: /],
    [{ maxHeaderCount: -1 }, RangeError, /^Cannot use maxHeaderCount: /],
    [{ maxConnections: 0 }, RangeError, /^Cannot use maxConnections: /],
    [
      { gracePeriod: -1 },
      RangeError,
      /^Cannot use gracePeriod: expected a number of milliseconds, 0 or more/,
    ],
  ];
  for (const [options, type, message] of bad) {
    await assert.rejects(
      serveHttps({ cert: "x", key: "y", ...options }, () => new Response()),
      (error: Error) => {
        assert.ok(error instanceof type, String(error));
        assert.match(error.message, message);
        return true;
      },
      JSON.stringify(options),
    );
  }
  const set = await certs();
  const errors: unknown[] = [];
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    maxBodySize: Infinity,
    maxHeaderSize: Infinity,
    maxHeaderCount: Infinity,
    maxConnections: Infinity,
    maxPerAddress: Infinity,
    handshakeTimeout: Infinity,
    requestTimeout: Infinity,
    keepAliveTimeout: Infinity,
    gracePeriod: Infinity,
    onError: (error) => errors.push(error),
  }, async (request) => new Response(`got ${(await request.bytes()).length}`));
  // No handshake deadline: a client that has not started its handshake is
  // still waited for (a timer of Infinity ms must not fire at once).
  using silent = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(errors, []);
  // Over every default limit: 2 MiB of body, 200 headers of 200 bytes.
  using http = Deno.createHttpClient({ caCerts: [set.ca.cert] });
  const headers = new Headers();
  for (let i = 0; i < 200; i++) headers.set(`x-${i}`, "h".repeat(200));
  const response = await fetch(`https://localhost:${server.addr.port}/`, {
    method: "POST",
    body: new Uint8Array(2 << 20),
    headers,
    client: http,
  });
  assert.equal(await response.text(), `got ${2 << 20}`);
  silent.close();
});

Deno.test("serveHttps() reads its certificate, key and client CAs from files with certFile, keyFile and clientCaFile", async () => {
  const set = await certs();
  const dir = await Deno.makeTempDir({ prefix: "connauth-https-" });
  try {
    await Deno.writeTextFile(`${dir}/server.pem`, set.server.cert);
    await Deno.writeTextFile(`${dir}/server-key.pem`, set.server.key);
    await Deno.writeTextFile(`${dir}/ca.pem`, set.ca.cert);
    const errors: unknown[] = [];
    {
      await using server = await serveHttps({
        certFile: `${dir}/server.pem`,
        keyFile: `${dir}/server-key.pem`,
        clientCaFile: `${dir}/ca.pem`,
        onError: (error) => errors.push(error),
      }, (_request, info) => new Response(`hello ${info.peerIdentity?.cn}`));
      {
        using client = Deno.createHttpClient({
          caCerts: [set.ca.cert],
          cert: set.clients.alice.cert,
          key: set.clients.alice.key,
        });
        const response = await fetch(`https://localhost:${server.addr.port}/`, {
          client,
        });
        assert.equal(await response.text(), "hello alice");
      }
      // clientCaFile asks for client certificates as clientCa does.
      using anonymous = Deno.createHttpClient({ caCerts: [set.ca.cert] });
      await assert.rejects(
        fetch(`https://localhost:${server.addr.port}/`, { client: anonymous }),
        TypeError,
      );
      assert.equal((errors[0] as TlsError).reason, "no-certificate");
    }
    // Text and file may be mixed; a missing file is listenTls()'s NotFound.
    {
      await using mixed = await serveHttps(
        { cert: set.server.cert, keyFile: `${dir}/server-key.pem` },
        () => new Response("mixed"),
      );
      using client = Deno.createHttpClient({ caCerts: [set.ca.cert] });
      const response = await fetch(`https://localhost:${mixed.addr.port}/`, {
        client,
      });
      assert.equal(await response.text(), "mixed");
    }
    await assert.rejects(
      serveHttps(
        { certFile: `${dir}/missing.pem`, keyFile: `${dir}/server-key.pem` },
        () => new Response(),
      ),
      Deno.errors.NotFound,
    );
    await assert.rejects(
      serveHttps({ certFile: `${dir}/server.pem` }, () => new Response()),
      /cert and key \(PEM strings\) are required, or certFile and keyFile \(paths\)/,
    );
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    await assert.rejects(
      serveHttps({
        listener,
        clientCaFile: `${dir}/ca.pem`,
      }, () => new Response()),
      /give `clientCaFile` to listenTls\(\) and pass its listener/,
    );
    await assert.rejects(
      serveHttps({
        certFile: `${dir}/server.pem`,
        keyFile: `${dir}/server-key.pem`,
        allow: { cn: ["alice"] },
      }, () => new Response()),
      /`allow` needs `clientCa`/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
