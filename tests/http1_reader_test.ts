// _http1_reader.ts: Http1Reader on in-memory streams. Its bounds under
// attack (bare LF, chunk counts, framing, linear cost) are in
// tests/hostile/http_test.ts.
import assert from "node:assert/strict";
import type { HttpRefusal } from "../_http1_parse.ts";
import { ConnectionGone, Http1Reader } from "../_http1_reader.ts";
import { pieces, streamOf } from "./_http1_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LIMITS = { maxBodySize: 1000, maxHeaderSize: 1024, maxHeaderCount: 10 };

Deno.test("Http1Reader calls onBytes once a chunk and counts the bytes it holds", async () => {
  let calls = 0;
  const text = "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next";
  const reader = new Http1Reader(
    streamOf(pieces(encoder.encode(text), 10)),
    () => calls++,
  );
  assert.equal(reader.buffered, 0);
  const head = await reader.readHead(1024, 10);
  assert.equal(head?.target, "/");
  assert.equal(calls, 3, "three pieces of 10 bytes hold the 27-byte head");
  // What was read past the head stays for the next request.
  assert.equal(reader.buffered, 3);
  await assert.rejects(reader.readHead(1024, 10), /middle of the headers/);
  assert.equal(calls, 4);
});

Deno.test("Http1Reader.readHead() answers 414 for a long request line and 431 for long headers", async () => {
  const refusal = (text: string) =>
    assert.rejects(
      new Http1Reader(streamOf([encoder.encode(text)], false), () => {})
        .readHead(64, 10),
      (error: HttpRefusal) => {
        assert.equal(error.name, "HttpRefusal");
        return error.status === (text.includes("Host") ? 431 : 414);
      },
    );
  await refusal(`GET /${"a".repeat(100)} HTTP/1.1\r\n`);
  await refusal(`GET / HTTP/1.1\r\nHost: h\r\nX: ${"b".repeat(100)}`);
});

Deno.test("Http1Reader.readBody() takes an empty body without reading", async () => {
  let pulled = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(new Uint8Array(1));
    },
  }, { highWaterMark: 0 });
  const reader = new Http1Reader(stream, () => {});
  assert.equal((await reader.readBody(0, LIMITS)).length, 0);
  assert.equal(pulled, 0);
  reader.cancel();
});

Deno.test("Http1Reader.readBody() refuses a body cut short with 400", async () => {
  for (const length of [10, -1]) {
    const bytes = encoder.encode(length > 0 ? "abc" : "a\r\nabc");
    await assert.rejects(
      new Http1Reader(streamOf([bytes]), () => {}).readBody(length, LIMITS),
      (error: HttpRefusal) =>
        error.status === 400 &&
        /before the end of the body/.test(error.message),
    );
  }
});

Deno.test("Http1Reader.readBody() keeps what follows a body for the next request", async () => {
  const bytes = encoder.encode(
    "5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.0\r\n\r\n",
  );
  for (const size of [1, 3, bytes.length]) {
    const reader = new Http1Reader(streamOf(pieces(bytes, size)), () => {});
    assert.equal(decoder.decode(await reader.readBody(-1, LIMITS)), "hello");
    assert.equal((await reader.readHead(1024, 10))?.target, "/next");
    assert.equal(await reader.readHead(1024, 10), null);
  }
  const fixed = new Http1Reader(
    streamOf([encoder.encode("abcdefGET")]),
    () => {},
  );
  assert.equal(decoder.decode(await fixed.readBody(6, LIMITS)), "abcdef");
  assert.equal(fixed.buffered, 3);
});

Deno.test("Http1Reader.discard() drops what it holds and reads on until EOF or max bytes", async () => {
  let pulled = 0;
  const chunks = Array.from({ length: 10 }, () => new Uint8Array(100));
  const reader = new Http1Reader(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled === chunks.length) return controller.close();
        controller.enqueue(chunks[pulled++]);
      },
    }, { highWaterMark: 0 }),
    () => {},
  );
  await reader.discard(350);
  assert.equal(pulled, 4, "stopped once 350 bytes were dropped");
  assert.equal(reader.buffered, 0);
  await reader.discard(Infinity);
  assert.equal(pulled, 10, "read to the end");
});

Deno.test("Http1Reader turns a failing stream into ConnectionGone, and cancel() cancels it", async () => {
  const reset = new Error("reset");
  const failing = new Http1Reader(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.error(reset);
      },
    }),
    () => {},
  );
  await assert.rejects(failing.readHead(1024, 10), (error: ConnectionGone) => {
    assert.ok(error instanceof ConnectionGone);
    assert.equal(error.cause, reset);
    return true;
  });
  let cancelled = false;
  const reader = new Http1Reader(
    new ReadableStream<Uint8Array>({
      cancel() {
        cancelled = true;
      },
    }),
    () => {},
  );
  reader.cancel();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.ok(cancelled);
});
