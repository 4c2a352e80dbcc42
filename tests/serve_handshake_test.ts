// Tests for _serve_handshake.ts: serve()'s choice of authentication at
// start, and its Cookbook hot path on a fake socket (partial writes and
// reads, a short reply, a wrong digest), with no network.
import assert from "node:assert/strict";
import { cookbook, prepareAuth } from "../_serve_handshake.ts";
import type { DenoConnLike } from "../_conn_io.ts";
import { AuthenticationError, ProtocolError } from "../errors.ts";
import { HmacKey } from "../handshake.ts";
import { HmacKeyRing } from "../_hmac_keyring.ts";
import { SHORT_REPLY_WAIT } from "../_cookbook.ts";

/** The key ring of one key, as serve() imports it. */
function ring(key: HmacKey): Promise<HmacKeyRing> {
  return HmacKeyRing.import(key);
}

/**
 * A socket that takes at most `chunk` bytes a write, and answers reads from
 * `reply(challenge)` at most `chunk` bytes at a time, then end of stream.
 */
function fakeConn(
  chunk: number,
  reply: (challenge: Uint8Array<ArrayBuffer>) => Promise<Uint8Array>,
  then: "close" | "stall" = "close",
) {
  const written: number[] = [];
  let pending: Uint8Array | undefined;
  const writes: number[] = [];
  const conn: DenoConnLike = {
    write(data) {
      const n = Math.min(chunk, data.length);
      written.push(...data.subarray(0, n));
      writes.push(n);
      return Promise.resolve(n);
    },
    async read(buffer) {
      pending ??= await reply(new Uint8Array(written));
      if (pending.length === 0) {
        // A stalled peer: the read never settles (the server closes it).
        return then === "close" ? null : new Promise<null>(() => {});
      }
      const n = Math.min(chunk, buffer.length, pending.length);
      buffer.set(pending.subarray(0, n));
      pending = pending.subarray(n);
      return n;
    },
    closeWrite: () => Promise.resolve(),
    close() {},
  };
  return { conn, written, writes };
}

Deno.test("cookbook() sends the whole challenge and verifies a reply that arrives in pieces", async () => {
  const hmac = await HmacKey.import("peanut butter");
  const { conn, written, writes } = fakeConn(
    5,
    (challenge) => hmac.sign(challenge),
  );
  assert.equal(await cookbook(conn, await ring(hmac), 32), 0);
  assert.equal(written.length, 32);
  // 32 bytes through a socket that takes 5 at a time: 7 writes.
  assert.deepEqual(writes, [5, 5, 5, 5, 5, 5, 2]);
});

Deno.test("cookbook() sends fresh random challenges of challengeLength bytes", async () => {
  const hmac = await HmacKey.import("k");
  const seen = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const { conn, written } = fakeConn(1024, (c) => hmac.sign(c));
    await cookbook(conn, await ring(hmac), 16);
    assert.equal(written.length, 16);
    seen.add(written.join(","));
  }
  assert.equal(seen.size, 8);
});

Deno.test("cookbook() refuses a wrong digest with AuthenticationError naming the hash", async () => {
  const hmac = await HmacKey.import("right", { hash: "SHA-384" });
  const other = await HmacKey.import("wrong", { hash: "SHA-384" });
  const { conn } = fakeConn(64, (c) => other.sign(c));
  await assert.rejects(
    cookbook(conn, await ring(hmac), 32),
    (error) =>
      error instanceof AuthenticationError && error.reason === "wrong-key" &&
      /a hash other than SHA-384/.test(error.message),
  );
});

Deno.test("cookbook() reports a reply cut short as ProtocolError closed, with the count", async () => {
  const hmac = await HmacKey.import("k");
  const { conn } = fakeConn(
    64,
    async (c) => (await hmac.sign(c)).subarray(0, 7),
  );
  await assert.rejects(cookbook(conn, await ring(hmac), 32), {
    name: "ProtocolError",
    message:
      "Cannot read the client's reply: the peer closed the connection after 7 of 32 bytes",
  });
  const silent = fakeConn(64, () => Promise.resolve(new Uint8Array(0)));
  await assert.rejects(
    cookbook(silent.conn, await ring(hmac), 32),
    (error) => error instanceof ProtocolError && error.reason === "closed",
  );
});

