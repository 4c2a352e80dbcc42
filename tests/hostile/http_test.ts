// Hostile HTTP peers: nothing a client sends before it authenticates may
// crash, stall or bloat serveHttps(). The request parser (_http1_*.ts) tested
// directly, then the attacks over TLS, against Python's xmlrpc.client, and
// against the key-value example in a child process whose memory and CPU are
// read from /proc.
import assert from "node:assert/strict";
import process from "node:process";
import { type CertificateSet, generateCertificates } from "../../certs.ts";
import { type HttpRefusal, parseHead } from "../../_http1_parse.ts";
import { Http1Reader } from "../../_http1_reader.ts";
import {
  type HttpsConn,
  type HttpsErrorInfo,
  serveHttps,
} from "../../https.ts";
import { createXmlRpcClient, createXmlRpcHandler } from "../../xmlrpc.ts";
import {
  findPython,
  interopScript,
  peerTest,
  startExample,
  within,
} from "../_helpers.ts";
import {
  exchange,
  pieces,
  readText,
  servePair,
  streamOf,
} from "../_http1_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

let shared: CertificateSet | undefined;
async function certs(): Promise<CertificateSet> {
  shared ??= await generateCertificates({ clients: ["alice", "mallory"] });
  return shared;
}

/** Asserts that `fn` throws an HttpRefusal with `status` and a message. */
function refuses(fn: () => unknown, status: number, message?: RegExp): void {
  assert.throws(fn, (error: HttpRefusal) => {
    assert.equal(error.name, "HttpRefusal");
    assert.equal(error.status, status, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

async function rejects(
  promise: Promise<unknown>,
  status: number,
  message?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: HttpRefusal) => {
    assert.equal(error.name, "HttpRefusal");
    assert.equal(error.status, status, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

// ---------------------------------------------------------------------------
// parseHead(): a pure function of the head's text

Deno.test("parseHead() reads the request line, headers, body length and connection options", () => {
  const head = parseHead(
    "POST /a?b=1 HTTP/1.1\r\nHost: example.com:8443\r\nContent-Length: 12\r\n" +
      "X-Pad:  \t spaced value\t \r\nExpect: 100-continue\r\nConnection: close",
    100,
  );
  assert.deepEqual(head, {
    method: "POST",
    target: "/a?b=1",
    minor: 1,
    headers: [
      ["Host", "example.com:8443"],
      ["Content-Length", "12"],
      ["X-Pad", "spaced value"],
      ["Expect", "100-continue"],
      ["Connection", "close"],
    ],
    host: "example.com:8443",
    contentLength: 12,
    keepAlive: false,
    expectContinue: true,
  });
  const old = parseHead("GET http://x/y HTTP/1.0\r\nConnection: keep-alive", 1);
  assert.equal(old.minor, 0);
  assert.equal(old.host, null);
  assert.equal(old.keepAlive, true);
  assert.equal(parseHead("GET / HTTP/1.0", 0).keepAlive, false);
  const chunked = parseHead(
    "PUT / HTTP/1.1\r\nHost: [::1]:80\r\nTransfer-Encoding: Chunked",
    2,
  );
  assert.equal(chunked.contentLength, -1);
  assert.equal(chunked.keepAlive, true);
  // A method outside the six a Request upper-cases is kept as sent.
  assert.equal(parseHead("patch / HTTP/1.1\r\nHost: x", 1).method, "patch");
  assert.equal(
    parseHead("OPTIONS * HTTP/1.1\r\nHost: x", 1).target,
    "*",
  );
});

Deno.test("parseHead() refuses malformed heads with the status RFC 9112 asks for", () => {
  const cases: [string, number, RegExp][] = [
    ["garbage", 400, /request line/],
    ["GET  / HTTP/1.1\r\nHost: x", 400, /request line/],
    ["GET / HTTP/1.1\nHost: x", 400, /bare CR or LF/],
    ["GET / HTTP/1.1\r\nHost: x\rY: z", 400, /bare CR or LF/],
    ["GET / HTTP/2.0\r\nHost: x", 505, /HTTP\/2.0 is not supported/],
    ["GET / HTTPS/1.1\r\nHost: x", 400, /HTTP\/1.x/],
    ["GET nopath HTTP/1.1\r\nHost: x", 400, /target/],
    ["GET * HTTP/1.1\r\nHost: x", 400, /target/],
    ["GET / HTTP/1.1", 400, /exactly one Host header, got 0/],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: a", 400, /got 2/],
    ["GET / HTTP/1.0\r\nHost: a\r\nHost: b", 400, /at most, got 2/],
    ["GET / HTTP/1.1\r\nHost: x\r\nNo colon", 400, /NAME: VALUE/],
    ["GET / HTTP/1.1\r\nHost : x", 400, /NAME: VALUE/],
    ["GET / HTTP/1.1\r\nHost: x\r\n folded", 400, /folded/],
    ["GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b", 400, /control character/],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3", 400, /decimal/],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3", 400, /decimal/],
    [
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1",
      400,
      /twice/,
    ],
    [
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked",
      400,
      /with Content-Length/,
    ],
    [
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked",
      400,
      /on HTTP\/1.0/,
    ],
  ];
  for (const [text, status, message] of cases) {
    refuses(() => parseHead(text, 10), status, message);
  }
  refuses(
    () => parseHead("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2", 2),
    431,
    /3 header lines, over the limit of 2/,
  );
});

Deno.test("parseHead() takes chunked only as the final transfer coding, once", () => {
  const te = (value: string) =>
    parseHead(
      `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ${value}`,
      5,
    );
  // RFC 9112, 6.3: chunked not last (or twice, or absent) means the body's
  // length cannot be known: 400, not 501.
  for (const value of ["chunked, gzip", "gzip", "chunked, chunked", ""]) {
    refuses(() => te(value), 400, /does not end in chunked/);
  }
  refuses(
    () =>
      parseHead(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
        5,
      ),
    400,
  );
  // Chunked last, after a coding we do not decode: 501.
  refuses(() => te("gzip, chunked"), 501, /not supported/);
  assert.equal(te("chunked").contentLength, -1);
  assert.equal(te(" , chunked ,").contentLength, -1);
});

Deno.test("parseHead() treats methods as case-sensitive and refuses those a Request cannot carry", () => {
  for (const method of ["post", "Get", "delete", "pUT", "options", "head"]) {
    refuses(
      () => parseHead(`${method} / HTTP/1.1\r\nHost: x`, 1),
      501,
      new RegExp(`"${method}" is not supported; methods are case-sensitive`),
    );
  }
  for (const method of ["CONNECT", "TRACE", "TRACK", "connect", "trace"]) {
    refuses(
      () => parseHead(`${method} / HTTP/1.1\r\nHost: x`, 1),
      501,
      new RegExp(`"${method}" is not supported$`),
    );
  }
});

Deno.test("parseHead() checks that Host is a host and an optional port", () => {
  for (
    const host of [
      "example.com",
      "example.com:443",
      "127.0.0.1:8080",
      "[::1]:8443",
      "xn--bcher-kva.example",
      "a_b.example:",
      "",
    ]
  ) {
    assert.equal(parseHead(`GET / HTTP/1.1\r\nHost: ${host}`, 1).host, host);
  }
  for (
    const host of [
      "a/b",
      "evil.example/admin",
      "user@good.example",
      "a b",
      "good.example:80:80",
      "good.example:http",
      "[::1",
      "a\\b",
      "a?b",
      "a#b",
    ]
  ) {
    refuses(
      () => parseHead(`GET / HTTP/1.1\r\nHost: ${host}`, 1),
      400,
      /Host header .* is not a host and optional port/,
    );
  }
});

// ---------------------------------------------------------------------------
// Http1Reader: heads and bodies from a byte stream

function readerOf(chunks: Iterable<Uint8Array>, end = true): Http1Reader {
  return new Http1Reader(streamOf(chunks, end), () => {});
}

const LIMITS = {
  maxBodySize: 1 << 20,
  maxHeaderSize: 16384,
  maxHeaderCount: 100,
};

Deno.test("Http1Reader.readHead() refuses LF-only line endings at once, without waiting for more", async () => {
  for (
    const text of [
      "GET / HTTP/1.1\nHost: x\n\n",
      "GET / HTTP/1.1\r\nHost: x\n\n",
      "\nGET / HTTP/1.1\r\n",
      "GET / HTTP/1.1\r\nHost: x\rX: y\r\n",
    ]
  ) {
    // The stream stays open: an answer must not wait for a CRLF CRLF.
    const reader = readerOf([encoder.encode(text)], false);
    await rejects(
      within(reader.readHead(16384, 100), 2000, JSON.stringify(text)),
      400,
      /bare CR or LF/,
    );
  }
});

Deno.test("Http1Reader.readHead() reads the same head however it is split, skipping empty lines before it", async () => {
  const text =
    "\r\n\r\nPOST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /y HTTP/1.1\r\nHost: h\r\n\r\n";
  const bytes = encoder.encode(text);
  for (const size of [1, 2, 3, 7, 64, bytes.length]) {
    const reader = readerOf(pieces(bytes, size));
    const first = await reader.readHead(16384, 100);
    assert.equal(first?.target, "/x", `pieces of ${size}`);
    assert.deepEqual(
      decoder.decode(await reader.readBody(first!.contentLength, LIMITS)),
      "abc",
    );
    const second = await reader.readHead(16384, 100);
    assert.equal(second?.target, "/y");
    assert.equal(await reader.readHead(16384, 100), null, "clean EOF");
  }
  // A lone CR split from its LF, before the request line.
  const split = readerOf([
    encoder.encode("\r"),
    encoder.encode("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
  ]);
  assert.equal((await split.readHead(16384, 100))?.method, "GET");
  // Empty lines count against the header limit.
  const endless = readerOf(pieces(encoder.encode("\r\n".repeat(600)), 10));
  await rejects(endless.readHead(1024, 100), 400, /empty lines/);
  // EOF in the middle of a head.
  await rejects(
    readerOf([encoder.encode("GET / HTTP/1.1\r\nHo")]).readHead(1024, 100),
    400,
    /middle of the headers/,
  );
});

/** CPU time (user + system) of this process spent in `fn`, in µs. */
async function cpuOf(fn: () => Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(before);
  return used.user + used.system;
}

Deno.test("Http1Reader costs CPU linear in the bytes of a head or body that comes in small pieces", async () => {
  // The same bytes, 64 at a time, as one 1 MiB head (or body) or as 16 of
  // 64 KiB: linear work costs about the same (less than twice: caches);
  // copying the whole buffer on every piece (the old reader) cost 30 times
  // more for the big one.
  const head = (size: number) => {
    const start = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ";
    const text = `${start}${"a".repeat(size - start.length - 4)}\r\n\r\n`;
    return encoder.encode(text);
  };
  const body = (size: number) => {
    const start = encoder.encode(
      `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`,
    );
    const bytes = new Uint8Array(start.length + size).fill(98);
    bytes.set(start);
    return bytes;
  };
  const limits = { ...LIMITS, maxHeaderSize: 2 << 20, maxBodySize: 2 << 20 };
  const readAll = async (bytes: Uint8Array) => {
    const reader = readerOf(pieces(bytes, 64));
    const parsed = await reader.readHead(limits.maxHeaderSize, 100);
    const got = await reader.readBody(parsed!.contentLength, limits);
    assert.equal(got.length, parsed!.contentLength);
  };
  for (const make of [head, body]) {
    await readAll(make(64 * 1024)); // warm up
    const big = make(1 << 20);
    const small = make(64 * 1024);
    const once = await cpuOf(() => readAll(big));
    const sixteen = await cpuOf(async () => {
      for (let i = 0; i < 16; i++) await readAll(small);
    });
    assert.ok(
      once < 4 * sixteen,
      `${make.name}: one 1 MiB took ${once} µs of CPU, sixteen 64 KiB ${sixteen} µs`,
    );
  }
});

/** A chunked body of `count` chunks of `size` bytes ('c'), then `end`. */
function chunked(count: number, size: number, end = "0\r\n\r\n"): Uint8Array {
  const one = `${size.toString(16)}\r\n${"c".repeat(size)}\r\n`;
  return encoder.encode(one.repeat(count) + end);
}

Deno.test("Http1Reader.readBody() decodes chunked bodies into one buffer and bounds chunks and framing", async () => {
  const read = (bytes: Uint8Array, limits = LIMITS, size = 1500) =>
    readerOf(pieces(bytes, size)).readBody(-1, limits);
  const body = await read(chunked(4096, 256));
  assert.equal(body.length, 1 << 20);
  assert.ok(body.every((byte) => byte === 99));
  // 16-byte chunks fill the 1 MiB limit exactly: 65536 chunks, allowed.
  assert.equal((await read(chunked(65536, 16), LIMITS, 65536)).length, 1 << 20);
  // One chunk more is over the chunk count, before its data is read.
  await rejects(
    read(chunked(65537, 15), LIMITS, 65536),
    413,
    /over 65536 chunks; send bigger chunks/,
  );
  // 1-byte chunks of a 1 MiB body: refused after 65536 chunks, not stored
  // as a million arrays.
  await rejects(
    read(chunked(1 << 20, 1), LIMITS, 65536),
    413,
    /over 65536 chunks/,
  );
  // Small limits still allow 1024 chunks.
  const small = { ...LIMITS, maxBodySize: 2048 };
  assert.equal((await read(chunked(1024, 2), small)).length, 2048);
  await rejects(read(chunked(1025, 1), small), 413, /over 1024 chunks/);
  // Over the body limit: refused on the size line, before the data.
  await rejects(read(chunked(1, 2049), small), 413, /over the 2048-byte limit/);
  await rejects(
    read(encoder.encode("fffffffffffffffffff\r\n"), small),
    413,
    /over the 2048-byte limit/,
  );
  // Extensions count as framing: data plus header limit at most.
  const ext = encoder.encode(
    `1;${"e".repeat(1000)}\r\nc\r\n`.repeat(100) + "0\r\n\r\n",
  );
  await rejects(
    read(ext, { ...LIMITS, maxBodySize: 4096, maxHeaderSize: 16384 }),
    413,
    /chunk framing is over 20480 bytes/,
  );
  await rejects(
    read(encoder.encode(`1;${"e".repeat(1100)}\r\nc\r\n0\r\n\r\n`)),
    400,
    /chunk-size line is over 1024 bytes/,
  );
  for (
    const bad of ["x\r\n", "\r\n", "1 x\r\nc\r\n", "-1\r\n", "1;\x01\r\nc\r\n"]
  ) {
    await rejects(read(encoder.encode(bad)), 400, /not hexadecimal/);
  }
  await rejects(read(encoder.encode("2\r\nabc\r\n")), 400, /longer than/);
  await rejects(read(encoder.encode("5\r\nab")), 400, /before the end/);
  // Extensions and blanks after the size are allowed.
  assert.equal(
    decoder.decode(
      await read(encoder.encode('3 \t;a=1;b="x y"\r\nabc\r\n0;z\r\n\r\n')),
    ),
    "abc",
  );
});

Deno.test("Http1Reader.readBody() checks trailer lines as header lines and bounds them like headers", async () => {
  const read = (trailers: string) =>
    readerOf([encoder.encode(`3\r\nabc\r\n0\r\n${trailers}`)]).readBody(-1, {
      ...LIMITS,
      maxHeaderSize: 1024,
      maxHeaderCount: 3,
    });
  assert.equal(
    decoder.decode(await read("X-Sum: 1\r\nX-Other:2\r\n\r\n")),
    "abc",
  );
  // A bare LF would let a request hide in a trailer, for a front end that
  // ends lines at LF.
  await rejects(
    read("X: y\nGET /smug HTTP/1.1\r\n\r\n"),
    400,
    /bare CR or LF/,
  );
  await rejects(read("X: y\rGET /smug\r\n\r\n"), 400, /bare CR or LF/);
  await rejects(read("GET /smug HTTP/1.1\r\n\r\n"), 400, /trailer line is not/);
  await rejects(read(" folded\r\n\r\n"), 400, /folded trailer/);
  await rejects(read("X: a\x7fb\r\n\r\n"), 400, /control character/);
  await rejects(read("A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), 431, /3 trailer/);
  await rejects(
    read(`A: ${"a".repeat(600)}\r\nB: ${"b".repeat(600)}\r\n\r\n`),
    431,
    /trailers are over the 1024-byte limit/,
  );
});

Deno.test("Http1Reader.readBody() reads a Content-Length body into a buffer of that size", async () => {
  const head = encoder.encode(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
  );
  const all = new Uint8Array(head.length + 100000 + 5);
  all.set(head);
  all.fill(7, head.length, head.length + 100000);
  all.set(encoder.encode("NEXT!"), head.length + 100000);
  for (const size of [1000, 4096, all.length]) {
    const reader = readerOf(pieces(all, size));
    const parsed = await reader.readHead(1024, 10);
    const body = await reader.readBody(parsed!.contentLength, LIMITS);
    assert.equal(body.length, 100000);
    assert.equal(body.buffer.byteLength, 100000, "no slack past the body");
    assert.ok(body.every((byte) => byte === 7));
    assert.equal(reader.buffered, Math.min(5, all.length - head.length));
  }
  await rejects(
    readerOf([]).readBody(LIMITS.maxBodySize + 1, LIMITS),
    413,
    /1048577 bytes, over the 1048576-byte limit/,
  );
});

// ---------------------------------------------------------------------------
// serveHttp1(): guarded callbacks and the bounded lingering

Deno.test("serveHttp1() reports a throw in parsing or in the handler to onError and closes only that connection", async () => {
  const errors: unknown[] = [];
  // Parsing: a stream that hands over something that is not bytes.
  {
    const { session, client, closes } = servePair(
      { onError: (error) => errors.push(error) },
      undefined,
      streamOf([undefined as unknown as Uint8Array], false),
    );
    const text = await readText(client.readable);
    await within(session.done, 5000, "the session");
    assert.match(text, /^HTTP\/1.1 500 [^]*the server failed\n$/);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof TypeError, String(errors[0]));
    assert.equal(closes(), 1);
  }
  // A handler that throws (it should answer 500 itself), and an onError
  // hook that throws too: still one connection closed, nothing escapes.
  {
    const { session, client } = servePair(
      {
        onError: (error) => {
          errors.push(error);
          throw new Error("hook bug");
        },
      },
      () => Promise.reject(new Error("handler bug")),
    );
    const writer = client.writable.getWriter();
    await writer.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const text = await readText(client.readable);
    await within(session.done, 5000, "the session");
    assert.match(text, /^HTTP\/1.1 500 /);
    assert.equal((errors[1] as Error).message, "handler bug");
    await writer.close().catch(() => {});
  }
});

Deno.test("serveHttp1() lingers after a refusal for lingerBytes, keepAliveTimeout of silence and requestTimeout at most", async () => {
  const refused = encoder.encode(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
  );
  // Bytes: the client goes on sending, 1000 bytes at a time; the server
  // reads and drops 10 000 of them, then closes.
  {
    const { session, client } = servePair({ lingerBytes: 10_000 });
    const writer = client.writable.getWriter();
    await writer.write(refused);
    const reading = readText(client.readable);
    let sent = 0;
    const sending = (async () => {
      try {
        for (; sent < 1000; sent++) await writer.write(new Uint8Array(1000));
      } catch {
        // closed under us
      }
    })();
    await within(session.done, 5000, "the session");
    assert.match(await reading, /^HTTP\/1.1 413 /);
    await writer.abort().catch(() => {});
    await sending;
    // 10 KB read and dropped after the 413 (give or take what the pipe
    // holds), then the close: not the whole megabyte.
    assert.ok(sent >= 10 && sent <= 20, `${sent} KB were read`);
  }
  // Silence: a client that sends nothing more and does not close.
  {
    const { session, client } = servePair({
      keepAliveTimeout: 200,
      requestTimeout: 5000,
    });
    const writer = client.writable.getWriter();
    await writer.write(refused);
    const start = performance.now();
    await within(session.done, 5000, "the session");
    const ms = performance.now() - start;
    assert.ok(ms > 150 && ms < 3000, `closed after ${ms} ms`);
    assert.match(await readText(client.readable), /^HTTP\/1.1 413 /);
    await writer.abort().catch(() => {});
  }
  // Time: a client that sends a byte every 50 ms, never silent.
  {
    const { session, client } = servePair({
      keepAliveTimeout: 200,
      requestTimeout: 600,
    });
    const writer = client.writable.getWriter();
    await writer.write(refused);
    const start = performance.now();
    let done = false;
    session.done.then(() => done = true);
    for (let i = 0; i < 200 && !done; i++) {
      await writer.write(new Uint8Array([120])).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const ms = performance.now() - start;
    assert.ok(done, "still lingering after 10 s");
    assert.ok(ms > 500 && ms < 4000, `closed after ${ms} ms`);
    assert.match(await readText(client.readable), /^HTTP\/1.1 413 /);
    await writer.abort().catch(() => {});
  }
});

// ---------------------------------------------------------------------------
// serveHttps(): the attacks over TLS

/** A plain-TLS server that answers method, URL and body length. */
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
    seen.push(`${request.method} ${request.url}`);
    return new Response(`${request.method} ${request.url} ${body.length}`);
  });
}

Deno.test("serveHttps() takes a path's authority from Host: a target starting with // or /\\ stays a path", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, {}, seen);
  const port = server.addr.port;
  const get = (target: string, host = "good.example") =>
    exchange(
      port,
      set.ca.cert,
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    );
  for (
    const [target, url] of [
      ["//evil.example/admin", "https://good.example//evil.example/admin"],
      ["/\\evil.example/admin", "https://good.example//evil.example/admin"],
      ["//evil.example:99/a?b", "https://good.example//evil.example:99/a?b"],
      ["/plain?q=1", "https://good.example/plain?q=1"],
    ]
  ) {
    const { text } = await get(target);
    assert.match(text, /^HTTP\/1.1 200 /, target);
    assert.equal(seen.at(-1), `GET ${url}`, target);
  }
  // No Host (HTTP/1.0), or an empty one: the server's own address.
  await exchange(port, set.ca.cert, "GET //evil.example/x HTTP/1.0\r\n\r\n");
  assert.equal(seen.at(-1), `GET https://127.0.0.1:${port}//evil.example/x`);
  await get("//evil.example/y", "");
  assert.equal(seen.at(-1), `GET https://127.0.0.1:${port}//evil.example/y`);
  // An absolute URL keeps its own authority (RFC 9112, 3.2.2).
  await get("https://other.example/z");
  assert.equal(seen.at(-1), "GET https://other.example/z");
  // A Host that is not host[:port] is a 400, not a URL elsewhere.
  const count = seen.length;
  for (const host of ["evil.example/admin", "a@evil.example", "x:99999"]) {
    const { text, closed } = await get("/", host);
    assert.match(text, /^HTTP\/1.1 400 /, host);
    assert.ok(closed);
  }
  assert.equal(seen.length, count);
});

Deno.test("serveHttps() answers 400 at once to a request with LF-only line endings", async () => {
  const set = await certs();
  // Long deadlines: the answer must not be the 408 of a request that never
  // ends.
  await using server = await echoServer(set, {
    keepAliveTimeout: 20_000,
    requestTimeout: 20_000,
  });
  const start = performance.now();
  const { text, closed } = await exchange(
    server.addr.port,
    set.ca.cert,
    "GET / HTTP/1.1\nHost: x\n\n",
    3000,
  );
  assert.match(text, /^HTTP\/1.1 400 [^]*bare CR or LF/);
  assert.ok(closed);
  assert.ok(performance.now() - start < 3000);
});

Deno.test("serveHttps() answers 501 to a lower-case standard method, and to CONNECT or TRACE", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, {}, seen);
  for (
    const request of [
      "post / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
      "get / HTTP/1.1\r\nHost: x\r\n\r\n",
      "CONNECT good.example:443 HTTP/1.1\r\nHost: good.example:443\r\n\r\n",
      "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
  ) {
    const { text, closed } = await exchange(
      server.addr.port,
      set.ca.cert,
      request,
    );
    assert.match(text, /^HTTP\/1.1 501 [^]*is not supported/, request);
    assert.ok(closed);
  }
  assert.deepEqual(seen, []);
});

Deno.test("serveHttps() answers 400 to Transfer-Encoding: chunked, gzip", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, {}, seen);
  const { text, closed } = await exchange(
    server.addr.port,
    set.ca.cert,
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  );
  assert.match(text, /^HTTP\/1.1 400 [^]*does not end in chunked/);
  assert.ok(closed);
  assert.deepEqual(seen, []);
});

