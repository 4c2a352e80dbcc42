// _http1_session.ts: serveHttp1() on an in-memory connection. Guarded
// callbacks and the bounded lingering after a refusal are in
// tests/hostile/http_test.ts; the same over TLS in tests/https_test.ts.
import assert from "node:assert/strict";
import { HttpRefusal } from "../_http1_parse.ts";
import { within } from "./_helpers.ts";
import { readText, servePair } from "./_http1_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads from `reader` until the text read so far matches `until`. */
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  until: RegExp,
): Promise<string> {
  let text = "";
  for (let i = 0; i < 100 && !until.test(text); i++) {
    const { value, done } = await within(reader.read(), 5000, String(until));
    if (done) break;
    text += decoder.decode(value);
  }
  return text;
}

Deno.test("serveHttp1() answers keep-alive requests in order and ends when the client closes", async () => {
  const seen: string[] = [];
  const { session, client, closes } = servePair({}, async (request) => {
    seen.push(`${request.method} ${request.url}`);
    return {
      status: 200,
      headers: [["x-n", String(seen.length)]],
      body: encoder.encode(await request.text()),
    };
  });
  const writer = client.writable.getWriter();
  const reader = client.readable.getReader();
  await writer.write(
    encoder.encode(
      "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
    ),
  );
  const first = await readUntil(reader, /\r\n\r\nhi$/);
  assert.match(
    first,
    /^HTTP\/1.1 200 OK\r\n[^]*x-n: 1\r\ncontent-length: 2\r\n\r\nhi$/,
  );
  assert.doesNotMatch(first, /connection:/);
  await writer.write(encoder.encode("GET /b HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert.match(await readUntil(reader, /x-n: 2/), /content-length: 0\r\n\r\n$/);
  reader.releaseLock();
  await writer.close();
  await within(session.done, 5000, "the session");
  assert.equal(await readText(client.readable), "");
  assert.equal(closes(), 1);
  assert.deepEqual(seen, ["POST https://h/a", "GET https://h/b"]);
});

Deno.test("serveHttp1() refuses every request with refuseAll, without calling the handler", async () => {
  let called = 0;
  const { session, client } = servePair(
    {},
    () => {
      called++;
      return Promise.resolve({
        status: 200,
        headers: [],
        body: new Uint8Array(0),
      });
    },
    undefined,
    new HttpRefusal(403, "Cannot serve the request: not you"),
  );
  const writer = client.writable.getWriter();
  await writer.write(encoder.encode("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  await writer.close();
  const text = await readText(client.readable);
  await within(session.done, 5000, "the session");
  assert.match(
    text,
    /^HTTP\/1.1 403 Forbidden\r\n[^]*connection: close\r\n\r\nCannot serve the request: not you\n$/,
  );
  assert.equal(called, 0);
});

Deno.test("serveHttp1() drain() closes an idle connection at once and a busy one after its response", async () => {
  {
    const { session, closes } = servePair();
    session.drain();
    await within(session.done, 5000, "the idle session");
    assert.equal(closes(), 1);
  }
  const entered = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const { session, client } = servePair({}, async () => {
    entered.resolve();
    await release.promise;
    return { status: 200, headers: [], body: encoder.encode("late") };
  });
  const writer = client.writable.getWriter();
  await writer.write(encoder.encode("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  await within(entered.promise, 5000, "the handler");
  session.drain();
  release.resolve();
  const text = await readText(client.readable);
  await within(session.done, 5000, "the busy session");
  assert.match(text, /^HTTP\/1.1 200 [^]*connection: close\r\n\r\nlate$/);
  await writer.close().catch(() => {});
});

Deno.test("serveHttp1() abort() settles done at once, even while the handler never settles", async () => {
  const entered = Promise.withResolvers<void>();
  const { session, client, closes } = servePair({}, () => {
    entered.resolve();
    return new Promise(() => {});
  });
  const writer = client.writable.getWriter();
  await writer.write(encoder.encode("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  await within(entered.promise, 5000, "the handler");
  session.abort();
  await within(session.done, 5000, "the aborted session");
  assert.equal(closes(), 1);
  assert.equal(await readText(client.readable), "");
  await writer.close().catch(() => {});
});

Deno.test("serveHttp1() sends 100 Continue before the body of a request that expects it", async () => {
  const { session, client } = servePair();
  const writer = client.writable.getWriter();
  const reader = client.readable.getReader();
  await writer.write(
    encoder.encode(
      "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    ),
  );
  // The client waits for it before sending the body.
  assert.equal(
    await readUntil(reader, /\r\n\r\n$/),
    "HTTP/1.1 100 Continue\r\n\r\n",
  );
  await writer.write(encoder.encode("ok"));
  assert.match(await readUntil(reader, /POST ok$/), /^HTTP\/1.1 200 /);
  reader.releaseLock();
  await writer.close();
  await within(session.done, 5000, "the session");
});

Deno.test("serveHttp1() answers HEAD with the length of the body it does not send", async () => {
  const { session, client } = servePair({}, () =>
    Promise.resolve({
      status: 200,
      headers: [],
      body: encoder.encode("twelve bytes"),
    }));
  const writer = client.writable.getWriter();
  await writer.write(
    encoder.encode("HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
  );
  const text = await readText(client.readable);
  await within(session.done, 5000, "the session");
  assert.match(text, /content-length: 12\r\nconnection: close\r\n\r\n$/);
  await writer.close().catch(() => {});
});
