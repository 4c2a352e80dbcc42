import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  AuthenticationError,
  clientAuthenticate,
  type HashName,
  HmacKey,
  parseHashName,
  ProtocolError,
  serverAuthenticate,
} from "../mod.ts";
import { closeQuietly, readExact, writeAll } from "../_conn_io.ts";
import { utf8 } from "../_bytes.ts";
import {
  type CommandResult,
  duplexPair,
  findPython,
  interopScript,
  lines,
  peerTest,
  runCommand,
  type RunningExample,
  spawn,
  startExample,
  tcpPair,
} from "./_helpers.ts";

const KEY = "peanut butter";
const HASHES: HashName[] = ["SHA-256", "SHA-1", "SHA-384", "SHA-512", "MD5"];
const NODE_NAMES: Record<HashName, string> = {
  "SHA-256": "sha256",
  "SHA-1": "sha1",
  "SHA-384": "sha384",
  "SHA-512": "sha512",
  "MD5": "md5",
};

async function rejects(
  promise: Promise<unknown>,
  check: (error: unknown) => boolean,
): Promise<unknown> {
  let caught: unknown = undefined;
  await assert.rejects(promise, (error: unknown) => {
    caught = error;
    return check(error);
  });
  return caught;
}

for (const hash of HASHES) {
  Deno.test(`serverAuthenticate() accepts the right key with ${hash}`, async () => {
    const [client, server] = duplexPair();
    await Promise.all([
      serverAuthenticate(server, KEY, { hash }),
      clientAuthenticate(client, KEY, { hash }),
    ]);
  });

  Deno.test(`clientAuthenticate() answers with the raw HMAC-${hash} of the challenge`, async () => {
    const [client, server] = duplexPair();
    const challenge = crypto.getRandomValues(new Uint8Array(32));
    const done = clientAuthenticate(client, KEY, { hash });
    await writeAll(server.writable, challenge);
    const expected = createHmac(NODE_NAMES[hash], KEY).update(challenge)
      .digest();
    const reply = await readExact(
      server.readable,
      expected.length,
      undefined,
      "reply",
    );
    await done;
    assert.deepEqual([...reply], [...expected]);
  });
}

Deno.test("serverAuthenticate() rejects a wrong key with AuthenticationError", async () => {
  const [client, server] = duplexPair();
  const [result] = await Promise.allSettled([
    serverAuthenticate(server, KEY),
    clientAuthenticate(client, "jelly"),
  ]);
  assert.equal(result.status, "rejected");
  const error = result.reason;
  assert.ok(error instanceof AuthenticationError);
  assert.equal(error.name, "AuthenticationError");
  assert.equal(error.reason, "wrong-key");
  assert.match(error.message, /^Cannot authenticate the client/);
  assert.ok(!error.message.includes(KEY));
  assert.ok(!error.message.includes("jelly"));
});

Deno.test("serverAuthenticate() rejects a client that uses another hash", async () => {
  using pair = await tcpPair();
  const server = serverAuthenticate(pair.server, KEY, {
    hash: "SHA-256",
    timeout: 2000,
  });
  // SHA-512 digest is 64 bytes: the server reads the first 32 and rejects.
  await clientAuthenticate(pair.client, KEY, { hash: "SHA-512" });
  await rejects(
    server,
    (e) => e instanceof AuthenticationError && e.reason === "wrong-key",
  );
});

Deno.test("serverAuthenticate() times out a client whose hash has a shorter digest", async () => {
  // MD5 (16 bytes) and SHA-1 (20 bytes) against SHA-256 (32): the server waits
  // for the rest of its digest length, so the outcome is a timeout, not
  // "wrong-key" (documented in the outcome table).
  for (const hash of ["MD5", "SHA-1"] as const) {
    const [client, server] = duplexPair();
    const done = serverAuthenticate(server, KEY, { timeout: 300 });
    await clientAuthenticate(client, KEY, { hash });
    await rejects(
      done,
      (e) => e instanceof DOMException && e.name === "TimeoutError",
    );
  }
});

