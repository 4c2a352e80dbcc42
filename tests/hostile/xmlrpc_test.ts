// Hostile peers against the XML-RPC codec and handler: what an unauthenticated
// client can put in a request. Tests marked "regression" failed before the
// fix they name; the others confirm a defence that already held.
import assert from "node:assert/strict";
import { kvMethods } from "../../examples/kv_server.ts";
import { ProtocolError } from "../../errors.ts";
import {
  createXmlRpcHandler,
  decodeMethodCall,
  decodeMethodResponse,
  encodeMethodCall,
  encodeMethodResponse,
  XmlRpcFault,
  XmlRpcFaultCode,
  type XmlRpcValue,
} from "../../xmlrpc.ts";
import { within } from "../_helpers.ts";

function call(method: string, params: string): string {
  return `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>${params}</params></methodCall>`;
}

function param(value: string): string {
  return `<param><value>${value}</value></param>`;
}

function post(body: BodyInit): Request {
  return new Request("http://localhost/", { method: "POST", body });
}

/** The handler's answer: its value, or the XmlRpcFault it carries. */
async function answer(response: Response): Promise<XmlRpcValue> {
  assert.equal(response.status, 200);
  return decodeMethodResponse(await response.text());
}

function isFault(code: number, pattern?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof XmlRpcFault, `got ${error}`);
    assert.equal(error.faultCode, code, error.faultString);
    if (pattern) assert.match(error.faultString, pattern);
    return true;
  };
}

// Dates a zone offset moves out of the years 0000 to 9999: the first is
// -0001-12-31T23:30:00Z, the second +010000-01-01T00:59:59Z.
const OUT_OF_RANGE_DATES = [
  "00000101T00:30:00+01:00",
  "9999-12-31T23:59:59-01:00",
  "00000101T00:00:00.5+00:01",
];

// Regression: the range was checked on the local time, before the offset.
Deno.test("decodeMethodCall() refuses a dateTime its zone offset moves outside 0000 to 9999", () => {
  for (const text of OUT_OF_RANGE_DATES) {
    assert.throws(
      () =>
        decodeMethodCall(
          call("m", param(`<dateTime.iso8601>${text}</dateTime.iso8601>`)),
        ),
      (error: unknown) => {
        assert.ok(error instanceof ProtocolError, `got ${error}`);
        assert.equal(error.reason, "malformed");
        assert.match(error.message, /outside the years 0000 to 9999/);
        return true;
      },
      text,
    );
  }
  // The edges that stay inside decode, and encode back.
  for (
    const [text, iso] of [
      ["00000101T00:30:00-01:00", "0000-01-01T01:30:00.000Z"],
      ["99991231T23:59:59+01:00", "9999-12-31T22:59:59.000Z"],
      ["00000101T00:00:00", "0000-01-01T00:00:00.000Z"],
      ["99991231T23:59:59Z", "9999-12-31T23:59:59.000Z"],
    ]
  ) {
    const [date] = decodeMethodCall(
      call("m", param(`<dateTime.iso8601>${text}</dateTime.iso8601>`)),
    ).params as Date[];
    assert.equal(date.toISOString(), iso);
    assert.doesNotThrow(() => encodeMethodResponse(date));
  }
});

// Regression: such a date was stored by `set` and every `get` of it failed.
Deno.test("kvMethods() over createXmlRpcHandler() refuses at set() a date that get() could not return", async () => {
  using kv = await Deno.openKv(":memory:");
  const handler = createXmlRpcHandler(kvMethods(kv));
  for (const [i, text] of OUT_OF_RANGE_DATES.entries()) {
    const body = call(
      "set",
      param(`<string>d${i}</string>`) +
        param(`<dateTime.iso8601>${text}</dateTime.iso8601>`),
    );
    await assert.rejects(
      answer(await handler(post(body))),
      isFault(XmlRpcFaultCode.NOT_WELLFORMED, /outside the years 0000/),
    );
    await assert.rejects(
      answer(await handler(post(encodeMethodCall("get", [`d${i}`])))),
      isFault(XmlRpcFaultCode.APPLICATION, /KeyError/),
    );
  }
  // A date inside the range is stored and read back.
  const inside = call(
    "set",
    param("<string>ok</string>") +
      param("<dateTime.iso8601>99991231T23:59:59+01:00</dateTime.iso8601>"),
  );
  assert.equal(await answer(await handler(post(inside))), null);
  const back = await answer(
    await handler(post(encodeMethodCall("get", ["ok"]))),
  );
  assert.equal((back as Date).toISOString(), "9999-12-31T22:59:59.000Z");
});