Deno.test("serveHttps() refuses a trailer that hides a request behind a bare LF", async () => {
  const set = await certs();
  const seen: string[] = [];
  await using server = await echoServer(set, {}, seen);
  const { text, closed } = await exchange(
    server.addr.port,
    set.ca.cert,
    "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "3\r\nabc\r\n0\r\nX: y\nGET /smug HTTP/1.1\r\n\r\n",
  );
  assert.match(text, /^HTTP\/1.1 400 [^]*bare CR or LF/);
  assert.ok(closed);
  assert.deepEqual(seen, []);
});

/**
 * Sends `head` and then `bodySize` bytes on a fresh TLS connection while
 * reading: what came back, whether the server closed cleanly (an EOF, not
 * a reset), and how many bytes the client could send.
 */
async function sendWhileReading(
  port: number,
  set: CertificateSet,
  head: string,
  bodySize: number,
  who?: { cert: string; key: string },
): Promise<{ text: string; clean: boolean; sent: number; error?: string }> {
  using conn = await Deno.connectTls({
    hostname: "localhost",
    port,
    caCerts: [set.ca.cert],
    ...(who ?? {}),
  });
  let text = "";
  let clean = false;
  let error: string | undefined;
  const reading = (async () => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) {
          clean = true;
          break;
        }
        text += decoder.decode(buffer.subarray(0, n));
      }
    } catch (cause) {
      error = `read: ${cause}`;
    }
  })();
  const bytes = new Uint8Array(head.length + bodySize).fill(120);
  bytes.set(encoder.encode(head));
  let sent = 0;
  try {
    while (sent < bytes.length) sent += await conn.write(bytes.subarray(sent));
  } catch (cause) {
    error ??= `write after ${sent} bytes: ${cause}`;
  }
  await within(reading, 10_000, "the response");
  return { text, clean, sent, error };
}