Deno.test("cookbook() checks the reply against every key and returns the index of the one that matched", async () => {
  const keys = await HmacKeyRing.import(["new", "old", "older"]);
  for (const [secret, index] of [["new", 0], ["old", 1], ["older", 2]]) {
    const key = await HmacKey.import(secret as string);
    const { conn } = fakeConn(64, (c) => key.sign(c));
    assert.equal(await cookbook(conn, keys, 32), index);
  }
  const wrong = await HmacKey.import("stranger");
  const { conn } = fakeConn(64, (c) => wrong.sign(c));
  await assert.rejects(cookbook(conn, keys, 32), {
    name: "AuthenticationError",
    reason: "wrong-key",
  });
});

Deno.test("cookbook() calls a TLS ClientHello where the digest should be a TLS client, not a wrong key", async () => {
  const keys = await HmacKeyRing.import("k");
  // A TLS 1.2 record header, then the start of a ClientHello.
  const hello = new Uint8Array(64);
  hello.set([0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03]);
  const { conn } = fakeConn(1024, () => Promise.resolve(hello));
  await assert.rejects(cookbook(conn, keys, 32), {
    name: "AuthenticationError",
    reason: "tls-client",
    message:
      "Cannot authenticate the client: it speaks TLS (a TLS ClientHello arrived where its digest was expected); connect without TLS, or serve with listenTls",
  });
});

Deno.test("cookbook() names MD5 for a 16-byte reply that stalls, after a short wait, not at the deadline", async () => {
  const key = await HmacKey.import("k", { hash: "MD5" });
  const keys = await HmacKeyRing.import("k");
  const { conn } = fakeConn(1024, (c) => key.sign(c), "stall");
  const started = performance.now();
  await assert.rejects(cookbook(conn, keys, 32), {
    name: "AuthenticationError",
    reason: "wrong-hash",
    message:
      `Cannot authenticate the client: 16 bytes arrived, the length of an MD5 digest (SHA-256 needs 32), then nothing more for ${SHORT_REPLY_WAIT} ms: Python before 3.8 defaults hmac.new to MD5; pass digestmod='sha256' or set hash: 'MD5'`,
  });
  assert.ok(performance.now() - started >= SHORT_REPLY_WAIT - 5);
});

Deno.test("cookbook() names SHA-1 for a 20-byte reply and the client closing", async () => {
  const key = await HmacKey.import("k", { hash: "SHA-1" });
  const keys = await HmacKeyRing.import("k", { hash: "SHA-512" });
  const { conn } = fakeConn(1024, (c) => key.sign(c));
  await assert.rejects(cookbook(conn, keys, 32), {
    name: "AuthenticationError",
    reason: "wrong-hash",
    message:
      "Cannot authenticate the client: 20 bytes arrived, the length of a SHA-1 digest (SHA-512 needs 64), then the client closed the connection: the client uses SHA-1; have it use SHA-512 (Python: digestmod='sha512') or set hash: 'SHA-1'",
  });
});

Deno.test("cookbook() suspects a shorter hash for a reply that stalls at another length of 16 bytes or more", async () => {
  const keys = await HmacKeyRing.import("k");
  // An MD5 digest and "Hello World" right after it: 27 bytes.
  const { conn } = fakeConn(
    1024,
    () => Promise.resolve(new Uint8Array(27)),
    "stall",
  );
  await assert.rejects(
    cookbook(conn, keys, 32),
    (error) =>
      error instanceof AuthenticationError && error.reason === "wrong-hash" &&
      error.message.startsWith(
        "Cannot authenticate the client: 27 of the 32 bytes of a SHA-256 digest arrived",
      ) && /MD5: 16 bytes/.test(error.message),
  );
});

Deno.test("cookbook() keeps waiting for a reply that stalls under 16 bytes (the deadline ends it)", async () => {
  const keys = await HmacKeyRing.import("k");
  const { conn } = fakeConn(
    1024,
    () => Promise.resolve(new Uint8Array(8)),
    "stall",
  );
  let settled = false;
  cookbook(conn, keys, 32).finally(() => settled = true).catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, SHORT_REPLY_WAIT + 200));
  assert.equal(settled, false);
});