// Regression: a throwing onError hook made the handler reject instead of
// answering the fault.
Deno.test("createXmlRpcHandler() answers the fault even when its onError hook throws", async () => {
  let calls = 0;
  const handler = createXmlRpcHandler({
    boom() {
      throw new Error("method failed");
    },
    unencodable: () => new Map(),
  }, {
    onError() {
      calls++;
      throw new Error("the hook failed too");
    },
  });
  await assert.rejects(
    answer(await handler(post(encodeMethodCall("boom")))),
    isFault(XmlRpcFaultCode.APPLICATION, /^Error: method failed$/),
  );
  await assert.rejects(
    answer(await handler(post(encodeMethodCall("unencodable")))),
    isFault(XmlRpcFaultCode.INTERNAL_ERROR, /Cannot encode a Map/),
  );
  assert.equal(calls, 2);
});

Deno.test("createXmlRpcHandler() bounds system.multicall: a long list runs nothing, nesting is refused, a throwing hook or value costs one answer", async () => {
  let runs = 0;
  let hooked = 0;
  const handler = createXmlRpcHandler({
    count: () => ++runs,
    weird() {
      throw Object.create(null);
    },
    unencodable: () => new Map(),
  }, {
    multicall: true,
    onError() {
      hooked++;
      throw new Error("the hook failed too");
    },
  });
  // 5000 calls in under 1 MiB: refused whole before any of them runs.
  const flood = call(
    "system.multicall",
    param(
      `<array><data>${
        "<value><struct><member><name>methodName</name><value>count</value></member><member><name>params</name><value><array><data/></array></value></member></struct></value>"
          .repeat(5000)
      }</data></array>`,
    ),
  );
  assert.ok(flood.length < 1024 * 1024, `${flood.length} bytes`);
  await assert.rejects(
    answer(await handler(post(flood))),
    isFault(
      XmlRpcFaultCode.INVALID_PARAMS,
      /5000 calls, over the limit of 100/,
    ),
  );
  assert.equal(runs, 0);
  // Nesting would multiply the limit: each nested call is refused, unrun.
  const nested = Array.from({ length: 100 }, () => ({
    methodName: "system.multicall",
    params: [
      Array.from({ length: 20 }, () => ({ methodName: "count", params: [] })),
    ],
  }));
  const answers = await answer(
    await handler(post(encodeMethodCall("system.multicall", [nested]))),
  ) as XmlRpcValue[];
  assert.equal(answers.length, 100);
  for (const item of answers) {
    assert.deepEqual(item, {
      faultCode: XmlRpcFaultCode.INVALID_XMLRPC,
      faultString: (item as { faultString: string }).faultString,
    });
    assert.match(
      (item as { faultString: string }).faultString,
      /nesting is refused$/,
    );
  }
  assert.equal(runs, 0);
  // A value that cannot be described or encoded, a hook that throws: the
  // calls around them still run and answer.
  assert.deepEqual(
    await answer(
      await handler(post(encodeMethodCall("system.multicall", [[
        { methodName: "count", params: [] },
        { methodName: "weird", params: [] },
        { methodName: "unencodable", params: [] },
        { methodName: "count", params: [] },
      ]]))),
    ),
    [
      [1],
      {
        faultCode: XmlRpcFaultCode.APPLICATION,
        faultString: "Error: a thrown value with no string form",
      },
      {
        faultCode: XmlRpcFaultCode.INTERNAL_ERROR,
        faultString:
          'Cannot encode the result of "unencodable": Cannot encode a Map: only plain objects become an XML-RPC struct; convert it first',
      },
      [2],
    ],
  );
  assert.equal(hooked, 2);
});

