// The XML-RPC client's options and failures (_xmlrpc_client.ts,
// _xmlrpc_client_options.ts): headers, basic auth (the password never in a
// message), per-call deadlines and signals, multicall, TLS material from
// files, and a server that cannot be reached.
import assert from "node:assert/strict";
import { generateCertificates } from "../certs.ts";
import { ProtocolError } from "../errors.ts";
import { serveHttps } from "../https.ts";
import {
  createXmlRpcClient,
  createXmlRpcHandler,
  encodeMethodResponse,
  type XmlRpcCallOptions,
  XmlRpcFault,
} from "../xmlrpc.ts";

const SECRET = "pa55-W0RD_never-shown";

function serveHttp(
  handler: (request: Request) => Response | Promise<Response>,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
}

/** A port nothing listens on (bound, read, released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Asserts that no message in an error's cause chain holds the secret. */
function assertNoSecret(error: unknown): void {
  for (let e = error, i = 0; e !== undefined && i < 10; i++) {
    const text = e instanceof Error ? `${e.message}\n${e.stack}` : String(e);
    assert.ok(!text.includes(SECRET), `the password leaked: ${text}`);
    assert.ok(!text.includes("ann:"), `the user name leaked: ${text}`);
    e = e instanceof Error ? e.cause : undefined;
  }
}

Deno.test("createXmlRpcClient() sends custom headers and basic auth, from the option or the URL", async () => {
  const seen: Headers[] = [];
  const handler = createXmlRpcHandler({ ping: () => "pong" });
  await using server = serveHttp((request) => {
    seen.push(request.headers);
    return handler(request);
  });
  const base = `127.0.0.1:${server.addr.port}/`;
  {
    await using client = createXmlRpcClient(`http://${base}`, {
      basicAuth: { username: "ann", password: `${SECRET}é` },
      headers: { "X-Trace": "42", "user-agent": "mine/1" },
    });
    assert.equal(await client.call("ping"), "pong");
  }
  {
    // As Python's ServerProxy takes them: in the URL, percent-encoded.
    await using client = createXmlRpcClient(
      `http://ann:${encodeURIComponent(`${SECRET}é`)}@${base}`,
    );
    assert.equal(await client.call("ping"), "pong");
    assert.equal(client.url.href, `http://${base}`);
  }
  const expected = `Basic ${
    new TextEncoder().encode(`ann:${SECRET}é`).toBase64()
  }`;
  assert.equal(seen[0].get("authorization"), expected);
  assert.equal(seen[0].get("x-trace"), "42");
  assert.equal(seen[0].get("user-agent"), "mine/1");
  assert.equal(seen[0].get("content-type"), "text/xml");
  assert.equal(seen[1].get("authorization"), expected);
  {
    // Without basic auth, an authorization header of one's own is kept.
    await using client = createXmlRpcClient(`http://${base}`, {
      headers: [["authorization", "Bearer abc"]],
    });
    await client.call("ping");
    assert.equal(seen[2].get("authorization"), "Bearer abc");
  }
});

Deno.test("createXmlRpcClient() never puts the URL's password in an error", async () => {
  const url = `http://ann:${SECRET}@127.0.0.1:${closedPort()}/rpc`;
  await using client = createXmlRpcClient(url, { timeout: 5000 });
  assert.ok(!client.url.href.includes(SECRET));
  assert.ok(!Deno.inspect(client).includes(SECRET));
  await assert.rejects(client.call("add", 1, 2), (error) => {
    assertNoSecret(error);
    assert.ok(error instanceof Deno.errors.ConnectionRefused, String(error));
    assert.equal(
      error.message,
      `Cannot call "add" on http://127.0.0.1:${
        new URL(url).port
      }/rpc: connection refused; is the server running?`,
    );
    return true;
  });
  // A 401 and a refusal at creation do not show it either.
  await using server = serveHttp(() =>
    new Response("bad credentials", { status: 401 })
  );
  await using refused = createXmlRpcClient(
    `http://ann:${SECRET}@127.0.0.1:${server.addr.port}/`,
  );
  await assert.rejects(refused.call("a"), (error) => {
    assertNoSecret(error);
    assert.ok(error instanceof ProtocolError);
    assert.match(
      error.message,
      /^Cannot call "a": http:\/\/127\.0\.0\.1:\d+\/ answered HTTP 401: bad credentials; pass the credentials in basicAuth \(or headers\)$/,
    );
    return true;
  });
  for (
    const [bad, pattern] of [
      [
        `http://ann:${SECRET}@[::1/`,
        /the URL "http:\/\/\*\*\*@\[::1\/" is not valid/,
      ],
      [`http://ann:${SECRET}@host/`, /basicAuth is given too/],
      [`http://a:b:${SECRET}@host/`, /basicAuth is given too/],
    ] as const
  ) {
    assert.throws(
      () =>
        createXmlRpcClient(bad, {
          basicAuth: { username: "x", password: "y" },
        }),
      (error) => {
        assertNoSecret(error);
        assert.ok(error instanceof TypeError);
        assert.match(error.message, pattern);
        return true;
      },
    );
  }
});

