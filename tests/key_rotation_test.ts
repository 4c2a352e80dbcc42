// Tests for HMAC key rotation (several secrets on a server): serve() and
// serverAuthenticate() take a list, tell which key a client proved, count
// a wrong reply once, and work with the Python recipe client (3.12, 3.13)
// on either key. Multiprocessing's list of authkeys is tested in
// tests/multiprocessing_test.ts and tests/multiprocessing_auth_test.ts.
import assert from "node:assert/strict";
import {
  type AuthFailureInfo,
  connect,
  type ConnectionInfo,
  serve,
  type ServerConn,
} from "../server.ts";
import {
  clientAuthenticate,
  HmacKey,
  MAX_SECRETS,
  serverAuthenticate,
} from "../handshake.ts";
import { AuthenticationError } from "../errors.ts";
import { HmacKeyRing } from "../_hmac_keyring.ts";
import {
  findPython,
  interopScript,
  peerTest,
  spawn,
  tcpPair,
  within,
} from "./_helpers.ts";
import { streamOnlyListener, waitFor } from "./_serve_helpers.ts";

const NEW = "the new key";
const OLD = "the old key";

async function echo(conn: ServerConn): Promise<void> {
  await conn.readable.pipeTo(conn.writable);
}

/** Sends "hi" and reads the echo; null when the server closed instead. */
async function hello(conn: Deno.TcpConn): Promise<string | null> {
  await conn.write(new TextEncoder().encode("hi"));
  const buffer = new Uint8Array(2);
  let got = 0;
  while (got < 2) {
    const count = await within(conn.read(buffer.subarray(got)), 5000, "read");
    if (count === null) return null;
    got += count;
  }
  return new TextDecoder().decode(buffer);
}

Deno.test("serverAuthenticate() with a list of secrets resolves to the index of the one the client proved", async () => {
  const keys = [await HmacKey.import(NEW), await HmacKey.import(OLD), "third"];
  for (const [secret, index] of [[NEW, 0], [OLD, 1], ["third", 2]] as const) {
    using pair = await tcpPair();
    const [result] = await Promise.all([
      serverAuthenticate(pair.server, keys, { timeout: 5000 }),
      clientAuthenticate(pair.client, secret, { timeout: 5000 }),
    ]);
    assert.deepEqual(result, { secretIndex: index });
  }
  using pair = await tcpPair();
  const [server] = await Promise.allSettled([
    serverAuthenticate(pair.server, keys, { timeout: 5000 }),
    clientAuthenticate(pair.client, "none of them", { timeout: 5000 }),
  ]);
  assert.equal(server.status, "rejected");
  assert.ok(server.reason instanceof AuthenticationError);
  assert.equal(server.reason.reason, "wrong-key");
  assert.ok(!/new key|old key|third/.test(server.reason.message));
});

Deno.test("serverAuthenticate() with one secret still resolves to secretIndex 0", async () => {
  using pair = await tcpPair();
  const [result] = await Promise.all([
    serverAuthenticate(pair.server, NEW, { timeout: 5000 }),
    clientAuthenticate(pair.client, NEW, { timeout: 5000 }),
  ]);
  assert.deepEqual(result, { secretIndex: 0 });
});

Deno.test("serverAuthenticate() with a list on a stream-only connection tells the key too", async () => {
  using pair = await tcpPair();
  // Only the streams: the signal path of serve(), BYOB reads.
  const streams = {
    readable: pair.server.readable,
    writable: pair.server.writable,
  };
  const [result] = await Promise.all([
    serverAuthenticate(streams, [NEW, OLD], { timeout: 5000 }),
    clientAuthenticate(pair.client, OLD, { timeout: 5000 }),
  ]);
  assert.deepEqual(result, { secretIndex: 1 });
});

Deno.test("serverAuthenticate() refuses a bad list before it sends a challenge", async () => {
  using pair = await tcpPair();
  await assert.rejects(serverAuthenticate(pair.server, []), {
    name: "TypeError",
    message:
      "Cannot use the secrets: the list is empty; give at least one shared secret",
  });
  await assert.rejects(
    serverAuthenticate(pair.server, Array(MAX_SECRETS + 1).fill("k")),
    { name: "RangeError", message: /9 given, at most 8/ },
  );
  await assert.rejects(
    serverAuthenticate(pair.server, [
      "k",
      await HmacKey.import("k", { hash: "SHA-1" }),
    ]),
    { name: "TypeError", message: /secret\[1\] is for SHA-1 but secret\[0\]/ },
  );
  // Nothing was written: the client sees no challenge.
  pair.server.close();
  assert.equal(await pair.client.read(new Uint8Array(1)), null);
});

Deno.test("serve() and serverAuthenticate() refuse at once a CryptoKey that cannot verify, instead of failing every handshake", async () => {
  const signOnly = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(OLD),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const message =
    'Cannot use secret[1]: its CryptoKey cannot verify (its usages lack "verify"), and a server checks replies with it; import it with the usages ["sign", "verify"]';
  const server = serve({ port: 0, secret: [NEW, signOnly], log: false }, echo);
  await assert.rejects(server.finished, { name: "TypeError", message });
  await assert.rejects(
    Deno.connect({
      hostname: "127.0.0.1",
      port: (server.addr as Deno.NetAddr).port,
    }),
    Deno.errors.ConnectionRefused,
  );
  using pair = await tcpPair();
  await assert.rejects(serverAuthenticate(pair.server, [NEW, signOnly]), {
    name: "TypeError",
    message,
  });
  await assert.rejects(serverAuthenticate(pair.server, signOnly), {
    name: "TypeError",
    message: message.replace("secret[1]", "the secret"),
  });
  // A client only signs: the same key is fine there.
  using other = await tcpPair();
  const [result] = await Promise.all([
    serverAuthenticate(other.server, [NEW, OLD]),
    clientAuthenticate(other.client, signOnly),
  ]);
  assert.equal(result.secretIndex, 1);
});