Deno.test("serverAuthenticate() reports a client that reads the challenge and closes", async () => {
  const [client, server] = duplexPair();
  const done = serverAuthenticate(server, KEY);
  await readExact(client.readable, 32, undefined, "challenge");
  await client.writable.close();
  const error = await rejects(
    done,
    (e) => e instanceof ProtocolError && e.reason === "closed",
  ) as ProtocolError;
  assert.match(error.message, /after 0 of 32 bytes/);
});

Deno.test("serverAuthenticate() rejects garbage", async () => {
  const [client, server] = duplexPair();
  const done = serverAuthenticate(server, KEY);
  await readExact(client.readable, 32, undefined, "challenge");
  await writeAll(client.writable, crypto.getRandomValues(new Uint8Array(32)));
  await rejects(done, (e) => e instanceof AuthenticationError);
});

Deno.test("serverAuthenticate() reports a short reply as ProtocolError closed", async () => {
  const [client, server] = duplexPair();
  const done = serverAuthenticate(server, KEY);
  await readExact(client.readable, 32, undefined, "challenge");
  await writeAll(client.writable, new Uint8Array(10));
  await client.writable.close();
  const error = await rejects(
    done,
    (e) => e instanceof ProtocolError && e.reason === "closed",
  ) as ProtocolError;
  assert.match(error.message, /after 10 of 32 bytes/);
});

Deno.test("serverAuthenticate() reports a peer that closes before replying", async () => {
  using pair = await tcpPair();
  const done = serverAuthenticate(pair.server, KEY, { timeout: 5000 });
  pair.client.close();
  await rejects(
    done,
    (e) =>
      (e instanceof ProtocolError && e.reason === "closed") ||
      e instanceof Deno.errors.ConnectionReset ||
      e instanceof Deno.errors.BrokenPipe,
  );
});

Deno.test("serverAuthenticate() reads only a digest's length from a peer that floods or speaks another protocol", async () => {
  // A flood: the first 32 bytes are judged as the digest, the rest stays
  // unread in the socket (nothing is buffered for a peer not yet trusted).
  {
    using pair = await tcpPair();
    const flood = new Uint8Array(64 * 1024).fill(0x41);
    flood.fill(0x42, 32);
    const writing = pair.client.write(flood).catch(() => 0);
    await rejects(
      serverAuthenticate(pair.server, KEY, { timeout: 5000 }),
      (e) => e instanceof AuthenticationError && e.reason === "wrong-key",
    );
    const next = new Uint8Array(16);
    assert.ok((await pair.server.read(next)) !== null);
    assert.equal(next[0], 0x42);
    pair.server.close();
    await writing;
  }
  // An HTTP request shorter than the digest, then a wait for an answer:
  // the deadline ends it.
  using pair = await tcpPair();
  await pair.client.write(utf8("GET / HTTP/1.1\r\n\r\n"));
  await rejects(
    serverAuthenticate(pair.server, KEY, { timeout: 100 }),
    (e) => e instanceof DOMException && e.name === "TimeoutError",
  );
});

Deno.test("serverAuthenticate() times out a peer that stalls", async () => {
  using pair = await tcpPair();
  const started = performance.now();
  const error = await rejects(
    serverAuthenticate(pair.server, KEY, { timeout: 200 }),
    (e) => e instanceof DOMException && e.name === "TimeoutError",
  ) as DOMException;
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 150, `timed out after ${elapsed} ms`);
  assert.match(error.message, /timed out after 200 ms/);
});

Deno.test("serverAuthenticate() times out a reply that stops halfway", async () => {
  using pair = await tcpPair();
  const done = serverAuthenticate(pair.server, KEY, { timeout: 300 });
  await readExact(pair.client.readable, 32, undefined, "challenge");
  await pair.client.write(new Uint8Array(5));
  await rejects(
    done,
    (e) => e instanceof DOMException && e.name === "TimeoutError",
  );
});

Deno.test("clientAuthenticate() times out a server that never sends a challenge", async () => {
  using pair = await tcpPair();
  await rejects(
    clientAuthenticate(pair.client, KEY, { timeout: 200 }),
    (e) => e instanceof DOMException && e.name === "TimeoutError",
  );
});

