// _http1_message.ts: a `Request` from a parsed head, a response's bytes.
import assert from "node:assert/strict";
import {
  encodeResponse,
  makeRequest,
  plainRefusal,
} from "../_http1_message.ts";
import { type HttpRefusal, parseHead } from "../_http1_parse.ts";

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const BASE = "https://127.0.0.1:8443/";

function request(head: string, body = new Uint8Array(0)): Request {
  return makeRequest(parseHead(head, 10), body, BASE);
}

Deno.test("makeRequest() takes a path's authority from Host, or the server's without one", () => {
  assert.equal(
    request("GET /a?b=1 HTTP/1.1\r\nHost: example.test:99").url,
    "https://example.test:99/a?b=1",
  );
  assert.equal(
    request("GET //other.test/x HTTP/1.1\r\nHost: example.test").url,
    "https://example.test//other.test/x",
  );
  assert.equal(request("GET /x HTTP/1.0").url, "https://127.0.0.1:8443/x");
  assert.equal(
    request("GET /x HTTP/1.1\r\nHost: ").url,
    "https://127.0.0.1:8443/x",
  );
  assert.equal(
    request("OPTIONS * HTTP/1.1\r\nHost: h").url,
    "https://h/*",
  );
  // An absolute URL (absolute-form) is taken as sent.
  assert.equal(
    request("GET http://proxy.test/y HTTP/1.1\r\nHost: h").url,
    "http://proxy.test/y",
  );
  assert.equal(
    makeRequest(
      parseHead("GET /z HTTP/1.0", 1),
      new Uint8Array(0),
      "http://[::1]:80/",
    )
      .url,
    "http://[::1]/z",
  );
});

Deno.test("makeRequest() passes method, headers and body, none for GET and HEAD", async () => {
  const post = request(
    "PATCH /p HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3",
    encoder.encode("abc"),
  );
  assert.equal(post.method, "PATCH");
  assert.equal(post.headers.get("x-a"), "1, 2");
  assert.equal(await post.text(), "abc");
  for (const method of ["GET", "HEAD"]) {
    const bodiless = request(
      `${method} / HTTP/1.1\r\nHost: h`,
      encoder.encode("x"),
    );
    assert.equal(bodiless.body, null, method);
  }
});

Deno.test("makeRequest() refuses a URL the Host or target makes malformed with 400", () => {
  for (
    const head of [
      "GET /x HTTP/1.1\r\nHost: a%zz",
      "GET http://[bad/ HTTP/1.1\r\nHost: h",
    ]
  ) {
    assert.throws(() => request(head), (error: HttpRefusal) => {
      assert.equal(error.status, 400);
      assert.equal(
        error.message,
        "Cannot serve the request: the URL is malformed",
      );
      return true;
    }, head);
  }
});

Deno.test("encodeResponse() writes the status line, a date, the headers and a Content-Length", () => {
  const bytes = encodeResponse(
    201,
    [["x-a", "1"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]],
    encoder.encode("body"),
    4,
    null,
  );
  const text = latin1.decode(bytes);
  const [head, body] = text.split("\r\n\r\n");
  const lines = head.split("\r\n");
  assert.equal(lines[0], "HTTP/1.1 201 Created");
  assert.match(
    lines[1],
    /^date: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
  );
  assert.deepEqual(lines.slice(2), [
    "x-a: 1",
    "set-cookie: a=1",
    "set-cookie: b=2",
    "content-length: 4",
  ]);
  assert.equal(body, "body");
  assert.match(
    latin1.decode(encodeResponse(299, [], new Uint8Array(0), 0, "close")),
    /^HTTP\/1.1 299 Status\r\n[^]*content-length: 0\r\nconnection: close\r\n\r\n$/,
  );
});

Deno.test("encodeResponse() drops the handler's framing headers and writes its own", () => {
  const text = latin1.decode(
    encodeResponse(
      200,
      [
        ["content-length", "999"],
        ["connection", "upgrade"],
        ["transfer-encoding", "chunked"],
        ["keep-alive", "timeout=5"],
        ["x-kept", "yes"],
      ],
      null,
      12,
      "keep-alive",
    ),
  );
  assert.match(
    text,
    /^HTTP\/1.1 200 OK\r\ndate: [^\r]+\r\nx-kept: yes\r\ncontent-length: 12\r\nconnection: keep-alive\r\n\r\n$/,
  );
  // No body (HEAD): the length is still the body's; none for 204 and 304.
  for (const status of [204, 304]) {
    assert.doesNotMatch(
      latin1.decode(encodeResponse(status, [], null, 5, null)),
      /content-length/,
    );
  }
});

Deno.test("encodeResponse() writes a header value's code points up to 0xFF as one byte each", () => {
  const bytes = encodeResponse(200, [["x-name", "caf\xe9"]], null, 0, null);
  const at = latin1.decode(bytes).indexOf("caf");
  assert.deepEqual([...bytes.subarray(at, at + 4)], [0x63, 0x61, 0x66, 0xe9]);
});

Deno.test("plainRefusal() is a plain-text response with the message on one line", () => {
  const [status, headers, body] = plainRefusal(431, "Cannot serve: big");
  assert.equal(status, 431);
  assert.deepEqual(headers, [["content-type", "text/plain; charset=utf-8"]]);
  assert.equal(new TextDecoder().decode(body), "Cannot serve: big\n");
});
