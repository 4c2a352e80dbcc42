// Tests for _serve_handshake.ts: serve()'s choice of authentication at
// start, and its Cookbook hot path on a fake socket (partial writes and
// reads, a short reply, a wrong digest), with no network.
import assert from "node:assert/strict";
import { cookbook, prepareAuth } from "../_serve_handshake.ts";
import type { DenoConnLike } from "../_conn_io.ts";
import { AuthenticationError, ProtocolError } from "../errors.ts";
import { HmacKey } from "../handshake.ts";

/**
 * A socket that takes at most `chunk` bytes a write, and answers reads from
 * `reply(challenge)` at most `chunk` bytes at a time, then end of stream.
 */
function fakeConn(
  chunk: number,
  reply: (challenge: Uint8Array<ArrayBuffer>) => Promise<Uint8Array>,
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
      if (pending.length === 0) return null;
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
  await cookbook(conn, hmac, 32);
  assert.equal(written.length, 32);
  // 32 bytes through a socket that takes 5 at a time: 7 writes.
  assert.deepEqual(writes, [5, 5, 5, 5, 5, 5, 2]);
});

Deno.test("cookbook() sends fresh random challenges of challengeLength bytes", async () => {
  const hmac = await HmacKey.import("k");
  const seen = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const { conn, written } = fakeConn(1024, (c) => hmac.sign(c));
    await cookbook(conn, hmac, 16);
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
    cookbook(conn, hmac, 32),
    (error) =>
      error instanceof AuthenticationError && error.reason === "wrong-key" &&
      /a hash other than SHA-384/.test(error.message),
  );
});

Deno.test("cookbook() reports a reply cut short as ProtocolError closed, with the count", async () => {
  const hmac = await HmacKey.import("k");
  const { conn } = fakeConn(
    64,
    async (c) => (await hmac.sign(c)).subarray(0, 20),
  );
  await assert.rejects(cookbook(conn, hmac, 32), {
    name: "ProtocolError",
    message:
      "Cannot read the client's reply: the peer closed the connection after 20 of 32 bytes",
  });
  const silent = fakeConn(64, () => Promise.resolve(new Uint8Array(0)));
  await assert.rejects(
    cookbook(silent.conn, hmac, 32),
    (error) => error instanceof ProtocolError && error.reason === "closed",
  );
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
  assert.equal(auth.hmac?.hash, "SHA-1");
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
