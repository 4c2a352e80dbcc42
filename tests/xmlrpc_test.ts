// XML-RPC codec, handler and client: round trips, Python's wire format,
// every refusal, bounded random mutations, and the client over HTTP and
// mutual-TLS HTTPS.
import assert from "node:assert/strict";
import { ProtocolError } from "../errors.ts";
import {
  createXmlRpcClient,
  createXmlRpcHandler,
  decodeMethodCall,
  decodeMethodResponse,
  encodeFault,
  encodeMethodCall,
  encodeMethodResponse,
  XmlRpcDouble,
  type XmlRpcErrorInfo,
  XmlRpcFault,
  XmlRpcFaultCode,
  type XmlRpcValue,
} from "../xmlrpc.ts";
import type { FuzzJob, FuzzResult } from "./_xmlrpc_fuzz_worker.ts";
import { within } from "./_helpers.ts";

function roundTrip(value: unknown): XmlRpcValue {
  return decodeMethodCall(encodeMethodCall("echo", [value])).params[0];
}

function refused(
  body: string | Uint8Array,
  pattern: RegExp,
  reason: "malformed" | "too-large" = "malformed",
  options = {},
): void {
  assert.throws(() => decodeMethodCall(body, options), (error) => {
    assert.ok(error instanceof ProtocolError, String(error));
    assert.equal(error.reason, reason);
    assert.match(error.message, /^Cannot decode the XML-RPC message: /);
    assert.match(error.message, pattern);
    return true;
  });
}

function call(params: string): string {
  return `<?xml version="1.0"?><methodCall><methodName>m</methodName><params>${params}</params></methodCall>`;
}

function param(value: string): string {
  return call(`<param><value>${value}</value></param>`);
}

Deno.test("encodeMethodCall() and decodeMethodCall() round-trip every type", () => {
  const values: XmlRpcValue[] = [
    "",
    "plain",
    "<tag> & ampersand > \" '",
    "line\nbreak\r\nand\rcarriage\ttab",
    "\u00e9\u2603\u{1F600}",
    "  padded  ",
    0,
    -2147483648,
    2147483647,
    2147483648, // becomes a double
    0.1,
    -1.5e300,
    5e-324,
    Number.MAX_SAFE_INTEGER,
    true,
    false,
    null,
    new Date(Date.UTC(1999, 11, 31, 23, 59, 59)),
    new Date(Date.UTC(1, 0, 1, 0, 0, 0)),
    new Uint8Array(0),
    new Uint8Array([0, 1, 254, 255]),
    [],
    {},
    [1, ["nested", [null, { a: [] }]]],
    { "": "empty name", "<&>": 1, "__proto__": "own", constructor: 2 },
  ];
  // A "__proto__" key written as a literal sets the prototype; make it own.
  const last = values[values.length - 1] as Record<string, XmlRpcValue>;
  Object.defineProperty(last, "__proto__", {
    value: "own",
    enumerable: true,
    writable: true,
    configurable: true,
  });
  for (const value of values) {
    assert.deepEqual(roundTrip(value), value);
  }
  const struct = roundTrip(last) as Record<string, XmlRpcValue>;
  assert.equal(Object.getPrototypeOf(struct), Object.prototype);
  assert.equal(
    Object.getOwnPropertyDescriptor(struct, "__proto__")?.value,
    "own",
  );
  assert.deepEqual(roundTrip(10n), 10);
  assert.deepEqual(roundTrip(-0), 0);
  assert.deepEqual(roundTrip(undefined), null);
  assert.deepEqual(roundTrip({ a: undefined, b: 1 }), { b: 1 });
  assert.deepEqual(roundTrip([undefined]), [null]);
  // XML-RPC carries whole seconds.
  assert.deepEqual(
    roundTrip(new Date(Date.UTC(2020, 0, 1, 0, 0, 0, 999))),
    new Date(Date.UTC(2020, 0, 1)),
  );
  assert.deepEqual(decodeMethodCall(encodeMethodCall("a.b:c/d_9")), {
    method: "a.b:c/d_9",
    params: [],
  });
});

Deno.test("encodeMethodResponse(), encodeFault() and decodeMethodResponse() round-trip", () => {
  assert.deepEqual(
    decodeMethodResponse(encodeMethodResponse({ list: [1, "x"] })),
    { list: [1, "x"] },
  );
  assert.throws(
    () => decodeMethodResponse(encodeFault(-32601, "no <such> & method")),
    (error) => {
      assert.ok(error instanceof XmlRpcFault);
      assert.equal(error.faultCode, -32601);
      assert.equal(error.faultString, "no <such> & method");
      return true;
    },
  );
  // A fault string with characters XML cannot carry is still sent.
  assert.throws(
    () => decodeMethodResponse(encodeFault(1, "bad \u0000 byte")),
    { faultString: "bad \uFFFD byte" },
  );
  assert.throws(() => encodeFault(1.5, "x"), RangeError);
});

Deno.test("decodeMethodCall() reads what Python's xmlrpc.client writes", () => {
  // The layout of xmlrpc.client.dumps(..., "set", allow_none=True).
  const python = `<?xml version='1.0'?>
<methodCall>
<methodName>set</methodName>
<params>
<param>
<value><string>a&amp;b&lt;c&gt;</string></value>
</param>
<param>
<value><array><data>
<value><int>1</int></value>
<value><double>2.5</double></value>
<value><nil/></value><value><boolean>1</boolean></value>
<value><struct>
<member>
<name>k</name>
<value><base64>
AP8=
</base64></value>
</member>
</struct></value>
</data></array></value>
</param>
<param>
<value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601></value>
</param>
<param>
<value><double>1e+300</double></value>
</param>
</params>
</methodCall>
`;
  assert.deepEqual(decodeMethodCall(python), {
    method: "set",
    params: [
      "a&b<c>",
      [1, 2.5, null, true, { k: new Uint8Array([0, 255]) }],
      new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
      1e300,
    ],
  });
});