Deno.test("serveHttps() lets a client that is still sending read its refusal (400, 403, 413, 431, 501) instead of a reset", async () => {
  const set = await certs();
  const errors: unknown[] = [];
  const seen: string[] = [];
  await using server = await echoServer(set, {
    clientCa: set.ca.cert,
    allow: { cn: ["alice"] },
    maxBodySize: 1000,
    maxHeaderSize: 1024,
    onError: (error) => errors.push(error),
  }, seen);
  const port = server.addr.port;
  const alice = set.clients.alice;
  const big = 4 << 20;
  const cases: [string, RegExp, { cert: string; key: string }][] = [
    [
      `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${big}\r\n\r\n`,
      /^HTTP\/1.1 413 [^]*over the 1000-byte limit\n$/,
      alice,
    ],
    [
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
      `${big.toString(16)}\r\n`,
      /^HTTP\/1.1 413 /,
      alice,
    ],
    [
      `POST / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2000)}\r\n\r\n`,
      /^HTTP\/1.1 431 /,
      alice,
    ],
    [
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4 MiB\r\n\r\n",
      /^HTTP\/1.1 400 [^]*not a decimal number\n$/,
      alice,
    ],
    [
      `post / HTTP/1.1\r\nHost: x\r\nContent-Length: ${big}\r\n\r\n`,
      /^HTTP\/1.1 501 /,
      alice,
    ],
    [
      `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${big}\r\n\r\n`,
      /^HTTP\/1.1 403 [^]*"mallory" is not in the allow-list\n$/,
      set.clients.mallory,
    ],
  ];
  for (const [head, expected, who] of cases) {
    const got = await sendWhileReading(port, set, head, big, who);
    const what = `${head.slice(0, 60)}: ${got.error ?? ""}`;
    assert.match(got.text, expected, what);
    assert.ok(got.clean, what);
    assert.equal(got.sent, head.length + big, what);
  }
  assert.deepEqual(seen, []);
  assert.deepEqual(errors, []);
});

