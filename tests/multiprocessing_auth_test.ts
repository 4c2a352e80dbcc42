// Tests for _multiprocessing_auth.ts: the mutual HMAC handshake between two
// FrameWires over an in-memory pipe (no sockets), and the parsing of a
// {digest} prefix. The byte-exact exchanges with CPython are in
// tests/multiprocessing_test.ts.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { authenticate, splitDigest } from "../_multiprocessing_auth.ts";
import { FrameWire, type Transport } from "../_multiprocessing_frame.ts";
import { importKeys } from "../_multiprocessing_options.ts";
import { AuthenticationError, ProtocolError } from "../errors.ts";

const encoder = new TextEncoder();

/** One direction of an in-memory pipe. */
class Pipe {
  #chunks: Uint8Array[] = [];
  #waiting: (() => void) | undefined;
  #ended = false;

  push(data: Uint8Array): void {
    this.#chunks.push(data.slice());
    this.#wake();
  }

  end(): void {
    this.#ended = true;
    this.#wake();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#waiting = resolve);
    }
    const chunk = this.#chunks.shift()!;
    const count = Math.min(chunk.byteLength, buffer.byteLength);
    buffer.set(chunk.subarray(0, count));
    if (count < chunk.byteLength) this.#chunks.unshift(chunk.subarray(count));
    return count;
  }

  #wake(): void {
    const wake = this.#waiting;
    this.#waiting = undefined;
    wake?.();
  }
}

/** Two transports connected to each other; also what each side wrote. */
function transportPair(): [Transport, Transport] {
  const ab = new Pipe();
  const ba = new Pipe();
  const end = (from: Pipe, to: Pipe): Transport => ({
    read: (buffer) => from.read(buffer),
    write: (data) => {
      to.push(data);
      return Promise.resolve(data.byteLength);
    },
    close: () => {
      from.end();
      to.end();
    },
  });
  return [end(ba, ab), end(ab, ba)];
}

function wirePair(): [FrameWire, FrameWire] {
  const [a, b] = transportPair();
  return [new FrameWire(a, 1024), new FrameWire(b, 1024)];
}

const signal = () => AbortSignal.timeout(5000);

Deno.test("authenticate() succeeds both ways with the same authkey, in the digest the listener asks for", async () => {
  for (const digest of ["sha256", "sha384"] as const) {
    const [listener, client] = wirePair();
    const [heard, said] = await Promise.all([
      authenticate(
        listener,
        "listener",
        await importKeys({ authkey: "k", digest }),
        signal(),
      ),
      authenticate(
        client,
        "client",
        await importKeys({ authkey: "k", digest }),
        signal(),
      ),
    ]);
    assert.deepEqual(heard, { digest, index: 0 });
    assert.deepEqual(said, { digest, index: 0 });
  }
});

Deno.test("authenticate() on a listener with several authkeys finds the one the client proves and answers with it", async () => {
  for (const legacyMd5 of [false, true]) {
    for (const [authkey, index] of [["new", 0], ["old", 1]] as const) {
      const [listener, client] = wirePair();
      const [heard, said] = await Promise.all([
        authenticate(
          listener,
          "listener",
          await importKeys({ authkey: ["new", "old"], legacyMd5 }, true),
          signal(),
        ),
        authenticate(
          client,
          "client",
          await importKeys({ authkey, legacyMd5 }),
          signal(),
        ),
      ]);
      assert.deepEqual(heard, { digest: "sha256", index });
      assert.deepEqual(said, { digest: "sha256", index: 0 });
    }
  }
  const [listener, client] = wirePair();
  const [heard, said] = await Promise.allSettled([
    authenticate(
      listener,
      "listener",
      await importKeys({ authkey: ["new", "old"] }, true),
      signal(),
    ),
    authenticate(
      client,
      "client",
      await importKeys({ authkey: "neither" }),
      signal(),
    ),
  ]);
  assert.equal(heard.status, "rejected");
  assert.equal(heard.reason.reason, "wrong-key");
  assert.equal(said.status, "rejected");
  assert.equal(said.reason.reason, "rejected");
});

Deno.test("authenticate() on a listener with several authkeys answers a legacy (Python 3.11) client's challenge under the authkey it proved", async () => {
  const md5 = (key: string, data: Uint8Array) =>
    new Uint8Array(createHmac("md5", key).update(data).digest());
  for (const [authkey, index] of [["new", 0], ["old", 1]] as const) {
    const [listener, peer] = wirePair();
    const accepting = authenticate(
      listener,
      "listener",
      await importKeys({ authkey: ["new", "old"], legacyMd5: true }, true),
      signal(),
    );
    accepting.catch(() => {});
    const read = () => peer.readFrame(256, "a message", () => new Error());
    // As Python 3.11's answer_challenge(): a bare HMAC-MD5 of the whole
    // message after #CHALLENGE#, {sha256} prefix included.
    const challenge = (await read())!.subarray("#CHALLENGE#".length);
    await peer.writeFrame(md5(authkey, challenge));
    assert.deepEqual(await read(), encoder.encode("#WELCOME#"));
    // As its deliver_challenge(): 20 random bytes, a bare HMAC-MD5 back.
    const ours = crypto.getRandomValues(new Uint8Array(20));
    await peer.writeFrame(
      new Uint8Array([...encoder.encode("#CHALLENGE#"), ...ours]),
    );
    assert.deepEqual(await read(), md5(authkey, ours));
    await peer.writeFrame(encoder.encode("#WELCOME#"));
    assert.deepEqual(await accepting, { digest: "md5", index });
  }
});