Deno.test("decodeMethodCall() accepts the lenient forms XML-RPC allows", () => {
  const cases: [string, XmlRpcValue][] = [
    ["bare text", "bare text"],
    ["", ""],
    ["<i4> -7 </i4>", -7],
    ["<int>+0042</int>", 42],
    ["<string/>", ""],
    ["<![CDATA[<not> &markup;]]>", "<not> &markup;"],
    ["a<!-- comment -->b", "ab"],
    ["&#65;&#x1F600;&quot;&apos;", "A\u{1F600}\"'"],
    ["<boolean>0</boolean>", false],
    ["<double>-.5</double>", -0.5],
    ["<double>1.</double>", 1],
    [
      "<dateTime.iso8601>2024-01-02T03:04:05Z</dateTime.iso8601>",
      new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
    ],
    [
      "<dateTime.iso8601>20240102T03:04:05+01:00</dateTime.iso8601>",
      new Date(Date.UTC(2024, 0, 2, 2, 4, 5)),
    ],
    [
      "<dateTime.iso8601>20240102T03:04:05.250</dateTime.iso8601>",
      new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 250)),
    ],
    ["<array><data/></array>", []],
    ["<struct/>", {}],
    ["<struct><member><name/><value>v</value></member></struct>", { "": "v" }],
    ["<nil></nil>", null],
  ];
  for (const [xml, expected] of cases) {
    assert.deepEqual(decodeMethodCall(param(xml)).params[0], expected, xml);
  }
  assert.deepEqual(
    decodeMethodCall(
      param("<value/>").replace("<value><value/></value>", "<value/>"),
    ).params,
    [""],
  );
  assert.deepEqual(
    decodeMethodCall(
      '\uFEFF<?xml version="1.0" encoding="UTF-8"?>\n<!-- hi --><methodCall a="1" b=\'&amp;\'><methodName>m</methodName></methodCall>\n',
    ),
    { method: "m", params: [] },
  );
  assert.deepEqual(
    decodeMethodCall(
      "<methodCall><methodName>m</methodName><params/></methodCall>",
    ),
    { method: "m", params: [] },
  );
  assert.deepEqual(
    decodeMethodCall(new TextEncoder().encode(param("<string>\u00e9</string>")))
      .params,
    ["\u00e9"],
  );
});

Deno.test("decodeMethodCall() refuses DOCTYPEs, entities and markup it does not need", () => {
  const laughs =
    `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><methodCall><methodName>&lol2;</methodName></methodCall>`;
  refused(laughs, /DOCTYPE is not allowed/);
  refused(
    `<!DOCTYPE x SYSTEM "file:///etc/passwd"><methodCall/>`,
    /DOCTYPE is not allowed/,
  );
  refused(
    `<methodCall><!DOCTYPE x><methodName>m</methodName></methodCall>`,
    /DOCTYPE is not allowed/,
  );
  refused(`<!ENTITY x "y"><methodCall/>`, /entity declaration is not allowed/);
  refused(param("<string>&xxe;</string>"), /entity "&xxe;" is not allowed/);
  refused(param("<string>&nbsp;</string>"), /entity "&nbsp;" is not allowed/);
  refused(param("<string>a & b</string>"), /does not start a reference/);
  refused(param("<string>&#0;</string>"), /character XML 1.0 does not allow/);
  refused(
    param("<string>&#xD800;</string>"),
    /character XML 1.0 does not allow/,
  );
  refused(param("<string>&#x110000;</string>"), /not allowed|does not allow/);
  refused(param("<string>\u0001</string>"), /U\+0001/);
  refused(param("<string><?php x?></string>"), /processing instruction/);
  refused(param("<string><!ELEMENT x></string>"), /markup declaration/);
  refused(
    `<?xml version="1.0" encoding="ISO-8859-1"?><methodCall/>`,
    /encoding "ISO-8859-1" is not supported/,
  );
  refused(new Uint8Array([0x3c, 0xff, 0xfe]), /not valid UTF-8/);
  refused(param("<string><!-- a -- b --></string>"), /comment contains/);
  refused(param("<string><!-- open"), /comment is not closed/);
  refused(param("<string><![CDATA[open"), /CDATA section is not closed/);
});

Deno.test("decodeMethodCall() refuses bodies and nesting over the limits", () => {
  const big = param(`<string>${"x".repeat(1024 * 1024)}</string>`);
  refused(big, /over the 1048576-byte limit/, "too-large");
  refused(
    new TextEncoder().encode(big),
    /over the 1048576-byte limit/,
    "too-large",
  );
  refused(
    param("<string>abc</string>"),
    /over the 50-byte limit/,
    "too-large",
    {
      maxBodySize: 50,
    },
  );
  const deep = (n: number, open: string, close: string) =>
    param(`${open.repeat(n)}<int>1</int>${close.repeat(n)}`);
  const array = ["<array><data><value>", "</value></data></array>"] as const;
  const struct = [
    "<struct><member><name>a</name><value>",
    "</value></member></struct>",
  ] as const;
  assert.ok(decodeMethodCall(deep(64, ...array)));
  assert.ok(decodeMethodCall(deep(64, ...struct)));
  refused(deep(65, ...array), /nest deeper than 64/, "too-large");
  refused(deep(65, ...struct), /nest deeper than 64/, "too-large");
  refused(deep(3, ...array), /nest deeper than 2/, "too-large", {
    maxDepth: 2,
  });
  // A million opening tags: refused at depth 65, no stack overflow.
  refused(
    param("<array><data><value>".repeat(50_000)),
    /nest deeper than 64/,
    "too-large",
  );
  assert.throws(() => decodeMethodCall("<x/>", { maxDepth: 0 }), RangeError);
  assert.throws(
    () => decodeMethodCall("<x/>", { maxDepth: 1001 }),
    /at most 1000/,
  );
  // maxDepth bounds the recursion: no Infinity. maxBodySize may be.
  assert.throws(
    () => decodeMethodCall("<x/>", { maxDepth: Infinity }),
    {
      name: "RangeError",
      message: /^Cannot use maxDepth: expected at most 1000/,
    },
  );
  assert.equal(
    decodeMethodCall(big, { maxBodySize: Infinity }).params[0],
    "x".repeat(1024 * 1024),
  );
  assert.throws(
    () => decodeMethodCall("<x/>", { maxBodySize: 0.5 }),
    {
      name: "RangeError",
      message: /^Cannot use maxBodySize: expected a whole number/,
    },
  );
  // The highest allowed depth decodes without exhausting the stack.
  assert.ok(decodeMethodCall(deep(1000, ...array), { maxDepth: 1000 }));
});

