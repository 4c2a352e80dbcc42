// The XML-RPC key-value store (examples/kv_server.ts, examples/kv_client.ts):
// Python's ServerProxy against it over mutual TLS, refusals, crash
// durability, limits and paging, and the command-line client.
import assert from "node:assert/strict";
import {
  createCertificateAuthority,
  generateCertificates,
  issueCertificate,
} from "../certs.ts";
import {
  createXmlRpcClient,
  createXmlRpcHandler,
  decodeMethodResponse,
  encodeMethodCall,
  XmlRpcFault,
  type XmlRpcValue,
} from "../xmlrpc.ts";
import { kvMethods, MAX_KEYS } from "../examples/kv_server.ts";
import { findPython, interopScript, lines, peerTest } from "./_helpers.ts";

const SERVER = new URL("../examples/kv_server.ts", import.meta.url).pathname;
const CLIENT = new URL("../examples/kv_client.ts", import.meta.url).pathname;

/** A temp folder with certs/ (as `deno task certs` writes it) and extras. */
async function certDir(): Promise<string & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "connauth-kv-" });
  const set = await generateCertificates({ clients: ["client", "mallory"] });
  const other = await createCertificateAuthority({ commonName: "other CA" });
  const stranger = await issueCertificate(other, {
    usage: "client",
    commonName: "client",
  });
  await Deno.mkdir(`${dir}/certs`);
  const files: Record<string, string> = {
    "certs/ca.pem": set.ca.cert,
    "certs/server.pem": set.server.cert,
    "certs/server-key.pem": set.server.key,
    "certs/client.pem": set.clients.client.cert,
    "certs/client-key.pem": set.clients.client.key,
    "mallory.pem": set.clients.mallory.cert,
    "mallory-key.pem": set.clients.mallory.key,
    "stranger.pem": stranger.cert,
    "stranger-key.pem": stranger.key,
  };
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return Object.assign(dir, {
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  });
}

interface RunningServer extends AsyncDisposable {
  port: number;
  child: Deno.ChildProcess;
  log: string[];
}

/** Starts examples/kv_server.ts with narrow permissions, port 0. */
async function startServer(
  dir: string,
  args: string[] = [],
): Promise<RunningServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-kv",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      SERVER,
      "--port",
      "0",
      "--certs",
      `${dir}/certs`,
      "--db",
      `${dir}/kv.sqlite3`,
      ...args,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const log: string[] = [];
  const it = lines(child.stderr);
  let port = 0;
  for (let i = 0; i < 20 && port === 0; i++) {
    const { value, done } = await it.next();
    if (done) break;
    log.push(value);
    const match = /listening on https:\/\/localhost:(\d+)\//.exec(value);
    if (match) port = Number(match[1]);
  }
  const drained = (async () => {
    for await (const line of it) log.push(line);
  })();
  if (port === 0) {
    child.kill("SIGKILL");
    await child.status;
    await drained;
    throw new Error(`kv server did not start:\n${log.join("\n")}`);
  }
  return {
    port,
    child,
    log,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      await child.status;
      await drained;
    },
  };
}

function clientFor(dir: string, port: number, cert = "certs/client") {
  return createXmlRpcClient(`https://localhost:${port}/`, {
    caCerts: [Deno.readTextFileSync(`${dir}/certs/ca.pem`)],
    cert: Deno.readTextFileSync(`${dir}/${cert}.pem`),
    key: Deno.readTextFileSync(`${dir}/${cert}-key.pem`),
    timeout: 10_000,
  });
}

