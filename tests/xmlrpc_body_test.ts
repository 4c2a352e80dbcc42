// _xmlrpc_body.ts: reading an HTTP body under a byte limit and a signal,
// as the XML-RPC handler and client do.
import assert from "node:assert/strict";
import { ProtocolError } from "../errors.ts";
import { readBody, TooLarge } from "../_xmlrpc_body.ts";

const encoder = new TextEncoder();

/** A body in `count` chunks of `size` bytes; `pulled()` counts the reads. */
function chunked(count: number, size: number) {
  let pulls = 0;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulls === count) return controller.close();
      pulls++;
      controller.enqueue(new Uint8Array(size).fill(pulls));
    },
    cancel() {
      cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { body, pulled: () => pulls, cancelled: () => cancelled };
}

function post(body: BodyInit, headers: HeadersInit = {}): Request {
  return new Request("http://localhost/", { method: "POST", body, headers });
}

Deno.test("readBody() reads a body within its limit, whole or in chunks", async () => {
  assert.deepEqual(
    await readBody(post("hello"), 5, "the body"),
    encoder.encode("hello"),
  );
  const stream = chunked(3, 2);
  const bytes = await readBody(post(stream.body), 6, "the body");
  assert.deepEqual([...bytes], [1, 1, 2, 2, 3, 3]);
  assert.equal(
    (await readBody(new Response(null), 1, "the body")).length,
    0,
  );
});

Deno.test("readBody() refuses a declared length over the limit without reading it", async () => {
  const stream = chunked(10, 100);
  const request = post(stream.body, { "content-length": "1000" });
  await assert.rejects(readBody(request, 999, "the request body"), {
    name: "ProtocolError",
    reason: "too-large",
    message:
      "Cannot read the request body: it is 1000 bytes, over the 999-byte limit (maxBodySize)",
  });
  assert.equal(stream.pulled(), 0);
  assert.ok(stream.cancelled());
});

Deno.test("readBody() stops a stream at the first chunk over the limit", async () => {
  const stream = chunked(100, 10);
  await assert.rejects(
    readBody(post(stream.body), 25, "the body"),
    (error: TooLarge) => {
      assert.ok(error instanceof TooLarge);
      assert.ok(error instanceof ProtocolError);
      assert.match(error.message, /it is more than 25 bytes/);
      return true;
    },
  );
  assert.equal(stream.pulled(), 3);
  assert.ok(stream.cancelled());
});

Deno.test("readBody() with truncate keeps the first bytes of a longer body and cancels the rest", async () => {
  const stream = chunked(100, 10);
  const bytes = await readBody(
    new Response(stream.body),
    25,
    "the error body",
    true,
  );
  assert.equal(bytes.length, 25);
  assert.deepEqual([...bytes.subarray(20)], [3, 3, 3, 3, 3]);
  assert.ok(stream.cancelled());
  const declared = await readBody(
    new Response("x".repeat(100), { headers: { "content-length": "100" } }),
    10,
    "the error body",
    true,
  );
  assert.equal(declared.length, 10);
});

Deno.test("readBody() stops with the signal's reason", async () => {
  const controller = new AbortController();
  let pulls = 0;
  const stalled = new ReadableStream<Uint8Array>({
    pull(stream) {
      if (pulls++ === 0) return stream.enqueue(new Uint8Array(1));
      return new Promise(() => {}); // no more bytes
    },
  });
  const reading = readBody(
    post(stalled),
    100,
    "the body",
    false,
    controller.signal,
  );
  const reason = new DOMException("too slow", "TimeoutError");
  setTimeout(() => controller.abort(reason), 10);
  await assert.rejects(reading, (error) => error === reason);
});