Deno.test("serverAuthenticate() rejects with the signal's reason on abort", async () => {
  using pair = await tcpPair();
  const controller = new AbortController();
  const done = serverAuthenticate(pair.server, KEY, {
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(), 20);
  await rejects(
    done,
    (e) => e instanceof DOMException && e.name === "AbortError",
  );
  const aborted = AbortSignal.abort(new Error("stop"));
  await rejects(
    serverAuthenticate(pair.server, KEY, { signal: aborted }),
    (e) => e instanceof Error && e.message === "stop",
  );
});

Deno.test("clientAuthenticate() reports a server that closes mid-challenge", async () => {
  const [client, server] = duplexPair();
  const done = clientAuthenticate(client, KEY);
  await writeAll(server.writable, new Uint8Array(7));
  await server.writable.close();
  const error = await rejects(
    done,
    (e) => e instanceof ProtocolError && e.reason === "closed",
  ) as ProtocolError;
  assert.match(error.message, /the server's challenge.*after 7 of 32 bytes/);
});

Deno.test("serverAuthenticate() leaves bytes after the digest for the application", async () => {
  using pair = await tcpPair();
  const hmac = await HmacKey.import(KEY);
  const done = serverAuthenticate(pair.server, hmac);
  const challenge = await readExact(
    pair.client.readable,
    32,
    undefined,
    "challenge",
  );
  const digest = await hmac.sign(challenge);
  // Digest and message in one write.
  const both = new Uint8Array([...digest, ...utf8("Hello")]);
  await pair.client.write(both);
  await done;
  const after = await readExact(pair.server.readable, 5, undefined, "hello");
  assert.equal(new TextDecoder().decode(after), "Hello");
});

Deno.test("serverAuthenticate() reads a digest split across many segments", async () => {
  using pair = await tcpPair();
  pair.client.setNoDelay(true);
  const hmac = await HmacKey.import(KEY, { hash: "SHA-512" });
  const done = serverAuthenticate(pair.server, hmac);
  const challenge = await readExact(
    pair.client.readable,
    32,
    undefined,
    "challenge",
  );
  const payload = new Uint8Array([
    ...await hmac.sign(challenge),
    ...utf8("World"),
  ]);
  for (const byte of payload) {
    await pair.client.write(new Uint8Array([byte]));
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await done;
  const after = await readExact(pair.server.readable, 5, undefined, "world");
  assert.equal(new TextDecoder().decode(after), "World");
});

Deno.test("clientAuthenticate() leaves bytes after the challenge unread", async () => {
  const [client, server] = duplexPair();
  const challenge = crypto.getRandomValues(new Uint8Array(32));
  await writeAll(server.writable, new Uint8Array([...challenge, 0x42]));
  await clientAuthenticate(client, KEY);
  const rest = await readExact(client.readable, 1, undefined, "rest");
  assert.equal(rest[0], 0x42);
});

Deno.test("serverAuthenticate() sends a fresh random challenge each time", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const [client, server] = duplexPair();
    const done = serverAuthenticate(server, KEY);
    const challenge = await readExact(
      client.readable,
      32,
      undefined,
      "challenge",
    );
    seen.add(challenge.toHex());
    assert.ok(challenge.some((byte) => byte !== 0));
    await client.writable.close();
    await done.catch(() => {});
  }
  assert.equal(seen.size, 20);
});

Deno.test("serverAuthenticate() honours challengeLength and checks its range", async () => {
  const [client, server] = duplexPair();
  const done = serverAuthenticate(server, KEY, { challengeLength: 64 });
  const challenge = await readExact(
    client.readable,
    64,
    undefined,
    "challenge",
  );
  const hmac = await HmacKey.import(KEY);
  await writeAll(client.writable, await hmac.sign(challenge));
  await done;
  for (const bad of [15, 1025]) {
    await assert.rejects(
      serverAuthenticate(server, KEY, { challengeLength: bad }),
      RangeError,
    );
  }
  await assert.rejects(
    clientAuthenticate(client, KEY, { challengeLength: 31.5 }),
    {
      name: "RangeError",
      message:
        "Cannot use challengeLength: expected a whole number of bytes from 16 to 1024, got 31.5",
    },
  );
  await assert.rejects(
    clientAuthenticate(client, KEY, {
      challengeLength: "32" as unknown as number,
    }),
    TypeError,
  );
  const [c2, s2] = duplexPair();
  await Promise.all([
    serverAuthenticate(s2, KEY, { challengeLength: 16 }),
    clientAuthenticate(c2, KEY, { challengeLength: 16 }),
  ]);
});

Deno.test("serverAuthenticate() refuses bad timeouts", async () => {
  const [, server] = duplexPair();
  await assert.rejects(
    serverAuthenticate(server, KEY, { timeout: 0 }),
    RangeError,
  );
  await assert.rejects(
    serverAuthenticate(server, KEY, { timeout: NaN }),
    TypeError,
  );
});

Deno.test("HmacKey.import() refuses empty and mistyped keys", async () => {
  await assert.rejects(HmacKey.import(""), TypeError);
  await assert.rejects(HmacKey.import(new Uint8Array(0)), TypeError);
  await assert.rejects(HmacKey.import(42 as unknown as string), TypeError);
  await assert.rejects(HmacKey.import(null as unknown as string), TypeError);
  await assert.rejects(
    HmacKey.import(KEY, { hash: "SHA-3" as HashName }),
    TypeError,
  );
  const [client, server] = duplexPair();
  await assert.rejects(
    serverAuthenticate(server, ""),
    (e) => e instanceof TypeError && /empty/.test(e.message),
  );
  await assert.rejects(
    clientAuthenticate(client, new Uint8Array()),
    (e) => e instanceof TypeError && /empty/.test(e.message),
  );
});

Deno.test("HmacKey.import() takes an HMAC CryptoKey and checks its hash", async () => {
  const cryptoKey = await crypto.subtle.generateKey(
    { name: "HMAC", hash: "SHA-384" },
    false,
    ["sign", "verify"],
  );
  const key = await HmacKey.import(cryptoKey);
  assert.equal(key.hash, "SHA-384");
  assert.equal(key.digestLength, 48);
  await assert.rejects(
    HmacKey.import(cryptoKey, { hash: "SHA-256" }),
    /imported|is for SHA-384/,
  );
  const aes = await crypto.subtle.generateKey(
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt"],
  );
  await assert.rejects(HmacKey.import(aes), /expected an HMAC CryptoKey/);
  const [client, server] = duplexPair();
  await Promise.all([
    serverAuthenticate(server, cryptoKey),
    clientAuthenticate(client, cryptoKey),
  ]);
});

Deno.test("HmacKey never shows key material", async () => {
  const key = await HmacKey.import("super secret value");
  assert.ok(!Deno.inspect(key).includes("super secret"));
  assert.equal(JSON.stringify(key), '{"hash":"SHA-256"}');
  const md5 = await HmacKey.import("super secret value", { hash: "MD5" });
  assert.ok(!Deno.inspect(md5).includes("super"));
});

Deno.test("HmacKey.import() copies a Uint8Array key", async () => {
  const raw = utf8(KEY);
  const key = await HmacKey.import(raw, { hash: "MD5" });
  raw.fill(0);
  const [client, server] = duplexPair();
  await Promise.all([
    serverAuthenticate(server, key),
    clientAuthenticate(client, KEY, { hash: "MD5" }),
  ]);
});

Deno.test("parseHashName() accepts common spellings", () => {
  assert.equal(parseHashName("sha256"), "SHA-256");
  assert.equal(parseHashName("SHA-1"), "SHA-1");
  assert.equal(parseHashName("Sha-512"), "SHA-512");
  assert.equal(parseHashName("md5"), "MD5");
  assert.throws(() => parseHashName("sha3-256"), TypeError);
});

Deno.test("serverAuthenticate() refuses a stream that is not a byte stream", async () => {
  const readable = new ReadableStream<Uint8Array<ArrayBuffer>>();
  const writable = new WritableStream<Uint8Array>();
  await assert.rejects(
    serverAuthenticate({ readable, writable }, KEY),
    /not a byte stream/,
  );
});

// ---------------------------------------------------------------------------
// Real Python peers written from the recipe (tests/interop/).

const python3 = { label: "python3 (3.11)", path: findPython("3") };
const python37 = { label: "Python 3.7 (pyenv 3.7.x)", path: findPython("3.7") };

async function ourServerAgainstPython(
  python: string,
  hash: HashName,
  digestArg: string,
  pythonKey = KEY,
): Promise<{ code: number; stdout: string; error?: unknown }> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const child = spawn(python, [
    interopScript("cookbook_client.py"),
    "127.0.0.1",
    String(listener.addr.port),
    pythonKey,
    digestArg,
    "Hello from Python",
  ]);
  child.stdin.close();
  // spawn() kills the child after 30 s, so this race is bounded: a client that
  // dies before connecting fails the test instead of hanging accept().
  const accepted = listener.accept();
  const conn = await Promise.race([accepted, child.status.then(() => null)]);
  if (conn === null) {
    const output = await child.output();
    throw new Error(
      `the Python client exited (code ${output.code}) before connecting: ${
        new TextDecoder().decode(output.stderr).trim()
      }`,
    );
  }
  let error: unknown;
  try {
    await serverAuthenticate(conn, KEY, { hash, timeout: 10_000 });
    const data = await readExact(conn.readable, 17, undefined, "message");
    await writeAll(conn.writable, data);
  } catch (e) {
    error = e;
  } finally {
    conn.close();
  }
  const output = await child.output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout).trim(),
    error,
  };
}