Deno.test("HmacKeyRing.import() imports the list as checked, whatever the caller does to it meanwhile", async () => {
  const list = [NEW, OLD];
  const importing = HmacKeyRing.import(list);
  // After the check, while the first key is imported.
  list.push(...Array(20).fill("late"));
  list[1] = "";
  const ring = await importing;
  assert.equal(ring.keys.length, 2);
  const client = await HmacKey.import(OLD);
  const challenge = crypto.getRandomValues(new Uint8Array(32));
  assert.equal(await ring.verify(await client.sign(challenge), challenge), 1);
  assert.ok(list.length > MAX_SECRETS);
});

Deno.test("clientAuthenticate() and connect() refuse a list of secrets: a client proves one", async () => {
  using pair = await tcpPair();
  const message =
    "Cannot use the secret: a list of secrets is for a server (key rotation); a client proves one key, so pass one secret";
  await assert.rejects(
    clientAuthenticate(pair.client, [NEW, OLD] as never),
    { name: "TypeError", message },
  );
  await assert.rejects(
    connect({ port: 1, secret: [NEW, OLD] as never }),
    { name: "TypeError", message },
  );
});

Deno.test("serve() with two secrets serves clients on either and says which in ConnectionInfo.secretIndex", async () => {
  const seen: number[] = [];
  const handled: (number | undefined)[] = [];
  await using server = serve(
    {
      port: 0,
      secret: [NEW, OLD],
      log: false,
      onConnection: (info) => seen.push(info.secretIndex!),
    },
    async (conn, info) => {
      handled.push(info.secretIndex);
      await echo(conn);
    },
  );
  const { port } = server.addr as Deno.NetAddr;
  for (const secret of [OLD, NEW, OLD]) {
    using conn = await connect({ port, secret, timeout: 5000 });
    assert.equal(await hello(conn), "hi");
  }
  assert.deepEqual(seen, [1, 0, 1]);
  assert.deepEqual(handled, [1, 0, 1]);
});

Deno.test("serve() with two secrets counts a wrong reply as one failure for the throttle", async () => {
  const failures: AuthFailureInfo[] = [];
  await using server = serve(
    {
      port: 0,
      secret: [NEW, OLD],
      log: false,
      onAuthFailure: (info) => failures.push(info),
    },
    echo,
  );
  const { port } = server.addr as Deno.NetAddr;
  using conn = await connect({ port, secret: "neither", timeout: 5000 });
  assert.equal(await hello(conn), null);
  await waitFor(() => failures.length === 1, "the failure");
  assert.equal(failures[0].failures, 1);
  assert.equal(failures[0].delay, 250);
  assert.equal(failures[0].error.reason, "wrong-key");
});

Deno.test("serve() with two secrets on a stream-only listener (the signal path) tells the key", async () => {
  const seen: (number | undefined)[] = [];
  const listener = streamOnlyListener();
  await using server = serve(
    {
      listener,
      secret: [NEW, OLD],
      log: false,
      onConnection: (info) => seen.push(info.secretIndex),
    },
    echo,
  );
  const { port } = server.addr as Deno.NetAddr;
  using conn = await connect({ port, secret: OLD, timeout: 5000 });
  assert.equal(await hello(conn), "hi");
  assert.deepEqual(seen, [1]);
});

Deno.test("serve() with authenticate leaves ConnectionInfo.secretIndex undefined", async () => {
  const infos: ConnectionInfo[] = [];
  await using server = serve({
    port: 0,
    log: false,
    authenticate: (conn) => Promise.resolve(conn),
    onConnection: (info) => infos.push(info),
  }, (conn) => conn.close());
  const { port } = server.addr as Deno.NetAddr;
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await waitFor(() => infos.length === 1, "the connection");
  assert.equal(infos[0].secretIndex, undefined);
  assert.equal(await conn.read(new Uint8Array(1)), null);
});

// ---------------------------------------------------------------------------
// The Python recipe client (tests/interop/cookbook_client.py) on either key.

for (const version of ["3.12", "3.13"]) {
  peerTest(
    `serve() with two secrets serves the Python ${version} recipe client on either key and rejects a wrong one`,
    {
      label: `Python ${version} (pyenv ${version}.x)`,
      path: findPython(version),
    },
    async (python) => {
      const seen: number[] = [];
      const failures: AuthFailureInfo[] = [];
      await using server = serve(
        {
          port: 0,
          secret: [NEW, OLD],
          log: false,
          onConnection: (info) => seen.push(info.secretIndex!),
          onAuthFailure: (info) => failures.push(info),
        },
        echo,
      );
      const { port } = server.addr as Deno.NetAddr;
      const run = async (key: string) => {
        const child = spawn(python, [
          interopScript("cookbook_client.py"),
          "127.0.0.1",
          String(port),
          key,
          "sha256",
          `with ${key}`,
        ]);
        child.stdin.close();
        const output = await child.output();
        return {
          code: output.code,
          stdout: new TextDecoder().decode(output.stdout).trim(),
        };
      };
      assert.deepEqual(await run(OLD), { code: 0, stdout: `with ${OLD}` });
      assert.deepEqual(await run(NEW), { code: 0, stdout: `with ${NEW}` });
      assert.deepEqual(seen, [1, 0]);
      assert.deepEqual(await run("neither"), { code: 3, stdout: "rejected" });
      await waitFor(() => failures.length === 1, "the failure");
      assert.equal(failures[0].failures, 1);
      assert.equal(failures[0].error.reason, "wrong-key");
    },
  );
}
