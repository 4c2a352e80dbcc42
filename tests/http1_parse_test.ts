// _http1_parse.ts: the pure parsing of request heads, header lines and
// chunk-size lines. The refusals an attacker aims at (bare LF, smuggling
// through Transfer-Encoding, Host) are in tests/hostile/http_test.ts; here
// is what an honest client relies on.
import assert from "node:assert/strict";
import {
  chunkSize,
  fieldLine,
  HttpRefusal,
  parseHead,
} from "../_http1_parse.ts";

const encoder = new TextEncoder();

Deno.test("parseHead() keeps a connection alive by its version and Connection tokens", () => {
  const keepAlive = (version: string, ...connection: string[]) =>
    parseHead(
      [
        `GET / ${version}`,
        "Host: x",
        ...connection.map((value) => `Connection: ${value}`),
      ].join("\r\n"),
      10,
    ).keepAlive;
  assert.equal(keepAlive("HTTP/1.1"), true);
  assert.equal(keepAlive("HTTP/1.1", "close"), false);
  assert.equal(keepAlive("HTTP/1.1", "Close"), false);
  assert.equal(keepAlive("HTTP/1.1", "keep-alive, close"), false);
  assert.equal(keepAlive("HTTP/1.1", "upgrade", "close"), false);
  assert.equal(keepAlive("HTTP/1.1", "foo"), true);
  assert.equal(keepAlive("HTTP/1.0"), false);
  assert.equal(keepAlive("HTTP/1.0", "Keep-Alive"), true);
  assert.equal(keepAlive("HTTP/1.0", "te , keep-alive"), true);
  assert.equal(keepAlive("HTTP/1.0", "keep-alive", "close"), false);
});

Deno.test("parseHead() reads the body length and Expect: 100-continue", () => {
  const head = (...headers: string[]) =>
    parseHead(["POST / HTTP/1.1", "Host: x", ...headers].join("\r\n"), 10);
  assert.equal(head().contentLength, 0);
  assert.equal(head("Content-Length: 0").contentLength, 0);
  assert.equal(head("Content-Length: 000123").contentLength, 123);
  assert.equal(
    head("Content-Length: 999999999999999").contentLength,
    999999999999999,
  );
  assert.throws(
    () => head("Content-Length: 1000000000000000"),
    (error: HttpRefusal) => error.status === 400,
  );
  assert.equal(head("transfer-encoding: CHUNKED").contentLength, -1);
  assert.equal(head().expectContinue, false);
  assert.equal(head("Expect: 100-Continue").expectContinue, true);
  assert.equal(head("Expect: 100-continue-later").expectContinue, false);
});

Deno.test("parseHead() keeps header lines in order, names as sent, values trimmed", () => {
  const head = parseHead(
    "GET /x HTTP/1.1\r\nhost: h\r\nSet-Cookie: a=1\r\nset-cookie:b=2\r\n" +
      "X-Empty:\r\nX-Tab:\tin\tside\t\r\nX-Latin: caf\xe9",
    10,
  );
  assert.deepEqual(head.headers, [
    ["host", "h"],
    ["Set-Cookie", "a=1"],
    ["set-cookie", "b=2"],
    ["X-Empty", ""],
    ["X-Tab", "in\tside"],
    ["X-Latin", "caf\xe9"],
  ]);
  assert.equal(head.host, "h");
  // Exactly maxHeaderCount lines are fine.
  assert.equal(
    parseHead(`GET / HTTP/1.1\r\nHost: h\r\nA: 1`, 2).headers.length,
    2,
  );
  assert.equal(parseHead("GET / HTTP/1.0", 0).headers.length, 0);
});

Deno.test("fieldLine() splits a line at its first colon and names the section in refusals", () => {
  assert.deepEqual(fieldLine("Name:  a:b  ", "header"), ["Name", "a:b"]);
  assert.deepEqual(fieldLine("X-Sum:1", "trailer"), ["X-Sum", "1"]);
  assert.throws(
    () => fieldLine(":nameless", "trailer"),
    /^HttpRefusal: Cannot parse the request: a trailer line is not NAME: VALUE$/,
  );
  assert.throws(
    () => fieldLine("\tfolded", "header"),
    /folded header lines are not accepted/,
  );
  assert.throws(
    () => fieldLine("X: a\rb", "trailer"),
    /trailer "X" holds a control character/,
  );
});

Deno.test("chunkSize() reads hex digits, blanks and extensions, and caps a size at max + 1", () => {
  const size = (line: string, max = 1 << 20) => {
    // In the middle of a larger buffer, as the reader hands it over.
    const bytes = encoder.encode(`xx${line}\r\nyy`);
    return chunkSize(bytes, 2, line.length, max);
  };
  assert.equal(size("0"), 0);
  assert.equal(size("1A"), 26);
  assert.equal(size("ff"), 255);
  assert.equal(size("00000010"), 16);
  assert.equal(size("a \t;name=value;x"), 10);
  assert.equal(size('3;q="a b"\t'), 3);
  assert.equal(size("65", 100), 101);
  assert.equal(size("ffffffffffffffffffffffff", 100), 101);
  for (const bad of ["", "g", "1 2", " 1", "1;\x7f", "1;a\x00", "-1", "0x1"]) {
    assert.throws(
      () => size(bad),
      (error: HttpRefusal) => {
        assert.ok(error instanceof HttpRefusal);
        assert.equal(error.status, 400);
        assert.match(error.message, /chunk size is not hexadecimal/);
        return true;
      },
      JSON.stringify(bad),
    );
  }
});

Deno.test("HttpRefusal carries the status to answer with", () => {
  const refusal = new HttpRefusal(413, "Cannot serve the request: too big");
  assert.ok(refusal instanceof Error);
  assert.equal(refusal.name, "HttpRefusal");
  assert.equal(refusal.status, 413);
  assert.equal(refusal.message, "Cannot serve the request: too big");
});