peerTest(
  "serverAuthenticate() accepts a Python recipe client (hmac sha256)",
  python3,
  async (python) => {
    const result = await ourServerAgainstPython(python, "SHA-256", "sha256");
    assert.equal(result.error, undefined);
    assert.equal(result.code, 0);
    assert.equal(result.stdout, "Hello from Python");
  },
);

peerTest(
  "serverAuthenticate() rejects a Python recipe client with a wrong key",
  python3,
  async (python) => {
    const result = await ourServerAgainstPython(
      python,
      "SHA-256",
      "sha256",
      "not the key",
    );
    assert.ok(result.error instanceof AuthenticationError);
    assert.equal(result.code, 3);
    assert.equal(result.stdout, "rejected");
  },
);

peerTest(
  "serverAuthenticate() accepts a Python 3.7 client using hmac.new(key, msg) (MD5)",
  python37,
  async (python) => {
    const result = await ourServerAgainstPython(python, "MD5", "default");
    assert.equal(result.error, undefined);
    assert.equal(result.stdout, "Hello from Python");
  },
);

async function ourClientAgainstPython(
  python: string,
  hash: HashName,
  digestArg: string,
  keys: string[],
): Promise<{ replies: (string | null)[]; verdicts: string[] }> {
  const child = spawn(python, [
    interopScript("cookbook_server.py"),
    KEY,
    digestArg,
    String(keys.length),
  ]);
  child.stdin.close();
  const stdout = lines(child.stdout);
  const first = await stdout.next();
  const port = Number(String(first.value).replace("port ", ""));
  const replies: (string | null)[] = [];
  for (const key of keys) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await clientAuthenticate(conn, key, { hash, timeout: 10_000 });
      await conn.write(utf8("Hello, Python"));
      const reply = await readExact(conn.readable, 13, undefined, "echo")
        .catch(() => null);
      replies.push(reply && new TextDecoder().decode(reply));
    } finally {
      closeQuietly(conn);
    }
  }
  const verdicts: string[] = [];
  for await (const line of stdout) verdicts.push(line);
  await child.stderr.cancel();
  await child.status;
  return { replies, verdicts };
}

