// Hostile input against the XML-RPC client (_xmlrpc_client.ts,
// _xmlrpc_client_options.ts): its own credentials must not come back in an
// error (a header value the runtime refuses, a URL that does not parse, a
// server's error page that echoes the request), and a server's error page
// must not put line breaks or terminal escapes in a message that ends up in
// a log. Each test is a regression: it failed before the fix it names.
import assert from "node:assert/strict";
import { ProtocolError } from "../../errors.ts";
import { createXmlRpcClient } from "../../xmlrpc.ts";
import { runCommand } from "../_helpers.ts";

const SECRET = "pa55-W0RD_never-shown";
const TOKEN = "tok-9f8e7d6c5b4a-never-shown";

/** Every message and stack in an error's cause chain, and its inspection. */
function texts(error: unknown): string[] {
  const out = [Deno.inspect(error, { depth: 10 })];
  for (let e = error, i = 0; e !== undefined && i < 10; i++) {
    out.push(e instanceof Error ? `${e.message}\n${e.stack}` : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return out;
}

function assertNotIn(error: unknown, ...secrets: string[]): void {
  for (const text of texts(error)) {
    for (const secret of secrets) {
      assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
    }
  }
}

// Regression: the runtime's own error, kept as the cause, quoted the value
// ('Invalid header value: "..."'), though the option promises its values
// never appear in an error.
Deno.test("createXmlRpcClient() names a header with an invalid value, never the value", () => {
  const url = "https://localhost/";
  for (
    const headers of [
      { "x-api-key": `${TOKEN}\r\nx-injected: 1` },
      [["x-api-key", `${TOKEN}\nx-injected: 1`]],
      new Map([["x-api-key", `${TOKEN}\0`]]),
      { "x-api-key": `${TOKEN}\u0100` },
    ]
  ) {
    assert.throws(
      () => createXmlRpcClient(url, { headers: headers as HeadersInit }),
      (error) => {
        assertNotIn(error, TOKEN);
        assert.ok(error instanceof TypeError);
        assert.equal(
          error.message,
          'Cannot create the XML-RPC client: headers holds an invalid header value for "x-api-key" (no CR, LF or NUL, no character above U+00FF); it is not shown',
        );
        return true;
      },
    );
  }
  // An invalid name is not repeated either: a mistake such as
  // "authorization: Bearer ..." as the name would carry the token.
  assert.throws(
    () =>
      createXmlRpcClient(url, {
        headers: { "x-trace": "1", [`authorization: Bearer ${TOKEN}`]: "" },
      }),
    (error) => {
      assertNotIn(error, TOKEN);
      assert.ok(error instanceof TypeError);
      assert.equal(
        error.message,
        "Cannot create the XML-RPC client: headers holds an invalid header name (header 2; a name is letters, digits and !#$%&'*+-.^_`|~, no spaces or colons); it is not shown",
      );
      return true;
    },
  );
  // A shape Headers cannot take at all.
  assert.throws(
    () =>
      createXmlRpcClient(url, {
        headers: [["x-a", TOKEN, "extra"]] as unknown as HeadersInit,
      }),
    (error) => {
      assertNotIn(error, TOKEN);
      assert.match(
        String(error),
        /^TypeError: Cannot create the XML-RPC client: headers must be a Headers, an array of \[name, value\] pairs or an object of names to values$/,
      );
      return true;
    },
  );
});

// Regression: only "//...@" up to the first "/", "?" or "#" was masked, so
// a password holding one of them unencoded (a common mistake, and the
// reason such a URL does not parse) was quoted in the message.
Deno.test("createXmlRpcClient() does not repeat the password of a URL that does not parse", () => {
  for (
    const [url, shown] of [
      [`https://ann:ab/${SECRET}@host/RPC2`, "https://***@host/RPC2"],
      [`https://ann:${SECRET}#x@host/RPC2`, "https://***@host/RPC2"],
      [`https://ann:${SECRET}?x@host/RPC2`, "https://***@host/RPC2"],
      [`http://ann:${SECRET}@[::1/`, "http://***@[::1/"],
      [`http://ann:${SECRET}@@host:99999/`, "http://***@host:99999/"],
    ]
  ) {
    assert.throws(() => createXmlRpcClient(url), (error) => {
      assertNotIn(error, SECRET, "ann:");
      assert.ok(error instanceof TypeError);
      assert.equal(
        error.message,
        `Cannot create the XML-RPC client: the URL ${
          JSON.stringify(shown)
        } is not valid`,
      );
      return true;
    });
  }
});

// Regression: the start of an error page went into the message as it came,
// line breaks and terminal escapes included, and with whatever of the
// request it echoed: a debugging page or proxy that repeats the request
// headers put the client's password and tokens in its error.
Deno.test("XmlRpcClient.call() puts a server's error page on one line, without the client's own credentials", async () => {
  const auth = `Basic ${new TextEncoder().encode(`ann:${SECRET}`).toBase64()}`;
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) =>
      new Response(
        `bad\r\nrequest\x1b[2J\x1b[31m\u2028\u202e x-api-key=${
          request.headers.get("x-api-key")
        } authorization=${
          request.headers.get("authorization")
        } password=${SECRET} encoded=${encodeURIComponent(SECRET)}\x00`,
        { status: 400 },
      ),
  );
  await using client = createXmlRpcClient(
    `http://127.0.0.1:${server.addr.port}/`,
    {
      basicAuth: { username: "ann", password: SECRET },
      headers: { "x-api-key": TOKEN },
    },
  );
  await assert.rejects(client.call("a"), (error) => {
    assertNotIn(error, SECRET, TOKEN, auth.slice(6));
    assert.ok(error instanceof ProtocolError);
    assert.equal(
      error.message,
      `Cannot call "a": http://127.0.0.1:${server.addr.port}/ answered HTTP 400: bad request [2J [31m x-api-key=*** authorization=*** password=*** encoded=***`,
    );
    return true;
  });
});

// Regression: a *File option was read with a synchronous read whatever it
// named; a named pipe nobody writes to blocked the whole process for ever
// (run in a child process here, so that a regression fails, not hangs).
Deno.test("createXmlRpcClient() refuses a *File that is not a regular file, without blocking", async () => {
  const dir = await Deno.makeTempDir({ prefix: "connauth-fifo-" });
  try {
    const pipe = `${dir}/ca.pem`;
    const made = await new Deno.Command("mkfifo", { args: [pipe] }).output();
    assert.ok(made.success, "mkfifo failed");
    const module = new URL("../../xmlrpc.ts", import.meta.url).href;
    for (const option of ["caFile", "certFile", "keyFile"]) {
      const code = `
        const { createXmlRpcClient } = await import(${JSON.stringify(module)});
        try {
          createXmlRpcClient("https://localhost/", { ${option}: Deno.args[0] });
        } catch (error) {
          console.log(error.name + ": " + error.message);
        }`;
      const output = await runCommand(
        Deno.execPath(),
        ["eval", "--no-check", code, pipe],
        { timeout: 20_000, trim: true },
      );
      const text = output.stdout;
      assert.equal(
        text,
        `TypeError: Cannot create the XML-RPC client: ${option} ${
          JSON.stringify(pipe.length > 40 ? `${pipe.slice(0, 40)}...` : pipe)
        } is not a regular file (a named pipe or a device would block the process, which reads it synchronously); read it yourself and pass its text as ${
          { caFile: "caCerts", certFile: "cert", keyFile: "key" }[option]
        }`,
        output.stderr,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