Deno.test("createXmlRpcClient() does not follow a redirect, nor send its credentials there", async () => {
  const seen: string[] = [];
  await using server = serveHttp((request) => {
    seen.push(
      `${new URL(request.url).pathname} ${
        request.headers.get("authorization") !== null
      }`,
    );
    return new Response(null, {
      status: 307,
      headers: { location: `http://ann:${SECRET}@127.0.0.1:1/other?q=1` },
    });
  });
  await using client = createXmlRpcClient(
    `http://127.0.0.1:${server.addr.port}/rpc`,
    { basicAuth: { username: "ann", password: SECRET } },
  );
  await assert.rejects(client.call("a"), (error) => {
    assertNoSecret(error);
    assert.ok(error instanceof ProtocolError);
    assert.match(
      error.message,
      /^Cannot call "a": http:\/\/127\.0\.0\.1:\d+\/rpc answered HTTP 307: a redirect to http:\/\/127\.0\.0\.1:1\/other, which XML-RPC calls do not follow; use that URL if you trust it$/,
    );
    return true;
  });
  assert.deepEqual(seen, ["/rpc true"]);
});

Deno.test("createXmlRpcClient() refuses headers it controls and malformed credentials", () => {
  const url = "https://localhost/";
  assert.throws(
    () => createXmlRpcClient(url, null as unknown as XmlRpcCallOptions),
    /^TypeError: Cannot create the XML-RPC client: expected an options object, got null$/,
  );
  for (
    const name of [
      "Host",
      "content-length",
      "Content-Type",
      "transfer-encoding",
      "connection",
      "expect",
    ]
  ) {
    assert.throws(
      () => createXmlRpcClient(url, { headers: { [name]: SECRET } }),
      (error) => {
        assertNoSecret(error);
        assert.ok(error instanceof TypeError);
        assert.equal(
          error.message,
          `Cannot create the XML-RPC client: headers may not set "${name.toLowerCase()}"; the client sets it itself`,
        );
        return true;
      },
    );
  }
  assert.throws(
    () => createXmlRpcClient(url, { headers: { "bad name": SECRET } }),
    (error) => {
      assertNoSecret(error);
      assert.match(String(error), /headers holds an invalid header name/);
      return true;
    },
  );
  assert.throws(
    () =>
      createXmlRpcClient(url, {
        headers: { authorization: `Bearer ${SECRET}` },
        basicAuth: { username: "ann", password: SECRET },
      }),
    /headers sets "authorization" and basic auth is given too/,
  );
  assert.throws(
    () =>
      createXmlRpcClient(url, {
        basicAuth: { username: "a:b", password: SECRET },
      }),
    (error) => {
      assertNoSecret(error);
      assert.match(String(error), /user name holds ":"/);
      return true;
    },
  );
  assert.throws(
    () =>
      createXmlRpcClient(url, {
        basicAuth: { username: "ann" } as {
          username: string;
          password: string;
        },
      }),
    /basicAuth must be \{ username: string, password: string \}/,
  );
  assert.throws(
    () =>
      createXmlRpcClient(url, {
        basicAuth: { username: "ann", password: `${SECRET}\n` },
      }),
    /control character/,
  );
});