peerTest(
  "clientAuthenticate() authenticates to a Python recipe server (sha256)",
  python3,
  async (python) => {
    const result = await ourClientAgainstPython(python, "SHA-256", "sha256", [
      KEY,
      "wrong key",
    ]);
    assert.deepEqual(result.replies, ["Hello, Python", null]);
    assert.deepEqual(result.verdicts, ["accept", "reject"]);
  },
);

peerTest(
  "clientAuthenticate() authenticates to a Python 3.7 server using the MD5 default",
  python37,
  async (python) => {
    const result = await ourClientAgainstPython(python, "MD5", "default", [
      KEY,
    ]);
    assert.deepEqual(result.replies, ["Hello, Python"]);
    assert.deepEqual(result.verdicts, ["accept"]);
  },
);

// ---------------------------------------------------------------------------
// The echo example, end to end as subprocesses.

const EXAMPLES = new URL("../examples/", import.meta.url).pathname;

function startEchoServer(
  env: Record<string, string>,
): Promise<RunningExample> {
  return startExample([
    "run",
    "--allow-net=127.0.0.1",
    "--allow-env=CONNAUTH_SECRET",
    `${EXAMPLES}echo_server.ts`,
    "--port",
    "0",
  ], { env });
}

function runEchoClient(
  port: number,
  env: Record<string, string>,
  args: string[] = [],
): Promise<CommandResult> {
  return runCommand(Deno.execPath(), [
    "run",
    `--allow-net=127.0.0.1:${port}`,
    "--allow-env=CONNAUTH_SECRET",
    `${EXAMPLES}echo_client.ts`,
    "--port",
    String(port),
    ...args,
  ], { env, trim: true });
}