Deno.test("serveHttps() on a Deno.listen() listener half-closes after a refusal and lets the client read it", async () => {
  const seen: string[] = [];
  await using server = await serveHttps({
    listener: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    maxBodySize: 1000,
  }, async (request) => {
    seen.push(await request.text());
    return new Response("ok");
  });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const size = 4 << 20;
  const head = `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`;
  const bytes = new Uint8Array(head.length + size).fill(120);
  bytes.set(encoder.encode(head));
  const [text] = await within(
    Promise.all([
      (async () => {
        let text = "";
        const buffer = new Uint8Array(16 * 1024);
        for (let n; (n = await conn.read(buffer)) !== null;) {
          text += decoder.decode(buffer.subarray(0, n));
        }
        return text;
      })(),
      writeAll(conn, bytes),
    ]),
    10_000,
    "the exchange",
  );
  assert.match(text, /^HTTP\/1.1 413 [^]*over the 1000-byte limit\n$/);
  assert.deepEqual(seen, []);
});

Deno.test("serveHttps() reads what a refused client still sends until requestTimeout, then closes", async () => {
  const set = await certs();
  await using server = await echoServer(set, {
    maxBodySize: 10,
    keepAliveTimeout: 300,
    requestTimeout: 600,
  });
  using conn = await Deno.connectTls({
    hostname: "localhost",
    port: server.addr.port,
    caCerts: [set.ca.cert],
  });
  await conn.write(
    encoder.encode(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
    ),
  );
  // The 413, then the server's half-close: the end of what we read.
  let text = "";
  const buffer = new Uint8Array(1024);
  for (let n; (n = await conn.read(buffer)) !== null;) {
    text += decoder.decode(buffer.subarray(0, n));
  }
  assert.match(text, /^HTTP\/1.1 413 /);
  // A byte every 50 ms, never silent: the server reads them until 600 ms
  // after its response, then closes, and writes fail (a reset).
  const start = performance.now();
  let failed = false;
  for (let i = 0; i < 200 && !failed; i++) {
    try {
      await conn.write(new Uint8Array([120]));
      await new Promise((resolve) => setTimeout(resolve, 50));
    } catch {
      failed = true;
    }
  }
  const ms = performance.now() - start;
  assert.ok(failed, "the server never closed");
  // Generous both ways for a loaded machine: the point is that it read on
  // (a close at once would fail the writes within a few ms), and not for
  // the 10 s the client would go on.
  assert.ok(ms > 300 && ms < 4000, `writes failed after ${ms} ms`);
});