Deno.test("decodeMethodCall() counts maxBodySize in UTF-8 bytes for a string too", () => {
  // 2-, 3- and 4-byte characters: 4 UTF-16 code units, 9 UTF-8 bytes.
  const text = "\u00e9\u20ac\u{1F600}".repeat(100);
  const doc = param(`<string>${text}</string>`);
  const utf8 = new TextEncoder().encode(doc);
  const bytes = utf8.byteLength;
  assert.equal(bytes - doc.length, 500);
  // Exactly at the limit: accepted, as text and as bytes.
  assert.equal(decodeMethodCall(doc, { maxBodySize: bytes }).params[0], text);
  assert.equal(decodeMethodCall(utf8, { maxBodySize: bytes }).params[0], text);
  // One byte over, though the string's length is 499 under: refused alike.
  for (const body of [doc, utf8]) {
    refused(
      body,
      new RegExp(`it is ${bytes} bytes, over the ${bytes - 1}-byte limit`),
      "too-large",
      { maxBodySize: bytes - 1 },
    );
  }
  // Longer than the limit in code units: over without counting.
  refused(doc, /more than 100 bytes, over the 100-byte limit/, "too-large", {
    maxBodySize: 100,
  });
});

Deno.test("decodeMethodCall() refuses out-of-range and malformed values", () => {
  const cases: [string, RegExp][] = [
    ["<int>2147483648</int>", /outside -2147483648 to 2147483647/],
    ["<i4>-2147483649</i4>", /outside/],
    ["<int>99999999999999999999999999</int>", /outside/],
    ["<int>1.5</int>", /not an integer/],
    ["<int></int>", /not an integer/],
    ["<int>0x10</int>", /not an integer/],
    ["<boolean>2</boolean>", /expected 0 or 1/],
    ["<boolean>true</boolean>", /expected 0 or 1/],
    ["<double>1e999</double>", /out of range/],
    ["<double>inf</double>", /not a number/],
    ["<double>nan</double>", /not a number/],
    ["<double>1e</double>", /not a number/],
    [
      "<dateTime.iso8601>20241302T00:00:00</dateTime.iso8601>",
      /not a valid time/,
    ],
    [
      "<dateTime.iso8601>20230229T00:00:00</dateTime.iso8601>",
      /not a valid date/,
    ],
    [
      "<dateTime.iso8601>20240102T24:00:00</dateTime.iso8601>",
      /not a valid time/,
    ],
    [
      "<dateTime.iso8601>yesterday</dateTime.iso8601>",
      /expected YYYYMMDDTHH:MM:SS/,
    ],
    ["<base64>AAA</base64>", /valid base64/],
    ["<base64>A*==</base64>", /valid base64/],
    ["<nil>x</nil>", /<nil> is not empty/],
    ["<i8>9223372036854775808</i8>", /outside -9223372036854775808 to/],
    ["<i8>-9223372036854775809</i8>", /outside/],
    ["<i8>1e3</i8>", /<i8> holds "1e3", not an integer/],
    ["<i8></i8>", /not an integer/],
    ["<i8>0x10</i8>", /not an integer/],
    ["<ex:i8>1.5</ex:i8>", /<ex:i8> holds "1.5", not an integer/],
    ["<ex:nil>x</ex:nil>", /<nil> is not empty/],
    ["<ex:int>1</ex:int>", /unknown value type <ex:int>/],
    ["<ex:>1</ex:>", /unknown value type <ex:>/],
    ["<array/>", /has no <data>/],
    ["<array><value>1</value></array>", /expected <data>/],
    ["text<int>1</int>", /mixes text/],
    ["<int>1</int>trailing", /expected a tag, found text "trailing/],
    ["<struct><member><value>1</value></member></struct>", /expected <name>/],
    [
      "<struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct>",
      /"a" appears twice/,
    ],
    ["<string>x</int>", /expected <\/string>/],
    ["<string attr>x</string>", /attribute in <string> has no value/],
    ["<string/x>x</string>", /tag <string> is malformed/],
    ["<string a=b>x</string>", /not quoted/],
    ["<string a='<'>x</string>", /contains '<'/],
    ["< string>x</string>", /element name/],
  ];
  for (const [xml, pattern] of cases) refused(param(xml), pattern);
  refused("", /ends where a tag was expected/);
  refused("<methodCall><methodName>m</methodName>", /ends where a tag/);
  refused("<methodResponse/>", /expected <methodCall>/);
  refused(
    "<methodCall><methodName>bad name</methodName></methodCall>",
    /is not 1 to 256/,
  );
  refused(
    "<methodCall><methodName>m</methodName></methodCall><methodCall/>",
    /after the root/,
  );
  refused(
    "<methodCall><methodName>m</methodName></methodCall>junk",
    /after the root/,
  );
  refused(call("<param/>"), /has no value/);
  assert.throws(
    () =>
      decodeMethodResponse(
        "<methodResponse><fault><value><string>x</string></value></fault></methodResponse>",
      ),
    /a <fault> must be a struct/,
  );
  assert.throws(
    () => decodeMethodResponse("<methodResponse><other/></methodResponse>"),
    /expected <params> or <fault>/,
  );
});

Deno.test("decodeMethodCall() reads <i8> as a number when safe, else a bigint", async () => {
  const cases: [string, XmlRpcValue][] = [
    ["<i8>0</i8>", 0],
    ["<i8>-0</i8>", 0],
    ["<i8> +42 </i8>", 42],
    ["<i8>2147483648</i8>", 2147483648],
    ["<i8>9007199254740991</i8>", Number.MAX_SAFE_INTEGER],
    ["<i8>-9007199254740991</i8>", Number.MIN_SAFE_INTEGER],
    ["<i8>9007199254740992</i8>", 9007199254740992n],
    ["<i8>-9007199254740992</i8>", -9007199254740992n],
    ["<i8>9223372036854775807</i8>", 9223372036854775807n],
    ["<i8>-9223372036854775808</i8>", -9223372036854775808n],
    ["<i8>00000000000000000000000000000000001</i8>", 1],
    ["<ex:i8>5</ex:i8>", 5],
  ];
  for (const [xml, expected] of cases) {
    const [value] = decodeMethodCall(param(xml)).params;
    assert.equal(typeof value, typeof expected, xml);
    assert.equal(value, expected, xml);
  }
  // Apache XML-RPC's extension namespace, as it writes it.
  const apache = `<?xml version="1.0" encoding="UTF-8"?>
<methodResponse xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions">
<params><param><value><array><data><value><ex:nil/></value>
<value><ex:i8>-5000000000</ex:i8></value></data></array></value></param>
</params></methodResponse>`;
  assert.deepEqual(decodeMethodResponse(apache), [null, -5000000000]);
  // Out of range at the server: the same fault as any malformed request.
  const handler = createXmlRpcHandler({ m: (value) => value });
  const response = await handler(
    post(param("<i8>9223372036854775808</i8>")),
  );
  await assert.rejects(answer(response), (error) => {
    assert.ok(error instanceof XmlRpcFault);
    assert.equal(error.faultCode, XmlRpcFaultCode.NOT_WELLFORMED);
    assert.match(error.faultString, /<i8> "9223372036854775808" is outside/);
    return true;
  });
  assert.equal(
    await answer(await handler(post(param("<i8>-9223372036854775808</i8>")))),
    -(2n ** 63n),
  );
});

Deno.test("encodeMethodCall() writes a bigint as <int> within 32 bits, else <i8>, and XmlRpcDouble as <double>", () => {
  const cases: [unknown, string][] = [
    [0n, "<int>0</int>"],
    [-2147483648n, "<int>-2147483648</int>"],
    [2147483647n, "<int>2147483647</int>"],
    [2147483648n, "<i8>2147483648</i8>"],
    [-2147483649n, "<i8>-2147483649</i8>"],
    [9223372036854775807n, "<i8>9223372036854775807</i8>"],
    [-9223372036854775808n, "<i8>-9223372036854775808</i8>"],
    [2147483648, "<double>2147483648</double>"],
    [new XmlRpcDouble(3), "<double>3.0</double>"],
    [new XmlRpcDouble(-0), "<double>-0.0</double>"],
    [new XmlRpcDouble(0.1), "<double>0.1</double>"],
    [new XmlRpcDouble(1e300), "<double>1e+300</double>"],
    [new XmlRpcDouble(2 ** 60), "<double>1152921504606847000</double>"],
  ];
  for (const [value, xml] of cases) {
    assert.equal(
      encodeMethodResponse(value),
      `<?xml version="1.0"?><methodResponse><params><param><value>${xml}</value></param></params></methodResponse>`,
    );
  }
  for (const big of [2n ** 63n, -(2n ** 63n) - 1n, 10n ** 30n]) {
    assert.throws(() => encodeMethodCall("m", [big]), (error) => {
      assert.ok(error instanceof RangeError);
      assert.match(
        error.message,
        /^Cannot encode the bigint -?\d+: XML-RPC integers end at <i8>, -9223372036854775808 to 9223372036854775807; send it as a string$/,
      );
      return true;
    });
  }
  assert.throws(() => new XmlRpcDouble(NaN), /no NaN or Infinity/);
  assert.throws(() => new XmlRpcDouble(Infinity), RangeError);
  assert.throws(
    () => new XmlRpcDouble("3" as unknown as number),
    /expected a number, got string/,
  );
  // Round trips: a bigint comes back as a number when it is safe.
  assert.equal(roundTrip(2n ** 40n), 2 ** 40);
  assert.equal(roundTrip(2n ** 60n), 2n ** 60n);
  assert.equal(roundTrip(-(2n ** 63n)), -(2n ** 63n));
  assert.equal(roundTrip(new XmlRpcDouble(3)), 3);
});

Deno.test("encodeMethodCall() refuses values XML-RPC cannot carry", () => {
  const cases: [unknown, ErrorConstructor, RegExp][] = [
    [NaN, RangeError, /no NaN or Infinity/],
    [Infinity, RangeError, /no NaN or Infinity/],
    [2n ** 63n, RangeError, /bigint/],
    ["nul \u0000", RangeError, /XML 1.0 cannot carry/],
    ["lone \uD800", RangeError, /lone surrogate/],
    ["\uFFFE", RangeError, /XML 1.0 cannot carry/],
    [new Date(NaN), RangeError, /invalid date/],
    [new Date(Date.UTC(10000, 0, 1)), RangeError, /outside 0000 to 9999/],
    [new Map(), TypeError, /Cannot encode a Map/],
    [new Uint16Array(2), TypeError, /Cannot encode a Uint16Array/],
    [() => 1, TypeError, /Cannot encode a function/],
    [Symbol("s"), TypeError, /Cannot encode a symbol/],
    [{ "bad\u0001name": 1 }, RangeError, /struct member name/],
  ];
  for (const [value, type, pattern] of cases) {
    assert.throws(() => encodeMethodCall("m", [value]), (error) => {
      assert.ok(error instanceof type, `${String(value)}: ${error}`);
      assert.match((error as Error).message, pattern);
      return true;
    });
  }
  const cycle: unknown[] = [];
  cycle.push(cycle);
  assert.throws(
    () => encodeMethodCall("m", [cycle]),
    /deeper than 64 \(or hold a cycle\)/,
  );
  assert.throws(
    () => encodeMethodCall("m", [[[1]]], { maxDepth: 1 }),
    /deeper than 1/,
  );
  assert.throws(() => encodeMethodCall("bad name"), TypeError);
  assert.throws(() => encodeMethodCall(""), TypeError);
});

// --- Bounded random mutations ------------------------------------------

function prng(seed: number): () => number {
  // mulberry32: small, deterministic, good enough to pick mutations.
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEEDS = [
  encodeMethodCall("set", [
    "name",
    { a: [1, 2.5, null, true], b: new Uint8Array([1, 2, 3]), c: new Date(0) },
  ]),
  `<?xml version='1.0'?>\n<methodCall>\n<methodName>get</methodName>\n<params>\n<param>\n<value><string>k&amp;&#65;</string></value>\n</param>\n</params>\n</methodCall>\n`,
  param(
    "<array><data><value>bare</value><value/><value><i4>7</i4></value></data></array>",
  ),
  param(
    "<struct><member><name>x</name><value><![CDATA[<c>]]></value></member></struct><!-- c -->",
  ),
  encodeMethodCall("system.multicall", [[
    { methodName: "get", params: [2n ** 40n] },
    { methodName: "m", params: [null, new XmlRpcDouble(1)] },
    { methodName: "system.multicall", params: [[]] },
  ]]),
];
const TOKENS = [
  "<",
  ">",
  "&",
  ";",
  "/",
  "'",
  '"',
  "=",
  "&amp;",
  "&#",
  "&#x",
  "&lol;",
  "<!DOCTYPE x [<!ENTITY a 'b'>]>",
  "<!--",
  "-->",
  "<![CDATA[",
  "]]>",
  "<?",
  "?>",
  "<value>",
  "</value>",
  "<array><data>",
  "</data></array>",
  "<struct>",
  "<member><name>",
  "</name>",
  "<int>",
  "</int>",
  "<double>",
  "9e999",
  "2147483648",
  "<i8>",
  "</i8>",
  "9223372036854775808",
  "<ex:nil/>",
  "<base64>",
  "====",
  "\u0000",
  "\uFFFF",
  "\u00e9",
  " ",
  "\n",
];

function mutate(doc: string, random: () => number): string {
  const at = () => Math.floor(random() * (doc.length + 1));
  const steps = 1 + Math.floor(random() * 4);
  for (let i = 0; i < steps; i++) {
    const p = at();
    switch (Math.floor(random() * 6)) {
      case 0: // delete a slice
        doc = doc.slice(0, p) + doc.slice(p + 1 + Math.floor(random() * 8));
        break;
      case 1: // insert a token
        doc = doc.slice(0, p) + TOKENS[Math.floor(random() * TOKENS.length)] +
          doc.slice(p);
        break;
      case 2: // replace a character
        doc = doc.slice(0, p) +
          String.fromCharCode(Math.floor(random() * 0x80)) + doc.slice(p + 1);
        break;
      case 3: { // duplicate a slice
        const q = at();
        const [a, b] = p < q ? [p, q] : [q, p];
        doc = doc.slice(0, b) + doc.slice(a, Math.min(b, a + 64)) +
          doc.slice(b);
        break;
      }
      case 4: // truncate
        doc = doc.slice(0, p);
        break;
      default: // swap two characters
        if (p + 1 < doc.length) {
          doc = doc.slice(0, p) + doc[p + 1] + doc[p] + doc.slice(p + 2);
        }
    }
  }
  return doc;
}

// Hang and blow-up bounds for the mutation tests. A document is a few
// hundred bytes and decodes in microseconds; these leave room for a
// loaded, shared machine and still catch a parser that loops or goes
// super-linear. The worker is terminated when one document takes longer
// than PER_DOC_MS, so a hang fails the test instead of freezing the run.
const PER_DOC_MS = 5_000;
const TOTAL_BUDGET_MS = 20_000;

/**
 * Runs each job in a worker, one at a time, and returns the results. Fails
 * (naming the document) when one gets no answer within PER_DOC_MS, or when
 * the time spent on them adds up past TOTAL_BUDGET_MS.
 */
async function fuzz(jobs: FuzzJob[]): Promise<FuzzResult[]> {
  const worker = new Worker(
    new URL("./_xmlrpc_fuzz_worker.ts", import.meta.url),
    { type: "module" },
  );
  let answer: PromiseWithResolvers<FuzzResult> | undefined;
  worker.onmessage = (event: MessageEvent<FuzzResult>) =>
    answer?.resolve(event.data);
  worker.onerror = (event) => {
    event.preventDefault();
    answer?.reject(new Error(`the worker failed: ${event.message}`));
  };
  const results: FuzzResult[] = [];
  let total = 0;
  try {
    for (const job of jobs) {
      answer = Promise.withResolvers<FuzzResult>();
      worker.postMessage(job);
      results.push(
        await within(
          answer.promise,
          PER_DOC_MS,
          `the answer (a hang?) for ${job.kind} ${JSON.stringify(job.doc)}`,
        ),
      );
      total += results.at(-1)!.ms;
      assert.ok(
        total < TOTAL_BUDGET_MS,
        `${results.length} documents took ${
          total.toFixed(0)
        } ms, over the ${TOTAL_BUDGET_MS} ms budget; the last: ${
          JSON.stringify(job.doc)
        }`,
      );
    }
  } finally {
    worker.terminate();
  }
  return results;
}

Deno.test("decodeMethodCall() survives 5000 mutated documents with only ProtocolErrors, none slow", async () => {
  const random = prng(0x5eed);
  const jobs = Array.from({ length: 5000 }, (_, i): FuzzJob => ({
    kind: "decode",
    doc: mutate(SEEDS[i % SEEDS.length], random),
  }));
  const results = await fuzz(jobs);
  let accepted = 0;
  let refusedCount = 0;
  results.forEach((result, i) => {
    const doc = JSON.stringify(jobs[i].doc);
    assert.notEqual(
      result.outcome,
      "unexpected",
      `${result.detail} for ${doc}`,
    );
    if (result.outcome === "accepted") accepted++;
    else {
      assert.match(result.detail, /^Cannot decode the XML-RPC message: /, doc);
      refusedCount++;
    }
  });
  // The mutations really exercise both paths.
  assert.ok(refusedCount > 2500, `only ${refusedCount} refused`);
  assert.ok(accepted > 50, `only ${accepted} accepted`);
});

Deno.test("createXmlRpcHandler() answers 2000 mutated requests with a fault or a result, never a throw or a hang", async () => {
  const random = prng(42);
  const jobs = Array.from({ length: 2000 }, (_, i): FuzzJob => ({
    kind: "handle",
    doc: mutate(SEEDS[i % SEEDS.length], random),
  }));
  const results = await fuzz(jobs);
  const seen = new Set<string>();
  results.forEach((result, i) => {
    assert.notEqual(
      result.outcome,
      "unexpected",
      `${result.detail} for ${JSON.stringify(jobs[i].doc)}`,
    );
    seen.add(result.outcome === "accepted" ? "result" : result.detail);
  });
  assert.ok(
    seen.has("result") && seen.has(String(XmlRpcFaultCode.NOT_WELLFORMED)),
    [...seen].join(),
  );
});

Deno.test("decodeMethodCall() stays linear on pathological inputs", () => {
  const MiB = 1024 * 1024 - 200;
  const inputs = [
    `<methodCall${" ".repeat(MiB)}`,
    `<methodCall${' a="1"'.repeat(MiB / 6)}`,
    param(`<string>${"&amp;".repeat(MiB / 5)}</string>`),
    param(`<string>${"&".repeat(MiB)}</string>`),
    "<".repeat(MiB),
    param(`<string>${"<!-- -->".repeat(MiB / 8)}</string>`),
    `<?xml ${"encoding= ".repeat(MiB / 10)}`,
    param(`<double>${"1".repeat(MiB)}</double>`),
    param(`<base64>${"A".repeat(MiB)}</base64>`),
    param(`<array><data>${"<value/>".repeat(MiB / 8)}</data></array>`),
  ];
  for (const input of inputs) {
    const start = performance.now();
    try {
      decodeMethodCall(input);
    } catch (error) {
      assert.ok(error instanceof ProtocolError, String(error));
    }
    const ms = performance.now() - start;
    // Generous: a quadratic scan of 1 MiB would take minutes.
    assert.ok(ms < 5000, `${ms} ms for ${JSON.stringify(input.slice(0, 40))}`);
  }
});

// --- Handler ---------------------------------------------------------------

function post(body: BodyInit, headers: HeadersInit = {}): Request {
  return new Request("http://localhost/", { method: "POST", body, headers });
}

async function answer(response: Response): Promise<XmlRpcValue> {
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/xml/);
  return decodeMethodResponse(await response.text());
}

Deno.test("createXmlRpcHandler() dispatches methods and turns errors into faults", async () => {
  const errors: string[] = [];
  const handler = createXmlRpcHandler({
    add: (a, b) => Number(a) + Number(b),
    async later() {
      await Promise.resolve();
      return { done: true };
    },
    nothing() {},
    boom() {
      throw new RangeError("out of range");
    },
    fault() {
      throw new XmlRpcFault(42, "chosen");
    },
    map: () => new Map(),
    badFault() {
      throw new XmlRpcFault(1.5, "not an int code");
    },
  }, {
    onError: (_error, info) => errors.push(`${info.phase} ${info.method}`),
  });
  assert.equal(
    await answer(await handler(post(encodeMethodCall("add", [2, 3])))),
    5,
  );
  assert.deepEqual(
    await answer(await handler(post(encodeMethodCall("later")))),
    { done: true },
  );
  assert.equal(
    await answer(await handler(post(encodeMethodCall("nothing")))),
    null,
  );
  assert.deepEqual(
    await answer(await handler(post(encodeMethodCall("system.listMethods")))),
    [
      "add",
      "badFault",
      "boom",
      "fault",
      "later",
      "map",
      "nothing",
      "system.listMethods",
      "system.methodHelp",
      "system.methodSignature",
    ],
  );
  const expectFault = async (body: BodyInit, code: number, pattern: RegExp) => {
    await assert.rejects(answer(await handler(post(body))), (error) => {
      assert.ok(error instanceof XmlRpcFault, String(error));
      assert.equal(error.faultCode, code);
      assert.match(error.faultString, pattern);
      return true;
    });
  };
  await expectFault(encodeMethodCall("boom"), 1, /^RangeError: out of range$/);
  await expectFault(encodeMethodCall("fault"), 42, /^chosen$/);
  await expectFault(
    encodeMethodCall("map"),
    XmlRpcFaultCode.INTERNAL_ERROR,
    /Cannot encode a Map/,
  );
  await expectFault(
    encodeMethodCall("missing"),
    XmlRpcFaultCode.METHOD_NOT_FOUND,
    /no such method/,
  );
  for (
    const name of ["constructor", "toString", "__proto__", "hasOwnProperty"]
  ) {
    await expectFault(
      encodeMethodCall(name),
      XmlRpcFaultCode.METHOD_NOT_FOUND,
      /no such method/,
    );
  }
  await expectFault(
    "<methodCall>",
    XmlRpcFaultCode.NOT_WELLFORMED,
    /Cannot decode/,
  );
  await expectFault(
    "<!DOCTYPE x><methodCall/>",
    XmlRpcFaultCode.NOT_WELLFORMED,
    /DOCTYPE/,
  );
  await expectFault(
    `<?xml version="1.0" encoding="latin-1"?><methodCall/>`,
    XmlRpcFaultCode.UNSUPPORTED_ENCODING,
    /encoding/,
  );
  await expectFault(
    call(
      "<param><value><struct><member><name>encoding</name><value>a</value></member><member><name>encoding</name><value>b</value></member></struct></value></param>",
    ),
    XmlRpcFaultCode.NOT_WELLFORMED,
    /"encoding" appears twice/,
  );
  await expectFault(encodeMethodCall("badFault"), 1, /^XmlRpcFault: /);
  assert.deepEqual(errors, ["method boom", "method map", "method badFault"]);
  const noIntrospection = createXmlRpcHandler({ a: () => 1 }, {
    introspection: false,
  });
  await assert.rejects(
    answer(await noIntrospection(post(encodeMethodCall("system.listMethods")))),
    { faultCode: XmlRpcFaultCode.METHOD_NOT_FOUND },
  );
  assert.throws(
    () => createXmlRpcHandler({ a: 1 as unknown as () => 1 }),
    TypeError,
  );
});

Deno.test("createXmlRpcHandler() serves system.multicall: a result or a fault per call, bounded, not nested", async () => {
  const order: string[] = [];
  const errors: string[] = [];
  const handler = createXmlRpcHandler({
    async add(a, b) {
      order.push(`add ${a}`);
      await new Promise((resolve) => setTimeout(resolve, 5 - Number(a)));
      order.push(`added ${a}`);
      return Number(a) + Number(b);
    },
    boom() {
      throw new TypeError("bad");
    },
    fault() {
      throw new XmlRpcFault(7, "seven");
    },
    map: () => new Map(),
    nested: () => [[[1]]],
  }, {
    multicall: true,
    maxMulticalls: 12,
    maxDepth: 4,
    onError: (_error, info) => errors.push(`${info.phase} ${info.method}`),
  });
  const multicall = (...params: unknown[]) =>
    handler(post(encodeMethodCall("system.multicall", params))).then(answer);
  assert.deepEqual(
    await multicall([
      { methodName: "add", params: [1, 2] },
      { methodName: "add", params: [2, 2] },
      { methodName: "boom", params: [] },
      { methodName: "fault", params: [] },
      { methodName: "nosuch", params: [] },
      { methodName: "map", params: [] },
      { methodName: "system.multicall", params: [[]] },
      { methodName: "add" },
      "not a struct",
      { methodName: 5, params: [] },
      { methodName: "nested", params: [] },
      { methodName: "system.listMethods", params: [] },
    ]),
    [
      [3],
      [4],
      { faultCode: 1, faultString: "TypeError: bad" },
      { faultCode: 7, faultString: "seven" },
      {
        faultCode: -32601,
        faultString: 'Cannot call "nosuch": no such method',
      },
      {
        faultCode: -32603,
        faultString:
          'Cannot encode the result of "map": Cannot encode a Map: only plain objects become an XML-RPC struct; convert it first',
      },
      {
        faultCode: -32600,
        faultString:
          "Cannot run call 7 of system.multicall: it is system.multicall again; nesting is refused",
      },
      ...[8, 9, 10].map((n) => ({
        faultCode: -32602,
        faultString:
          `Cannot run call ${n} of system.multicall: expected a struct with a string methodName and an array params`,
      })),
      // [[[1]]] is 3 deep, 5 inside the answer's two arrays: over maxDepth 4.
      {
        faultCode: -32603,
        faultString:
          'Cannot encode the result of "nested": Cannot encode the value: arrays and structs nest deeper than 4 (or hold a cycle)',
      },
      [[
        "add",
        "boom",
        "fault",
        "map",
        "nested",
        "system.listMethods",
        "system.methodHelp",
        "system.methodSignature",
        "system.multicall",
      ]],
    ],
  );
  // One after the other, even when a later call would finish first.
  assert.deepEqual(order, ["add 1", "added 1", "add 2", "added 2"]);
  assert.deepEqual(errors, ["method boom", "method map", "method nested"]);
  assert.deepEqual(await multicall([]), []);
  const refused = async (params: unknown[], pattern: RegExp) => {
    await assert.rejects(multicall(...params), (error) => {
      assert.ok(error instanceof XmlRpcFault, String(error));
      assert.equal(error.faultCode, XmlRpcFaultCode.INVALID_PARAMS);
      assert.match(error.faultString, pattern);
      return true;
    });
  };
  await refused(
    [Array.from({ length: 13 }, () => ({ methodName: "add", params: [] }))],
    /^Cannot run system\.multicall: 13 calls, over the limit of 12 \(maxMulticalls\); split them$/,
  );
  await refused([], /expected one parameter, an array of/);
  await refused([{ methodName: "add", params: [] }], /expected one parameter/);
  await refused([[], []], /expected one parameter/);
  // Off by default, as in Python.
  const plain = createXmlRpcHandler({ a: () => 1 });
  await assert.rejects(
    plain(post(encodeMethodCall("system.multicall", [[]]))).then(answer),
    { faultCode: XmlRpcFaultCode.METHOD_NOT_FOUND },
  );
  // Registering one's own while the handler serves it: which would run?
  assert.throws(
    () =>
      createXmlRpcHandler({ "system.multicall": () => 1 }, { multicall: true }),
    /Cannot register the method "system\.multicall": the handler serves it itself/,
  );
  assert.throws(
    () => createXmlRpcHandler({}, { maxMulticalls: 0 }),
    RangeError,
  );
});

Deno.test("createXmlRpcHandler() answers system.methodHelp and system.methodSignature from the registrations", async () => {
  const handler = createXmlRpcHandler({
    add: {
      handler: (a, b) => Number(a) + Number(b),
      help: "Adds two numbers.",
      signature: [["int", "int", "int"]],
    },
    bare: () => 1,
    "system.methodHelp": { handler: () => "mine" },
  });
  const ask = (method: string, ...params: unknown[]) =>
    handler(post(encodeMethodCall(method, params))).then(answer);
  assert.equal(await ask("add", 2, 3), 5);
  assert.deepEqual(await ask("system.methodSignature", "add"), [
    ["int", "int", "int"],
  ]);
  assert.equal(
    await ask("system.methodSignature", "bare"),
    "signatures not supported",
  );
  assert.deepEqual(
    await ask("system.methodSignature", "system.listMethods"),
    [["array"]],
  );
  // A method registered under a system name is served instead.
  assert.equal(await ask("system.methodHelp", "add"), "mine");
  const standard = createXmlRpcHandler({
    add: { handler: () => 0, help: "Adds two numbers." },
    bare: () => 1,
  });
  const help = (...params: unknown[]) =>
    standard(post(encodeMethodCall("system.methodHelp", params))).then(answer);
  assert.equal(await help("add"), "Adds two numbers.");
  assert.equal(await help("bare"), "");
  assert.match(
    String(await help("system.methodSignature")),
    /^system\.methodSignature\('add'\) => /,
  );
  await assert.rejects(help("nosuch"), {
    faultCode: XmlRpcFaultCode.METHOD_NOT_FOUND,
    faultString: 'Cannot describe "nosuch": no such method',
  });
  await assert.rejects(help(), {
    faultCode: XmlRpcFaultCode.INVALID_PARAMS,
    faultString:
      'Cannot call "system.methodHelp": expected one string, a method name',
  });
  await assert.rejects(help(1), { faultCode: XmlRpcFaultCode.INVALID_PARAMS });
  const bad: [unknown, RegExp][] = [
    [{ help: "x" }, /its handler must be a function, got undefined/],
    [{ handler: () => 1, help: 1 }, /help must be a string, got number/],
    [{ handler: () => 1, signature: [] }, /signature must be a non-empty/],
    [{ handler: () => 1, signature: ["int"] }, /signature must be/],
    [{ handler: () => 1, signature: [[]] }, /signature must be/],
    [{ handler: () => 1, signature: [["int", 1]] }, /signature must be/],
    [
      null,
      /expected a function or \{ handler, help\?, signature\? \}, got null/,
    ],
    ["add", /got string/],
  ];
  for (const [definition, pattern] of bad) {
    assert.throws(
      () =>
        createXmlRpcHandler({
          m: definition as () => unknown,
        }),
      (error) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /^Cannot register the method "m": /);
        assert.match(error.message, pattern);
        return true;
      },
    );
  }
});