// Regression: a thrown value with no string form (a null-prototype object)
// made the handler reject while describing it.
Deno.test("createXmlRpcHandler() answers a fault for any thrown value, even one that cannot be turned into a string", async () => {
  const unprintable = Object.create(null);
  const lying = new Error("x");
  Object.defineProperty(lying, "message", {
    get() {
      throw new Error("no message for you");
    },
  });
  const handler = createXmlRpcHandler({
    nullProto() {
      throw unprintable;
    },
    lyingError() {
      throw lying;
    },
    symbol() {
      throw Symbol("s");
    },
    badResult() {
      // Encoding reads the getter, which throws a null-prototype object.
      return {
        get x() {
          throw unprintable;
        },
      };
    },
  });
  for (const method of ["nullProto", "lyingError", "symbol"]) {
    await assert.rejects(
      answer(await handler(post(encodeMethodCall(method)))),
      isFault(XmlRpcFaultCode.APPLICATION),
      method,
    );
  }
  await assert.rejects(
    answer(await handler(post(encodeMethodCall("badResult")))),
    isFault(XmlRpcFaultCode.INTERNAL_ERROR, /Cannot encode the result/),
  );
});

// Confirms: the codec refuses every hostile form with a ProtocolError, in
// bounded time, and the handler turns each into a fault.
Deno.test("createXmlRpcHandler() answers hostile documents with faults, never a throw", async () => {
  const deep = (n: number) =>
    call(
      "m",
      param(
        "<array><data><value>".repeat(n) + "1" +
          "</value></data></array>".repeat(n),
      ),
    );
  const cases: [string | Uint8Array<ArrayBuffer>, RegExp][] = [
    // Nesting far past maxDepth, and past any stack.
    [deep(100_000).slice(0, 1_000_000), /nest deeper than 64/],
    // Entity tricks: billion laughs, external entities, references.
    [
      `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><methodCall><methodName>m</methodName></methodCall>`,
      /DOCTYPE is not allowed/,
    ],
    [
      `<!DOCTYPE m SYSTEM "file:///etc/passwd"><methodCall/>`,
      /DOCTYPE is not allowed/,
    ],
    [call("m", param("<string>&lol;</string>")), /entity "&lol;" is not/],
    [call("m", param("<string>&#0;</string>")), /does not allow/],
    [call("m", param("<string>&#xD800;</string>")), /does not allow/],
    [call("m", param("<string>&#x110000;</string>")), /does not allow/],
    [call("m", param("<string>&#00000000065;</string>")), /does not start/],
    // Huge numbers.
    [call("m", param(`<int>${"9".repeat(100_000)}</int>`)), /not an integer/],
    [call("m", param(`<double>${"9".repeat(500_000)}</double>`)), /not a/],
    [call("m", param("<double>1e400</double>")), /out of range/],
    [call("m", param("<int>-2147483649</int>")), /outside/],
    // Invalid base64.
    [call("m", param("<base64>====</base64>")), /valid base64/],
    [call("m", param("<base64>QUJD\u00e9</base64>")), /valid base64/],
    [call("m", param("<base64>QU=J</base64>")), /valid base64/],
    // Garbage and other protocols.
    [new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), /does not allow/],
    [new Uint8Array([0xff, 0xfe, 0x3c, 0x00]), /not valid UTF-8/],
    [`{"jsonrpc":"2.0","method":"m","id":1}`, /expected a tag/],
    ["GET / HTTP/1.1\r\nHost: x\r\n\r\n", /expected a tag/],
    [
      "<methodCall><methodName>m</methodName><params><param><value><string>ab",
      /ends inside an element/,
    ],
  ];
  const handler = createXmlRpcHandler({ m: () => 1 });
  for (const [body, pattern] of cases) {
    const label = typeof body === "string" ? body.slice(0, 60) : "bytes";
    const response = await within(handler(post(body)), 5000, label);
    await assert.rejects(
      answer(response),
      isFault(XmlRpcFaultCode.NOT_WELLFORMED, pattern),
      label,
    );
  }
  // With the largest maxDepth, deep nesting still stops at the limit.
  const deepest = createXmlRpcHandler({ m: () => 1 }, { maxDepth: 1000 });
  await assert.rejects(
    answer(await deepest(post(deep(1001)))),
    isFault(XmlRpcFaultCode.NOT_WELLFORMED, /nest deeper than 1000/),
  );
  assert.equal(await answer(await deepest(post(deep(1000)))), 1);
});