Deno.test("serveHttps() reports a throw while parsing to onError with the client's address, and keeps serving", async () => {
  const errors: [unknown, HttpsErrorInfo][] = [];
  const conns: HttpsConn[] = [];
  let closed = 0;
  const bad: HttpsConn = {
    readable: streamOf([undefined as unknown as Uint8Array], false),
    writable: new WritableStream(),
    remoteAddr: { transport: "tcp", hostname: "127.0.0.9", port: 4242 },
    close: () => void closed++,
  };
  conns.push(bad);
  const listener = {
    addr: { transport: "tcp", hostname: "127.0.0.1", port: 1 } as Deno.NetAddr,
    close() {},
    async *[Symbol.asyncIterator]() {
      yield* conns;
    },
  };
  await using _server = await serveHttps(
    { listener, onError: (error, info) => errors.push([error, info]) },
    () => new Response("ok"),
  );
  for (let i = 0; i < 100 && closed === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(closed, 1);
  assert.equal(errors.length, 1);
  assert.ok(errors[0][0] instanceof TypeError);
  assert.deepEqual(errors[0][1], {
    phase: "request",
    remoteAddr: { transport: "tcp", hostname: "127.0.0.9", port: 4242 },
  });
});

const python = findPython("3");
peerTest(
  "serveHttps() answers Python ServerProxy calls with 2 MiB and 8 MiB arguments with ProtocolError 413, 10 times in 10",
  { label: "python3", path: python },
  async (python) => {
    const set = await certs();
    const dir = await Deno.makeTempDir({ prefix: "connauth-http-" });
    try {
      await Deno.writeTextFile(`${dir}/ca.pem`, set.ca.cert);
      const handler = createXmlRpcHandler({ set: () => null });
      await using server = await serveHttps(
        { cert: set.server.cert, key: set.server.key },
        (request) => handler(request),
      );
      for (const size of [2 << 20, 8 << 20]) {
        const output = await new Deno.Command(python, {
          args: [
            interopScript("xmlrpc_big_call.py"),
            String(server.addr.port),
            `${dir}/ca.pem`,
            String(size),
            "10",
          ],
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(60_000),
        }).output();
        assert.equal(output.code, 0, decoder.decode(output.stderr));
        const outcomes = JSON.parse(decoder.decode(output.stdout));
        assert.deepEqual(
          outcomes,
          Array(10).fill({ error: "ProtocolError", status: 413 }),
          `${size} bytes`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------
// The key-value example under attack, measured from /proc

/**
 * A file of /proc, read by `cat`: Deno asks for --allow-all to read /proc
 * itself.
 */
async function proc(path: string): Promise<string> {
  const output = await new Deno.Command("cat", { args: [`/proc/${path}`] })
    .output();
  assert.equal(output.code, 0, decoder.decode(output.stderr));
  return decoder.decode(output.stdout);
}

/** VmRSS and VmHWM (peak) of a process, in MiB. */
async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await proc(`${pid}/status`);
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]) / 1024;
  return { rss: field("VmRSS"), peak: field("VmHWM") };
}

/** CPU time (user + system) a process has used, in clock ticks. */
async function ticksOf(pid: number): Promise<number> {
  const stat = await proc(`${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let sent = 0; sent < bytes.length;) {
    sent += await conn.write(bytes.subarray(sent));
  }
}

Deno.test("kv_server keeps memory bounded and CPU linear under chunked and trickled bodies (RSS and CPU from /proc)", async () => {
  const set = await certs();
  const dir = await Deno.makeTempDir({ prefix: "connauth-http-" });
  try {
    await Deno.writeTextFile(`${dir}/server.pem`, set.server.cert);
    await Deno.writeTextFile(`${dir}/server-key.pem`, set.server.key);
    await using kv = await startExample([
      "run",
      "--unstable-kv",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      new URL("../../examples/kv_server.ts", import.meta.url).pathname,
      "--port",
      "0",
      "--no-mutual",
      "--certs",
      dir,
      "--db",
      ":memory:",
    ], { listening: /listening on https:\/\/localhost:(\d+)\// });
    const pid = kv.child.pid;
    const connect = () =>
      Deno.connectTls({
        hostname: "localhost",
        port: kv.port,
        caCerts: [set.ca.cert],
      });
    {
      using client = createXmlRpcClient(`https://localhost:${kv.port}/`, {
        caCerts: [set.ca.cert],
        timeout: 10_000,
      });
      assert.equal(await client.call("exists", "a"), false);
    }
    const baseline = (await memoryOf(pid)).rss;

    // CPU: 1-byte TLS records at the end of a 1 MB body cost what they
    // cost at its start (the old reader copied the whole body for each).
    const trickle = async (prefix: number) => {
      using conn = await connect();
      await writeAll(
        conn,
        encoder.encode(
          "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n",
        ),
      );
      await writeAll(conn, new Uint8Array(prefix).fill(120));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const before = await ticksOf(pid);
      const one = new Uint8Array([120]);
      for (let i = 0; i < 2000; i++) {
        await conn.write(one);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      return Math.max(1, (await ticksOf(pid)) - before);
    };
    const atStart = await trickle(1000);
    const atEnd = await trickle(990_000);
    assert.ok(
      atEnd < 3 * atStart,
      `2000 records cost ${atEnd} ticks after 990 kB, ${atStart} after 1 kB`,
    );

    // Memory: 1 MiB bodies of 1-byte chunks (6 MiB on the wire each; the
    // old reader kept a million arrays: 0.5 GB a connection), then 1 MiB
    // bodies of 16-byte chunks, which are allowed, two at a time.
    const post = async (body: Uint8Array) => {
      using conn = await connect();
      const head = encoder.encode(
        "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      );
      const [text] = await within(
        Promise.all([
          (async () => {
            let text = "";
            const buffer = new Uint8Array(16 * 1024);
            for (let n; (n = await conn.read(buffer)) !== null;) {
              text += decoder.decode(buffer.subarray(0, n));
            }
            return text;
          })(),
          (async () => {
            await writeAll(conn, head);
            await writeAll(conn, body);
          })(),
        ]),
        30_000,
        "the exchange",
      );
      return text;
    };
    const tiny = chunked(1 << 20, 1);
    for (const text of await Promise.all([post(tiny), post(tiny)])) {
      assert.match(text, /^HTTP\/1.1 413 [^]*over 65536 chunks/);
    }
    const small = chunked(65536, 16);
    for (const text of await Promise.all([post(small), post(small)])) {
      assert.match(text, /^HTTP\/1.1 200 /); // an XML-RPC fault: not XML
    }
    const { peak } = await memoryOf(pid);
    assert.ok(
      peak - baseline < 128,
      `RSS went from ${baseline.toFixed(0)} MiB to a peak of ${
        peak.toFixed(0)
      } MiB`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