Deno.test("createXmlRpcHandler() reports a request it cannot read to onError and rejects with the error", async () => {
  const reported: [unknown, XmlRpcErrorInfo][] = [];
  const handler = createXmlRpcHandler({ a: () => 1 }, {
    onError: (error, info) => reported.push([error, info]),
  });
  const reset = new Error("connection reset");
  const request = post(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.error(reset);
      },
    }),
  );
  await assert.rejects(handler(request), (error) => error === reset);
  assert.deepEqual(reported, [[reset, { phase: "request" }]]);
});

Deno.test("createXmlRpcHandler() refuses GET and oversized bodies without buffering them", async () => {
  const handler = createXmlRpcHandler({ a: () => 1 }, { maxBodySize: 1000 });
  const get = await handler(new Request("http://localhost/"));
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST");
  await get.body?.cancel();

  // A declared length over the limit: refused before reading a byte of a
  // body that would never end.
  let pulled = 0;
  let cancelled = false;
  const endless = () =>
    new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(100));
      },
      cancel() {
        cancelled = true;
      },
    });
  const declared = await handler(
    new Request("http://localhost/", {
      method: "POST",
      body: endless(),
      headers: { "content-length": "5000" },
    }),
  );
  assert.equal(declared.status, 413);
  assert.match(await declared.text(), /5000 bytes, over the 1000-byte limit/);

  // No length: counted as it streams, cancelled just past the limit.
  pulled = 0;
  const streamed = await handler(
    new Request("http://localhost/", { method: "POST", body: endless() }),
  );
  assert.equal(streamed.status, 413);
  assert.match(await streamed.text(), /over the 1000-byte limit/);
  assert.ok(cancelled);
  assert.ok(pulled <= 20, `pulled ${pulled} chunks`);
});