Deno.test("XmlRpcClient.invoke() takes a per-call timeout and signal", async () => {
  const stall = Promise.withResolvers<void>();
  const handler = createXmlRpcHandler({
    slow: async () => {
      await stall.promise;
      return 1;
    },
    fast: () => 2,
  });
  await using server = serveHttp(handler);
  const clientAbort = new AbortController();
  await using client = createXmlRpcClient(
    `http://127.0.0.1:${server.addr.port}/`,
    { timeout: 30_000, signal: clientAbort.signal },
  );
  const started = Date.now();
  await assert.rejects(
    client.invoke("slow", [], { timeout: 100 }),
    (error) => {
      assert.ok(error instanceof DOMException);
      assert.equal(error.name, "TimeoutError");
      assert.match(error.message, /Cannot call "slow": timed out after 100 ms/);
      return true;
    },
  );
  assert.ok(Date.now() - started < 20_000, "the call's timeout was used");
  const controller = new AbortController();
  const pending = client.invoke("slow", [], { signal: controller.signal });
  controller.abort(new Error("user gave up"));
  await assert.rejects(pending, /user gave up/);
  // The call's signal ended that call only; the client still works.
  assert.equal(await client.invoke("fast"), 2);
  assert.equal(await client.invoke("fast", [], {}), 2);
  // The client's signal still applies under a call's options.
  const both = client.invoke("slow", [], { timeout: 60_000 });
  clientAbort.abort(new Error("client closed down"));
  await assert.rejects(both, /client closed down/);
  await assert.rejects(
    client.invoke("fast", [], { timeout: 0 }),
    RangeError,
  );
  await assert.rejects(
    client.invoke("fast", [], null as unknown as XmlRpcCallOptions),
    /Cannot call "fast": expected an options object, got null/,
  );
  await assert.rejects(
    client.invoke("fast", "ab" as unknown as []),
    /Cannot call "fast": params must be an array, got string/,
  );
  stall.resolve();
});

Deno.test("XmlRpcClient.multicall() returns a value or an XmlRpcFault per call", async () => {
  let requests = 0;
  const handler = createXmlRpcHandler({
    add: (a, b) => Number(a) + Number(b),
    fail() {
      throw new XmlRpcFault(3, "no");
    },
  }, { multicall: true, maxMulticalls: 3 });
  await using server = serveHttp((request) => {
    requests++;
    return handler(request);
  });
  await using client = createXmlRpcClient(
    `http://127.0.0.1:${server.addr.port}/`,
  );
  const results = await client.multicall([
    { method: "add", params: [1, 2] },
    { method: "fail", params: [] },
    { method: "system.listMethods" },
  ]);
  assert.equal(requests, 1);
  assert.equal(results[0], 3);
  assert.ok(results[1] instanceof XmlRpcFault);
  assert.equal(results[1].faultCode, 3);
  assert.equal(results[1].faultString, "no");
  assert.ok(Array.isArray(results[2]) && results[2].includes("add"));
  assert.deepEqual(await client.multicall([]), []);
  // The whole request refused: thrown.
  await assert.rejects(
    client.multicall(
      Array.from({ length: 4 }, () => ({ method: "add", params: [1, 1] })),
    ),
    (error) => {
      assert.ok(error instanceof XmlRpcFault);
      assert.equal(error.faultCode, -32602);
      assert.match(error.faultString, /4 calls, over the limit of 3/);
      return true;
    },
  );
  await assert.rejects(
    client.multicall([{ method: "bad name" }]),
    /call 1 must be \{ method, params\? \}/,
  );
  await assert.rejects(
    client.multicall([{ method: "add", params: "x" as unknown as [] }]),
    TypeError,
  );
});

Deno.test("XmlRpcClient.multicall() refuses an answer that does not fit the calls", async () => {
  let answer: unknown = [];
  await using server = serveHttp(() =>
    new Response(encodeMethodResponse(answer))
  );
  await using client = createXmlRpcClient(
    `http://127.0.0.1:${server.addr.port}/`,
  );
  const cases: [unknown, RegExp][] = [
    [[[1]], /expected an array of 2 answers, got 1/],
    ["x", /expected an array of 2 answers, got string/],
    [[[1], [1, 2]], /answer 2 is neither a one-element array nor/],
    [[[1], { faultCode: "1", faultString: "x" }], /answer 2 is neither/],
  ];
  for (const [value, pattern] of cases) {
    answer = value;
    await assert.rejects(
      client.multicall([{ method: "a" }, { method: "b" }]),
      (error) => {
        assert.ok(error instanceof ProtocolError, String(error));
        assert.match(
          error.message,
          /^Cannot run system\.multicall on http:\/\/127\.0\.0\.1:\d+\/: /,
        );
        assert.match(error.message, pattern);
        return true;
      },
    );
  }
});