Deno.test("examples/echo_server.ts and echo_client.ts work end to end", async () => {
  const env = { CONNAUTH_SECRET: "example key" };
  const server = await startEchoServer(env);
  try {
    const ok = await runEchoClient(server.port, env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "Hello World");
    assert.ok(!ok.stderr.includes("demo key"));

    const args = await runEchoClient(server.port, env, ["Hi", "there"]);
    assert.equal(args.code, 0, args.stderr);
    assert.equal(args.stdout, "Hi there");

    const wrong = await runEchoClient(server.port, { CONNAUTH_SECRET: "nope" });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /rejected our key/);
    assert.equal(wrong.stdout, "");
  } finally {
    await server.stop();
  }
  const log = server.log.join("\n");
  assert.match(log, /accept 127\.0\.0\.1:\d+/);
  assert.match(log, /reject 127\.0\.0\.1:\d+/);
  assert.ok(!log.includes("example key"), "the log shows no key");
});

Deno.test("examples/echo_server.ts reads --secret-file without its trailing newline", async () => {
  const dir = await Deno.makeTempDir({ prefix: "connauth-key-" });
  try {
    const keyFile = `${dir}/secret.key`;
    await Deno.writeTextFile(keyFile, "file key\r\n");
    const server = await startExample([
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${keyFile}`,
      `${EXAMPLES}echo_server.ts`,
      "--port",
      "0",
      "--secret-file",
      keyFile,
    ]);
    try {
      const ok = await runEchoClient(server.port, {
        CONNAUTH_SECRET: "file key",
      });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, "Hello World");
      const withNewline = await runEchoClient(server.port, {
        CONNAUTH_SECRET: "file key\n",
      });
      assert.equal(withNewline.code, 1);
    } finally {
      await server.stop();
    }
    assert.ok(!server.log.join("\n").includes("demo key"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("examples/echo_server.ts warns when it runs with the demo key", async () => {
  const server = await startEchoServer({});
  try {
    const ok = await runEchoClient(server.port, {});
    assert.equal(ok.stdout, "Hello World");
    assert.match(ok.stderr, /demo key/);
  } finally {
    await server.stop();
  }
  assert.match(server.log.join("\n"), /warning: using the built-in demo key/);
});

Deno.test("examples/echo_client.ts refuses a bad --timeout before connecting", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const result = await runEchoClient(listener.addr.port, {}, [
    "--timeout",
    "abc",
  ]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Cannot use --timeout "abc"/);
  // Nothing connected: closing the listener ends the pending accept.
  listener.close();
  await assert.rejects(accepted, Deno.errors.BadResource);
});

Deno.test("examples/echo_client.ts explains a refused connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const result = await runEchoClient(port, { CONNAUTH_SECRET: "k" });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /Cannot connect to 127\.0\.0\.1:\d+/);
});