Deno.test("cookbook() takes the rest of a reply that pauses at 16 bytes but comes within the wait", async () => {
  const key = await HmacKey.import("k");
  const keys = await HmacKeyRing.import(["other", "k"]);
  let challenge: Uint8Array<ArrayBuffer> | undefined;
  let reads = 0;
  const written: number[] = [];
  const conn: DenoConnLike = {
    write(data) {
      written.push(...data);
      return Promise.resolve(data.length);
    },
    async read(buffer) {
      challenge ??= new Uint8Array(written);
      const digest = await key.sign(challenge);
      reads += 1;
      if (reads === 1) {
        buffer.set(digest.subarray(0, 16));
        return 16;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      buffer.set(digest.subarray(16));
      return 16;
    },
    closeWrite: () => Promise.resolve(),
    close() {},
  };
  assert.equal(await cookbook(conn, keys, 32), 1);
});

Deno.test("cookbook() sets no timer for a reply that arrives whole (the hot path), one per read for one that stops short", async () => {
  const key = await HmacKey.import("k");
  const keys = await HmacKeyRing.import(["other", "k"]);
  const original = globalThis.setTimeout;
  let timers = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    timers += 1;
    return original(...args);
  }) as typeof setTimeout;
  try {
    const whole = fakeConn(1024, (c) => key.sign(c));
    assert.equal(await cookbook(whole.conn, keys, 32), 1);
    assert.equal(timers, 0);
    // 16 bytes, then the other 16: one wait for the rest.
    const halves = fakeConn(16, (c) => key.sign(c));
    assert.equal(await cookbook(halves.conn, keys, 32), 1);
    assert.equal(timers, 1);
  } finally {
    globalThis.setTimeout = original;
  }
});

Deno.test("prepareAuth() wants exactly one of secret and authenticate, checked before anything waits", async () => {
  assert.throws(() => prepareAuth({}), {
    name: "TypeError",
    message:
      "Cannot serve: no authentication given; pass secret (the Cookbook handshake) or authenticate (your own)",
  });
  assert.throws(
    () => prepareAuth({ secret: "k", authenticate: (c) => Promise.resolve(c) }),
    { name: "TypeError", message: /either secret or authenticate, not both/ },
  );
  assert.throws(
    () => prepareAuth({ authenticate: "yes" as never }),
    { name: "TypeError", message: /authenticate to be a function, got string/ },
  );
  assert.throws(() => prepareAuth({ secret: "" }), /it is empty/);
  assert.throws(
    () => prepareAuth({ secret: "k", challengeLength: 8 }),
    { name: "RangeError", message: /challengeLength: .*, got 8$/ },
  );
  const authenticate = (conn: unknown) => Promise.resolve(conn);
  assert.deepEqual(await prepareAuth({ authenticate }), { authenticate });
  const auth = await prepareAuth({ secret: "k", hash: "SHA-1" });
  assert.equal(auth.challengeLength, 32);
  assert.equal(auth.keys?.hash, "SHA-1");
  assert.equal(auth.keys?.keys.length, 1);
  const rotating = await prepareAuth({ secret: ["new", "old"] });
  assert.equal(rotating.keys?.keys.length, 2);
  assert.throws(() => prepareAuth({ secret: [] }), {
    name: "TypeError",
    message:
      "Cannot use the secrets: the list is empty; give at least one shared secret",
  });
  assert.throws(() => prepareAuth({ secret: Array(9).fill("k") }), {
    name: "RangeError",
    message:
      "Cannot use the secrets: 9 given, at most 8; keep the current key and the ones clients still use",
  });
  assert.throws(() => prepareAuth({ secret: ["k", ""] }), {
    name: "TypeError",
    message:
      "Cannot use secret[1]: it is empty; give a non-empty shared secret",
  });
  assert.throws(() => prepareAuth({ secret: ["k", 42 as never] }), {
    name: "TypeError",
    message:
      "Cannot use secret[1]: expected a string, Uint8Array, CryptoKey or HmacKey, got number",
  });
});

Deno.test("prepareAuth() rejects (without an unhandled rejection) a CryptoKey for another hash", async () => {
  const key = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(16),
    { name: "HMAC", hash: "SHA-512" },
    false,
    ["sign", "verify"],
  );
  const ready = prepareAuth({ secret: key, hash: "SHA-256" });
  // Let an unhandled rejection surface, if there were one.
  await new Promise((resolve) => setTimeout(resolve, 0));
  await assert.rejects(ready, /the CryptoKey is for SHA-512/);
});

Deno.test("prepareAuth() refuses keys of a list that are for different hashes", async () => {
  const key = await HmacKey.import("k", { hash: "SHA-512" });
  await assert.rejects(prepareAuth({ secret: ["k", key] }), {
    name: "TypeError",
    message:
      "Cannot use the secrets: secret[1] is for SHA-512 but secret[0] is for SHA-256; every key of a server uses one hash",
  });
});