// --- Client ------------------------------------------------------------------

function serveHttp(
  handler: (
    request: Request,
    info: Deno.ServeHandlerInfo,
  ) => Response | Promise<Response>,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
}

Deno.test("createXmlRpcClient() calls, reuses its connection, and throws faults as XmlRpcFault", async () => {
  const ports = new Set<number>();
  const handler = createXmlRpcHandler({
    echo: (value) => value,
    missing: () => {
      throw new XmlRpcFault(1, "KeyError: 'x'");
    },
  });
  await using server = serveHttp((request, info) => {
    ports.add((info.remoteAddr as Deno.NetAddr).port);
    return handler(request);
  });
  await using client = createXmlRpcClient(
    `http://127.0.0.1:${server.addr.port}/`,
  );
  const value = {
    s: "\u00e9",
    list: [1, 2.5, null],
    bytes: new Uint8Array([9]),
  };
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(await client.call("echo", value), value);
  }
  assert.equal(
    ports.size,
    1,
    "20 calls should share one kept-alive connection",
  );
  await assert.rejects(client.call("missing"), (error) => {
    assert.ok(error instanceof XmlRpcFault);
    assert.equal(error.faultCode, 1);
    assert.equal(error.faultString, "KeyError: 'x'");
    return true;
  });
  client.close();
  await assert.rejects(client.call("echo", 1), /client is closed/);
});