async function runPython(
  python: string,
  args: string[],
): Promise<Record<string, unknown>> {
  const output = await new Deno.Command(python, {
    args: [interopScript("kv_xmlrpc_client.py"), ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, `python failed:\n${stderr}`);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

for (const version of ["3.12", "3.7"]) {
  const python = findPython(version);
  peerTest(
    `kv_server serves Python ${version} ServerProxy over mutual TLS: every type, delete, exists, keys, KeyError`,
    { label: `python${version}`, path: python },
    async (python) => {
      await using dir = await certDir();
      await using server = await startServer(dir);
      const report = await runPython(python, [
        String(server.port),
        `${dir}/certs/ca.pem`,
        `${dir}/certs/client.pem`,
        `${dir}/certs/client-key.pem`,
        "full",
      ]);
      for (const [name, ok] of Object.entries(report.checks as object)) {
        assert.equal(ok, true, `check "${name}" failed`);
      }
      const values = report.values as Record<string, unknown>;
      assert.equal(values.string, "h\u00e9llo <b>&amp;</b> \u2603 \u{1F600}");
      assert.equal(values.empty, "");
      assert.equal(values.int, -2147483648);
      assert.equal(values.double, 2.5e-300);
      assert.equal(values.true, true);
      assert.equal(values.none, null);
      assert.deepEqual(values.list, [1, "two", [3.5, null], { k: false }]);
      assert.deepEqual(values.dict, {
        name: "alice",
        tags: ["a", "b"],
        nested: { x: 1 },
      });
      assert.deepEqual(values.binary, {
        binary: Array.from({ length: 256 }, (_, i) => i),
      });
      assert.deepEqual(values.date, { datetime: "20240229T23:59:58" });
      assert.deepEqual(report.keys, [
        "binary",
        "bytes",
        "date",
        "dict",
        "double",
        "empty",
        "int",
        "list",
        "none",
        "string",
        "true",
      ]);
      assert.deepEqual(report.missing, {
        code: 1,
        string: "KeyError: 'missing'",
      });
      assert.deepEqual(report["delete missing"], {
        code: 1,
        string: "KeyError: 'missing'",
      });
      assert.deepEqual(report.methods, [
        "delete",
        "exists",
        "get",
        "keys",
        "set",
        "system.listMethods",
        "system.methodHelp",
        "system.methodSignature",
      ]);
      // What Python stored, our client reads back with the same types.
      using client = clientFor(dir, server.port);
      const bytes = await client.call("get", "bytes");
      assert.deepEqual(
        bytes,
        Uint8Array.from("\x00\xff raw bytes", (c) => c.charCodeAt(0)),
      );
      assert.deepEqual(
        await client.call("get", "date"),
        new Date(Date.UTC(2024, 1, 29, 23, 59, 58)),
      );
    },
  );
}

const python = findPython("3.12");

/**
 * Runs one Python probe against a server of its own, stopped right after,
 * so that every line it logged (its whole stderr) belongs to this probe.
 */
async function probeAlone(
  python: string,
  dir: string,
  who: string | null,
): Promise<{ result: Record<string, unknown>; refusals: string[] }> {
  const server = await startServer(dir);
  let result: Record<string, unknown>;
  try {
    result = await runPython(python, [
      String(server.port),
      `${dir}/certs/ca.pem`,
      who ? `${dir}/${who}.pem` : "-",
      who ? `${dir}/${who}-key.pem` : "-",
      "probe",
    ]);
  } finally {
    await server[Symbol.asyncDispose]();
  }
  return {
    result,
    refusals: server.log.filter((line) => /^refused /.test(line)),
  };
}

/** Asserts at least one refusal, each naming `reason` and matching `detail`. */
function assertRefusals(refusals: string[], reason: string, detail: RegExp) {
  assert.ok(refusals.length > 0, "the server logged no refusal");
  for (const line of refusals) {
    assert.match(
      line,
      new RegExp(
        `^refused \\S+ \\(${reason}\\): Cannot accept the TLS connection: `,
      ),
    );
    assert.match(line, detail);
  }
}

peerTest(
  "kv_server refuses Python without a client certificate, with one from another CA, and with a CN outside the allow-list",
  { label: "python3.12", path: python },
  async (python) => {
    await using dir = await certDir();
    const good = await probeAlone(python, dir, "certs/client");
    assert.deepEqual(good.result, { ok: true, result: false });
    assert.deepEqual(good.refusals, []);

    const none = await probeAlone(python, dir, null);
    assert.equal(none.result.ok, false);
    assert.notEqual(none.result.error, "ProtocolError"); // a TLS refusal, no HTTP
    assertRefusals(
      none.refusals,
      "no-certificate",
      /the client sent no certificate; this server requires one/,
    );

    const stranger = await probeAlone(python, dir, "stranger");
    assert.equal(stranger.result.ok, false);
    assert.notEqual(stranger.result.error, "ProtocolError");
    assertRefusals(
      stranger.refusals,
      "unknown-ca",
      /"CN ?= ?client".* was refused: its issuer "CN ?= ?other CA" is not one of the client CAs/,
    );

    // Verified by the TLS layer, refused by the allow-list: HTTP 403.
    const mallory = await probeAlone(python, dir, "mallory");
    assert.deepEqual(
      [mallory.result.ok, mallory.result.error, mallory.result.status],
      [false, "ProtocolError", 403],
    );
    assert.deepEqual(mallory.refusals, []);
  },
);

peerTest(
  "kv_server --no-mutual serves Python with server-only TLS",
  { label: "python3.12", path: python },
  async (python) => {
    await using dir = await certDir();
    await using server = await startServer(dir, ["--no-mutual"]);
    const report = await runPython(python, [
      String(server.port),
      `${dir}/certs/ca.pem`,
      "-",
      "-",
      "probe",
    ]);
    assert.deepEqual(report, { ok: true, result: false });
  },
);

Deno.test("kv_server keeps every acknowledged set across kill -9 and restart", async () => {
  await using dir = await certDir();
  const N = 200;
  const expected = new Map<string, XmlRpcValue>();
  {
    await using server = await startServer(dir);
    using client = clientFor(dir, server.port);
    for (let i = 0; i < N; i++) {
      const value: XmlRpcValue = i % 3 === 0
        ? { i, at: new Date(Date.UTC(2020, 0, 1, 0, 0, i % 60)), tag: [i] }
        : i % 3 === 1
        ? new Uint8Array([i & 0xff, 1, 2])
        : `value ${i}`;
      assert.equal(await client.call("set", `key-${i}`, value), null);
      expected.set(`key-${i}`, value);
    }
    // No shutdown, no flush: the process dies right after the last answer.
    server.child.kill("SIGKILL");
    const status = await server.child.status;
    assert.equal(status.signal, "SIGKILL");
  }
  await using server = await startServer(dir);
  using client = clientFor(dir, server.port);
  const keys = await client.call("keys") as string[];
  assert.equal(keys.length, N);
  for (const [name, value] of expected) {
    assert.deepEqual(await client.call("get", name), value, name);
  }
});

Deno.test("kv_server refuses our client without a certificate or with a stranger's", async () => {
  await using dir = await certDir();
  await using server = await startServer(dir);
  {
    using client = createXmlRpcClient(`https://localhost:${server.port}/`, {
      caCerts: [Deno.readTextFileSync(`${dir}/certs/ca.pem`)],
    });
    await assert.rejects(client.call("exists", "x"), TypeError);
  }
  {
    using client = clientFor(dir, server.port, "stranger");
    await assert.rejects(client.call("exists", "x"), TypeError);
  }
  {
    using client = clientFor(dir, server.port, "mallory");
    await assert.rejects(
      client.call("exists", "x"),
      /HTTP 403.*"mallory" is not in the allow-list/,
    );
  }
});

async function cli(
  dir: string,
  port: number,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=localhost",
      `--allow-read=${dir}`,
      CLIENT,
      "--url",
      `https://localhost:${port}/`,
      "--certs",
      `${dir}/certs`,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return {
    code: output.code,
    stdout: text(output.stdout),
    stderr: text(output.stderr),
  };
}

Deno.test("kv_client get/set/delete/exists/keys from the command line", async () => {
  await using dir = await certDir();
  await using server = await startServer(dir);
  const port = server.port;
  assert.equal((await cli(dir, port, "set", "colour", "blue")).code, 0);
  assert.equal(
    (await cli(dir, port, "set", "point", '{"x":[1,null]}', "--json")).code,
    0,
  );
  assert.deepEqual(await cli(dir, port, "get", "colour"), {
    code: 0,
    stdout: "blue\n",
    stderr: "",
  });
  assert.equal(
    (await cli(dir, port, "get", "point")).stdout,
    '{"x":[1,null]}\n',
  );
  assert.equal((await cli(dir, port, "exists", "colour")).stdout, "true\n");
  assert.equal((await cli(dir, port, "keys")).stdout, "colour\npoint\n");
  assert.equal((await cli(dir, port, "keys", "colour", "5")).stdout, "point\n");
  assert.equal((await cli(dir, port, "delete", "colour")).code, 0);
  const missing = await cli(dir, port, "get", "colour");
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /fault 1: KeyError: 'colour'/);
  const usage = await cli(dir, port, "get");
  assert.equal(usage.code, 2);
  // Bad values are usage errors (exit 2, a message, no stack trace).
  for (
    const [args, message] of [
      [["--timeout", "abc", "keys"], /^Cannot use --timeout "abc": /],
      [["--timeout", "0", "keys"], /^Cannot use --timeout "0": /],
      [
        ["keys", "a", "zz"],
        /^Cannot run keys: LIMIT must be a whole number above 0, got "zz"/,
      ],
      [["keys", "a", "0"], /^Cannot run keys: LIMIT must be/],
      [["keys", "a", "2.5"], /^Cannot run keys: LIMIT must be/],
    ] as const
  ) {
    const result = await cli(dir, port, ...args);
    assert.equal(result.code, 2, args.join(" "));
    assert.match(result.stderr, message, args.join(" "));
    assert.doesNotMatch(result.stderr, /^\s+at /m, args.join(" "));
  }
  const refused = await cli(dir, port, "--no-client-cert", "keys");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /Cannot list the keys/);
});

// In-process: the store's methods over an in-memory Deno KV.
async function call(
  handler: (request: Request) => Promise<Response>,
  method: string,
  ...params: unknown[]
): Promise<XmlRpcValue> {
  const response = await handler(
    new Request("http://localhost/", {
      method: "POST",
      body: encodeMethodCall(method, params),
    }),
  );
  return decodeMethodResponse(await response.text());
}

Deno.test("kvMethods() refuses bad names, oversized names and values, and wrong arity with faults", async () => {
  using kv = await Deno.openKv(":memory:");
  const handler = createXmlRpcHandler(kvMethods(kv));
  const fault = async (re: RegExp, method: string, ...params: unknown[]) => {
    await assert.rejects(call(handler, method, ...params), (error) => {
      assert.ok(error instanceof XmlRpcFault);
      assert.match(error.faultString, re);
      return true;
    });
  };
  await fault(/takes a string name, got int/, "get", 5);
  await fault(/takes a string name, got None/, "set", null, 1);
  await fault(
    /1025 bytes, over the 1024-byte limit/,
    "set",
    "x".repeat(1025),
    1,
  );
  await fault(
    /too large: Deno KV stores at most 65536/,
    "set",
    "big",
    new Uint8Array(70_000),
  );
  await fault(/takes 2 arguments, got 1/, "set", "only-name");
  await fault(/takes 1 arguments, got 0/, "get");
  await fault(/limit' from 1 to 1000/, "keys", "", 0);
  await fault(/KeyError: 'nope'/, "delete", "nope");
  assert.equal(await call(handler, "set", "x".repeat(1024), 1), null);
  assert.equal(await call(handler, "set", "big", new Uint8Array(60_000)), null);
  assert.equal(await call(handler, "exists", "big"), true);
});

Deno.test("kvMethods() keys() pages after a name and refuses an unbounded list", async () => {
  using kv = await Deno.openKv(":memory:");
  const handler = createXmlRpcHandler(kvMethods(kv));
  for (const name of ["b", "a", "c", "a b", "ab"]) {
    await call(handler, "set", name, name);
  }
  assert.deepEqual(await call(handler, "keys"), ["a", "a b", "ab", "b", "c"]);
  assert.deepEqual(await call(handler, "keys", "", 2), ["a", "a b"]);
  assert.deepEqual(await call(handler, "keys", "a b", 2), ["ab", "b"]);
  assert.deepEqual(await call(handler, "keys", "b", 2), ["c"]);
  assert.deepEqual(await call(handler, "keys", "c", 2), []);
  let atomic = kv.atomic();
  for (let i = 0; i <= MAX_KEYS; i++) {
    atomic.set(["kv", `k${String(i).padStart(5, "0")}`], i);
    if (i % 500 === 499) {
      await atomic.commit();
      atomic = kv.atomic();
    }
  }
  await atomic.commit();
  await assert.rejects(call(handler, "keys"), /page through them/);
  const page = await call(handler, "keys", "", MAX_KEYS) as string[];
  assert.equal(page.length, MAX_KEYS);
});

/** `kv`, whose next `times` atomic commits first run `interfere`: a racing writer. */
function racing(
  kv: Deno.Kv,
  interfere: () => Promise<unknown>,
  times: number,
): Deno.Kv {
  let left = times;
  return new Proxy(kv, {
    get(target, property) {
      if (property === "atomic") {
        return () => {
          const operation = target.atomic();
          const commit = operation.commit.bind(operation);
          operation.commit = async () => {
            if (left > 0) {
              left--;
              await interfere();
            }
            return await commit();
          };
          return operation;
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("kvMethods() delete() retries when a set races it, and says KeyError only when the name is gone", async () => {
  using kv = await Deno.openKv(":memory:");
  const key = ["kv", "k"];
  // A set between delete's read and its commit: deleted all the same.
  await kv.set(key, 1);
  let handler = createXmlRpcHandler(
    kvMethods(racing(kv, () => kv.set(key, 2), 1)),
  );
  assert.equal(await call(handler, "delete", "k"), null);
  assert.equal((await kv.get(key)).versionstamp, null);
  // A delete in between: the name is gone, so KeyError.
  await kv.set(key, 1);
  handler = createXmlRpcHandler(kvMethods(racing(kv, () => kv.delete(key), 1)));
  await assert.rejects(call(handler, "delete", "k"), {
    faultCode: 1,
    faultString: "KeyError: 'k'",
  });
  // A writer that always gets in first: a bounded number of tries, then a
  // fault that says so; the name stays.
  await kv.set(key, 0);
  let sets = 0;
  handler = createXmlRpcHandler(
    kvMethods(racing(kv, () => kv.set(key, ++sets), Infinity)),
  );
  await assert.rejects(call(handler, "delete", "k"), {
    faultCode: 1,
    faultString:
      "RuntimeError: 'k' changed 10 times while being deleted; try again",
  });
  assert.equal(sets, 10);
  assert.equal((await kv.get(key)).value, 10);
});