Deno.test("createXmlRpcClient() reads caFile, certFile and keyFile, and names a path passed as PEM", async () => {
  const { ca, server, clients } = await generateCertificates({
    clients: ["alice"],
  });
  const dir = await Deno.makeTempDir({ prefix: "connauth-xmlrpc-" });
  try {
    const files = {
      ca: `${dir}/ca.pem`,
      cert: `${dir}/alice.pem`,
      key: `${dir}/alice-key.pem`,
    };
    await Deno.writeTextFile(files.ca, ca.cert);
    await Deno.writeTextFile(files.cert, clients.alice.cert);
    await Deno.writeTextFile(files.key, clients.alice.key);
    const handler = createXmlRpcHandler({ who: () => "ok" });
    await using https = await serveHttps({
      cert: server.cert,
      key: server.key,
      clientCa: ca.cert,
    }, (request) => handler(request));
    const url = `https://localhost:${https.addr.port}/`;
    {
      await using client = createXmlRpcClient(url, {
        caFile: files.ca,
        certFile: files.cert,
        keyFile: files.key,
      });
      assert.equal(await client.call("who"), "ok");
    }
    {
      // Untrusted: the CA is missing; the message says which option helps.
      await using client = createXmlRpcClient(url, {
        certFile: files.cert,
        keyFile: files.key,
      });
      await assert.rejects(client.call("who"), (error) => {
        assert.ok(error instanceof TypeError, String(error));
        assert.match(
          error.message,
          /^Cannot call "who" on https:\/\/localhost:\d+\/: .*UnknownIssuer.*; the server's certificate is not trusted: pass the CA that signed it in caCerts or caFile$/,
        );
        return true;
      });
    }
    const cannot = "Cannot create the XML-RPC client: ";
    const cases: [Record<string, unknown>, RegExp | string][] = [
      [
        { caCerts: [files.ca] },
        `${cannot}caCerts "${
          files.ca.length > 40 ? `${files.ca.slice(0, 40)}...` : files.ca
        }" looks like a file path, not PEM text; pass it as caFile`,
      ],
      [
        { cert: "certs/alice.pem", key: clients.alice.key },
        `${cannot}cert "certs/alice.pem" looks like a file path, not PEM text; pass it as certFile`,
      ],
      [
        { cert: clients.alice.cert, key: "certs/alice-key.pem" },
        `${cannot}key looks like a file path, not PEM text; pass it as keyFile`,
      ],
      [
        { cert: clients.alice.cert, key: SECRET },
        `${cannot}key must be PEM text ("-----BEGIN ..."); to read it from a file, pass keyFile`,
      ],
      [{ caCerts: "x" }, /caCerts must be an array of PEM texts/],
      [
        { caCerts: [ca.cert], caFile: files.ca },
        /caCerts .* or caFile .*, not both/,
      ],
      [
        { cert: clients.alice.cert, certFile: files.cert, keyFile: files.key },
        /pass cert \(PEM text\) or certFile \(a path\), not both/,
      ],
      [{ certFile: files.cert }, /cert and key go together/],
      [{ caFile: files.key.replace("alice", "nobody") }, /does not exist/],
      [{ caFile: 5 }, /caFile must be a path string, got number/],
    ];
    for (const [options, expected] of cases) {
      assert.throws(() => createXmlRpcClient(url, options), (error) => {
        assertNoSecret(error);
        assert.ok(error instanceof Error);
        if (typeof expected === "string") {
          assert.equal(error.message, expected);
        } else {
          assert.match(error.message, expected);
        }
        return true;
      }, JSON.stringify(options).slice(0, 80));
    }
    assert.throws(
      () => createXmlRpcClient(url, { caFile: `${dir}/none.pem` }),
      Deno.errors.NotFound,
    );
    await Deno.writeTextFile(`${dir}/empty.pem`, "nothing here");
    assert.throws(
      () => createXmlRpcClient(url, { caFile: `${dir}/empty.pem` }),
      /holds no PEM block/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createXmlRpcClient() names the URL and the cause when the server cannot be reached", async () => {
  await using plain = serveHttp(() => new Response("plain"));
  const cases: [string, RegExp][] = [
    [
      `http://127.0.0.1:${closedPort()}/`,
      /^Cannot call "add" on http:\/\/127\.0\.0\.1:\d+\/: connection refused; is the server running\?$/,
    ],
    [
      `https://127.0.0.1:${plain.addr.port}/`,
      /^Cannot call "add" on https:\/\/127\.0\.0\.1:\d+\/: .*; the server does not speak TLS: use an http:\/\/ URL$/,
    ],
  ];
  for (const [url, pattern] of cases) {
    await using client = createXmlRpcClient(url, { timeout: 10_000 });
    await assert.rejects(client.call("add", 1, 2), (error) => {
      assert.ok(error instanceof Error, String(error));
      assert.match(error.message, pattern);
      assert.ok(
        error.cause instanceof TypeError,
        "the fetch error is the cause",
      );
      return true;
    });
  }
});