Deno.test("createXmlRpcClient() rejects HTTP errors, garbage, oversized answers, stalls and aborts", async () => {
  let mode = "";
  const stall = Promise.withResolvers<void>();
  await using server = serveHttp(async () => {
    switch (mode) {
      case "404":
        return new Response("no such page", { status: 404 });
      case "garbage":
        return new Response("<html>hello</html>");
      case "big":
        return new Response(encodeMethodResponse("x".repeat(2000)));
      default:
        await stall.promise;
        return new Response(encodeMethodResponse(1));
    }
  });
  const url = `http://127.0.0.1:${server.addr.port}/`;
  {
    await using client = createXmlRpcClient(url, {
      maxBodySize: 1000,
      timeout: 200,
    });
    mode = "404";
    await assert.rejects(client.call("a"), (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.match(error.message, /HTTP 404: no such page/);
      return true;
    });
    mode = "garbage";
    await assert.rejects(client.call("a"), {
      name: "ProtocolError",
      reason: "malformed",
    });
    mode = "big";
    await assert.rejects(client.call("a"), {
      name: "ProtocolError",
      reason: "too-large",
    });
    mode = "stall";
    await assert.rejects(client.call("slow"), (error) => {
      assert.ok(error instanceof DOMException);
      assert.equal(error.name, "TimeoutError");
      assert.match(error.message, /Cannot call "slow": timed out after 200 ms/);
      return true;
    });
  }
  {
    const controller = new AbortController();
    await using client = createXmlRpcClient(url, { signal: controller.signal });
    const pending = client.call("slow");
    controller.abort();
    await assert.rejects(pending, { name: "AbortError" });
  }
  stall.resolve();
});

