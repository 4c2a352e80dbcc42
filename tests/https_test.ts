// serveHttps(): mutual TLS for Request -> Response handlers, with the
// XML-RPC client from xmlrpc.ts and fetch as peers.
import assert from "node:assert/strict";
import {
  type CertificateSet,
  createCertificateAuthority,
  generateCertificates,
  issueCertificate,
} from "../certs.ts";
import { type HttpsRequestInfo, serveHttps } from "../https.ts";
import { xmlrpcClient, xmlrpcHandler } from "../xmlrpc.ts";

let shared: CertificateSet | undefined;
async function certs(): Promise<CertificateSet> {
  shared ??= await generateCertificates({ clients: ["alice", "mallory"] });
  return shared;
}

function clientFor(
  set: CertificateSet,
  port: number,
  who: { cert: string; key: string } | null,
) {
  return xmlrpcClient(`https://localhost:${port}/`, {
    caCerts: [set.ca.cert],
    ...(who ? { cert: who.cert, key: who.key } : {}),
    timeout: 10_000,
  });
}

Deno.test("serveHttps() serves a verified client and tells the handler who it is", async () => {
  const set = await certs();
  const seen: HttpsRequestInfo[] = [];
  const handler = xmlrpcHandler({ echo: (value) => value });
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    clientCa: set.ca.cert,
    allowedClients: ["alice"],
  }, (request, info) => {
    seen.push(info);
    return handler(request);
  });
  using client = clientFor(set, server.addr.port, set.clients.alice);
  for (let i = 0; i < 10; i++) {
    assert.deepEqual(await client.call("echo", [i, "x"]), [i, "x"]);
  }
  assert.equal(seen.length, 10);
  assert.equal(seen[0].clientName, "alice");
  assert.match(
    seen[0].clientFingerprint ?? "",
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
  const errors: string[] = [];
  let served = 0;
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    clientCa: set.ca.cert,
    allowedClients: ["alice"],
    onError: (error) => errors.push(String((error as Error).message)),
  }, () => {
    served++;
    return new Response("secret");
  });
  {
    using client = clientFor(set, server.addr.port, null);
    await assert.rejects(client.call("a"), TypeError);
  }
  {
    using client = clientFor(set, server.addr.port, stranger);
    await assert.rejects(client.call("a"), TypeError);
  }
  {
    using client = clientFor(set, server.addr.port, set.clients.mallory);
    await assert.rejects(
      client.call("a"),
      /HTTP 403: Cannot serve the request: the client certificate's common name "mallory" is not in the allow-list/,
    );
  }
  assert.equal(served, 0);
  assert.ok(errors.length >= 2, errors.join("\n"));
});

Deno.test("serveHttps() without clientCa serves server-only TLS, passing status and headers through", async () => {
  const set = await certs();
  await using server = await serveHttps(
    { cert: set.server.cert, key: set.server.key },
    (request, info) => {
      const headers = new Headers({ "x-path": new URL(request.url).pathname });
      headers.append("set-cookie", "a=1");
      headers.append("set-cookie", "b=2");
      return Response.json({ name: info.clientName }, { status: 201, headers });
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
  assert.deepEqual(await response.json(), { name: null });
});

Deno.test("serveHttps() answers 413 to oversized bodies and 500 when the handler throws", async () => {
  const set = await certs();
  const errors: unknown[] = [];
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    maxBodySize: 1000,
    onError: (error) => errors.push(error),
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
      allowedClients: ["a"],
    }, () => new Response()),
    /allowedClients needs clientCa/,
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
  const errors: string[] = [];
  await using server = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    maxConnections: 1,
    onError: (error) => errors.push((error as Error).message),
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
  assert.match(errors.join("\n"), /1 are open \(maxConnections\)/);
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