// Confirms: a huge declared size is refused before the body is buffered, and
// a body that stops early does not stop the server.
Deno.test("createXmlRpcHandler() under Deno.serve refuses huge sizes, survives cut bodies and keeps serving", async () => {
  await using server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
    onError: () => new Response("error", { status: 500 }),
  }, createXmlRpcHandler({ echo: (value) => value }, { maxBodySize: 4096 }));
  const { port } = server.addr;
  /** Sends raw bytes; returns what comes back until the peer closes. */
  const raw = async (
    request: string,
    then: "read" | "half-close" | "leave",
  ) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode(request));
    if (then === "leave") return "";
    if (then === "half-close") await conn.closeWrite();
    const buffer = new Uint8Array(8192);
    let text = "";
    for (let i = 0; i < 100; i++) {
      const n = await within(conn.read(buffer), 5000, "the answer");
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
      if (text.includes("\r\n\r\n")) break;
    }
    return text;
  };
  // A declared size over the limit: refused before the body arrives.
  assert.match(
    await raw(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
      "read",
    ),
    /^HTTP\/1.1 413/,
  );
  // No declared size, chunks past the limit: refused while reading.
  const chunk = "x".repeat(3000);
  const size = chunk.length.toString(16);
  assert.match(
    await raw(
      `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${size}\r\n${chunk}\r\n${size}\r\n${chunk}\r\n`,
      "read",
    ),
    /^HTTP\/1.1 413/,
  );
  // A body cut short: the client half-closes, or goes away at once.
  const body = encodeMethodCall("echo", ["x".repeat(100)]);
  const cut =
    `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${
      body.slice(0, 50)
    }`;
  await raw(cut, "half-close");
  await raw(cut, "leave");
  // The server answers the next honest request.
  const response = await fetch(`http://127.0.0.1:${port}/`, {
    method: "POST",
    body: encodeMethodCall("echo", ["still here"]),
  });
  assert.equal(await answer(response), "still here");
});

// Regression: the handler waited for a request body as long as the client
// took, holding what it had sent so far.
Deno.test("createXmlRpcHandler() answers 408 to a body that stops arriving, within bodyTimeout", async () => {
  const handler = createXmlRpcHandler({ m: () => 1 }, { bodyTimeout: 200 });
  for (const declared of [true, false]) {
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        // Half a request, then nothing: the stream never ends.
        controller.enqueue(new TextEncoder().encode("<methodCall><method"));
      },
      cancel() {
        cancelled = true;
      },
    });
    const request = new Request("http://localhost/", {
      method: "POST",
      body,
      headers: declared ? { "content-length": "1000" } : {},
    });
    const response = await within(handler(request), 5000, "the answer");
    assert.equal(response.status, 408);
    assert.equal(response.headers.get("connection"), "close");
    assert.match(
      await response.text(),
      /Cannot read the XML-RPC request body: timed out after 200 ms/,
    );
    // Read chunk by chunk, the body is cancelled; read whole (a declared
    // length), the runtime holds it until the connection goes.
    if (!declared) assert.ok(cancelled);
  }
  assert.throws(() => createXmlRpcHandler({}, { bodyTimeout: 0 }), RangeError);
  // A body that arrives in time is served as before.
  assert.equal(await answer(await handler(post(encodeMethodCall("m")))), 1);
});