Deno.test("createXmlRpcClient() reads at most 4 KiB of an endless HTTP error body, then cancels it", async () => {
  let sent = 0;
  const cancelled = Promise.withResolvers<void>();
  const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
  await using server = serveHttp(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("overloaded: "));
        },
        pull(controller) {
          sent += chunk.byteLength;
          controller.enqueue(chunk);
        },
        cancel() {
          cancelled.resolve();
        },
      }),
      { status: 503 },
    )
  );
  await using client = createXmlRpcClient(
    `http://127.0.0.1:${server.addr.port}/`,
    {
      timeout: 5000,
    },
  );
  // Reading it whole would never end: the call would time out instead.
  await assert.rejects(client.call("a"), (error) => {
    assert.ok(error instanceof ProtocolError, String(error));
    assert.match(error.message, /HTTP 503: overloaded: x{100}/);
    assert.ok(error.message.length < 300, `${error.message.length} chars`);
    return true;
  });
  // The rest is not drained: the server sees the body cancelled.
  await within(cancelled.promise, 5000, "the body's cancellation");
  assert.ok(sent < 64 * 1024 * 1024, `the server sent ${sent} bytes`);
});

Deno.test("createXmlRpcClient() refuses bad arguments", () => {
  assert.throws(
    () => createXmlRpcClient("ftp://localhost/"),
    /https:\/\/ or http:\/\//,
  );
  assert.throws(
    () =>
      createXmlRpcClient("https://localhost/", {
        cert: "-----BEGIN CERTIFICATE-----",
      }),
    /cert and key go together/,
  );
  assert.throws(
    () => createXmlRpcClient("https://localhost/", { timeout: 0 }),
    RangeError,
  );
  assert.throws(
    () => createXmlRpcClient("https://localhost/", { maxDepth: -1 }),
    RangeError,
  );
});