Deno.test("importKeys() takes a list of authkeys only for a listener, non-empty, at most 8, each checked", async () => {
  await assert.rejects(importKeys({ authkey: ["a", "b"] }), {
    name: "TypeError",
    message:
      "Cannot use the authkey: a list of authkeys is for a listener (key rotation); a client proves one, so pass one authkey",
  });
  await assert.rejects(importKeys({ authkey: [] }, true), {
    name: "TypeError",
    message:
      "Cannot use the authkeys: the list is empty; give at least one authkey",
  });
  await assert.rejects(importKeys({ authkey: Array(9).fill("k") }, true), {
    name: "RangeError",
    message:
      "Cannot use the authkeys: 9 given, at most 8; keep the current authkey and the ones clients still use",
  });
  await assert.rejects(importKeys({ authkey: ["k", ""] }, true), {
    name: "TypeError",
    message:
      "Cannot use authkey[1]: it is empty; give the same non-empty authkey as the Python side",
  });
  await assert.rejects(importKeys({ authkey: ["k", 7 as never] }, true), {
    name: "TypeError",
    message:
      "Cannot use authkey[1]: expected a string or Uint8Array, got number",
  });
  const keys = await importKeys({ authkey: ["a", new Uint8Array([1])] }, true);
  assert.equal(keys.get("sha256")?.length, 2);
  assert.equal(keys.get("md5"), undefined);
});

Deno.test("authenticate() with different authkeys: the listener finds a wrong key, the client is rejected", async () => {
  const [listener, client] = wirePair();
  const [heard, said] = await Promise.allSettled([
    authenticate(
      listener,
      "listener",
      await importKeys({ authkey: "key-alpha-123" }),
      signal(),
    ),
    authenticate(
      client,
      "client",
      await importKeys({ authkey: "key-beta-456" }),
      signal(),
    ),
  ]);
  assert.equal(heard.status, "rejected");
  assert.ok(heard.reason instanceof AuthenticationError);
  assert.equal(heard.reason.reason, "wrong-key");
  assert.equal(said.status, "rejected");
  assert.ok(said.reason instanceof AuthenticationError);
  assert.equal(said.reason.reason, "rejected");
  for (const { reason } of [heard, said]) {
    assert.ok(!/key-alpha-123|key-beta-456/.test(reason.message));
  }
});

Deno.test("authenticate() answers a legacy 20-byte challenge with a bare HMAC-MD5 only when legacyMd5 is on", async () => {
  const challenge = crypto.getRandomValues(new Uint8Array(20));
  const challengeFrame = (wire: FrameWire) =>
    wire.writeFrame(
      new Uint8Array([...encoder.encode("#CHALLENGE#"), ...challenge]),
    );
  // Allowed: the answer is HMAC-MD5 of the challenge, 16 bytes.
  {
    const [peer, client] = wirePair();
    const answering = authenticate(
      client,
      "client",
      await importKeys({ authkey: "k", legacyMd5: true }),
      signal(),
    );
    answering.catch(() => {});
    await challengeFrame(peer);
    const answer = await peer.readFrame(256, "the answer", () => new Error());
    assert.deepEqual(
      answer,
      new Uint8Array(createHmac("md5", "k").update(challenge).digest()),
    );
    peer.close();
    await assert.rejects(answering, ProtocolError); // no verdict came
  }
  // Refused by default, with the option's name in the message.
  {
    const [peer, client] = wirePair();
    const answering = authenticate(
      client,
      "client",
      await importKeys({ authkey: "k" }),
      signal(),
    );
    await challengeFrame(peer);
    await assert.rejects(
      answering,
      (error: unknown) =>
        error instanceof AuthenticationError &&
        error.reason === "unsupported" &&
        /legacyMd5: true/.test(error.message),
    );
  }
});

Deno.test("authenticate() stops at its signal", async () => {
  const [, client] = wirePair();
  const stop = new AbortController();
  const answering = authenticate(
    client,
    "client",
    await importKeys({ authkey: "k" }),
    stop.signal,
  );
  stop.abort(new Error("stop"));
  await assert.rejects(answering, { message: "stop" });
});

Deno.test("splitDigest() splits {name}rest as CPython does", () => {
  const split = (text: string) => {
    const result = splitDigest(encoder.encode(text) as Uint8Array<ArrayBuffer>);
    return result &&
      { name: result.name, rest: new TextDecoder().decode(result.rest) };
  };
  assert.deepEqual(split("{sha256}mac"), { name: "sha256", rest: "mac" });
  assert.deepEqual(split("{sha3_256}"), { name: "sha3_256", rest: "" });
  // A name that is not a digest's is not repeated to the caller.
  assert.deepEqual(split("{SHA256}mac"), { name: "?", rest: "mac" });
  assert.equal(split("sha256}mac"), null);
  assert.deepEqual(split("{}mac"), { name: "?", rest: "mac" });
  assert.equal(split("{sha256"), null);
  // The closing brace must come within a digest name's length.
  assert.equal(split("{abcdefghi}mac"), null);
  assert.equal(split(""), null);
});
