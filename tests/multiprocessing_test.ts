// Tests for multiprocessing.ts: Deno against Deno, against hand-made raw
// peers (for the failure paths), and against CPython's own
// multiprocessing.connection Listener and Client (3.11, 3.12, 3.13).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  AuthenticationError,
  connectMultiprocessing,
  listenMultiprocessing,
  type MultiprocessingConnection,
  type MultiprocessingErrorInfo,
  type MultiprocessingListener,
  ProtocolError,
} from "../mod.ts";
import { openConnection } from "../_multiprocessing_conn.ts";
import { createListener } from "../_multiprocessing_listener.ts";
import { importKeys } from "../_multiprocessing_options.ts";
import {
  findPython,
  interopScript,
  lines,
  peerTest,
  spawn,
  within,
} from "./_helpers.ts";

const KEY = "multiprocessing test key";
const MiB = 1024 * 1024;
const LARGE = 32 * MiB;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------- helpers

/** Deterministic bytes, the same as pattern() in tests/interop/mp_peer.py. */
function pattern(size: number): Uint8Array {
  const period = new Uint8Array(256);
  for (let j = 0; j < 256; j++) period[j] = (j * 7 + size) % 256;
  const out = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += 256) {
    out.set(period.subarray(0, Math.min(256, size - offset)), offset);
  }
  return out;
}

/** Pseudo-random bytes (xorshift), fast enough for tens of MiB. */
function noise(size: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(size);
  const words = new Uint32Array(out.buffer, 0, Math.floor(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  for (let i = words.length * 4; i < size; i++) out[i] = i & 0xff;
  return out;
}

function sameBytes(actual: Uint8Array | null, expected: Uint8Array): void {
  assert.ok(actual !== null, "expected a message, got the end of stream");
  assert.equal(actual.byteLength, expected.byteLength);
  // Compare without building a huge assertion diff.
  let mismatch = -1;
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) {
      mismatch = i;
      break;
    }
  }
  assert.equal(mismatch, -1, `first differing byte at ${mismatch}`);
}

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.byteLength);
  new DataView(out.buffer).setInt32(0, payload.byteLength);
  out.set(payload, 4);
  return out;
}

/** Reads one frame from a raw connection (for hand-made peers). */
async function readRawFrame(conn: Deno.Conn): Promise<Uint8Array | null> {
  const head = await readRaw(conn, 4);
  if (head === null) return null;
  const size = new DataView(head.buffer).getInt32(0);
  assert.ok(size >= 0 && size <= 256, `unexpected frame length ${size}`);
  return await readRaw(conn, size) ?? new Uint8Array(0);
}

async function readRaw(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let filled = 0;
  while (filled < n) {
    const count = await conn.read(out.subarray(filled));
    if (count === null) return null;
    filled += count;
  }
  return out;
}

/** Accepts one connection, or fails the test after `ms` (never hangs). */
async function acceptWithin<A extends Deno.NetAddr | Deno.UnixAddr>(
  listener: MultiprocessingListener<A>,
  ms = 20_000,
): Promise<MultiprocessingConnection> {
  const accepting = listener.accept();
  accepting.catch(() => {});
  return await within(accepting, ms, "an authenticated connection");
}

/** A listener whose handshake failures are collected. */
async function listenCollecting(
  options: Partial<Parameters<typeof listenMultiprocessing>[0]> = {},
) {
  const failures: unknown[] = [];
  let notify: (() => void) | undefined;
  const listener = await listenMultiprocessing({
    authkey: KEY,
    ...options,
    onError(error, info) {
      // Every failure here is one connection's, reported with its address.
      if (info.phase !== "handshake" || info.remoteAddr === undefined) {
        failures.push(new Error(`unexpected ${info.phase} report: ${error}`));
      } else {
        failures.push(error);
      }
      notify?.();
    },
  });
  return {
    listener,
    failures,
    /** Waits (bounded) until `count` failures were reported. */
    async failed(count = 1): Promise<unknown[]> {
      const stop = Date.now() + 10_000;
      while (failures.length < count) {
        if (Date.now() > stop) throw new Error("no handshake failure reported");
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 200);
          notify = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return failures;
    },
  };
}

function toHex(bytes: Uint8Array): string {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------ Deno against Deno

Deno.test("connectMultiprocessing() and listenMultiprocessing() exchange messages both ways", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener);
  assert.equal(client.peerDigest, "sha256");
  assert.equal(server.peerDigest, "sha256");
  const messages = [new Uint8Array(0), noise(MiB), encoder.encode("last")];
  for (const message of messages) await client.sendBytes(message);
  for (const message of messages) sameBytes(await server.recvBytes(), message);
  await server.sendText("héllo");
  assert.equal(await client.recvText(), "héllo");
});

Deno.test("listenMultiprocessing() with digest sha384 makes both sides use sha384", async () => {
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    digest: "sha384",
  });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
    digest: "sha384",
  });
  await using server = await acceptWithin(listener);
  assert.equal(client.peerDigest, "sha384");
  assert.equal(server.peerDigest, "sha384");
});

Deno.test("MultiprocessingConnection keeps concurrent sends whole and in order", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener);
  const sizes = [100_000, 3, 50_000, 0, 20_000];
  await Promise.all(sizes.map((size) => client.sendBytes(pattern(size))));
  const received = await Promise.all(sizes.map(() => server.recvBytes()));
  received.forEach((message, i) => sameBytes(message, pattern(sizes[i])));
});

Deno.test("MultiprocessingConnection.recvBytes() returns null at the end, every time", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  const client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener);
  await client.sendText("one");
  client.close();
  assert.equal(await server.recvText(), "one");
  assert.equal(await server.recvBytes(), null);
  assert.equal(await server.recvBytes(), null);
});

Deno.test("MultiprocessingConnection.recvBytes() times out without losing the message", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener);
  await assert.rejects(
    server.recvBytes({ timeout: 50 }),
    (error: unknown) =>
      error instanceof DOMException && error.name === "TimeoutError" &&
      /receive a message/.test(error.message),
  );
  const controller = new AbortController();
  const aborted = server.recvBytes({ signal: controller.signal });
  controller.abort();
  await assert.rejects(aborted, { name: "AbortError" });
  await client.sendText("still here");
  await client.sendText("and this");
  assert.equal(await server.recvText(), "still here");
  assert.equal(await server.recvText(), "and this");
});

Deno.test("MultiprocessingConnection.recvBytes() refuses a message over maxMessageSize, and keeps refusing", async () => {
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    maxMessageSize: 1024,
  });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener);
  await client.sendBytes(new Uint8Array(1024));
  await client.sendBytes(new Uint8Array(1025));
  assert.equal((await server.recvBytes())?.byteLength, 1024);
  const tooLarge = (error: unknown) =>
    error instanceof ProtocolError && error.reason === "too-large" &&
    /1025 bytes/.test(error.message) && /maxMessageSize/.test(error.message);
  await assert.rejects(server.recvBytes(), tooLarge);
  await assert.rejects(server.recvBytes(), tooLarge);
});

Deno.test("MultiprocessingConnection.recvText() refuses invalid UTF-8", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener);
  await client.sendBytes(new Uint8Array([0xff, 0xfe]));
  await assert.rejects(server.recvText(), {
    name: "ProtocolError",
    reason: "malformed",
  });
});

Deno.test("MultiprocessingConnection rejects calls after close()", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener);
  const pending = server.recvBytes();
  server.close();
  await assert.rejects(pending, Deno.errors.BadResource);
  await assert.rejects(
    server.sendBytes(new Uint8Array(1)),
    Deno.errors.BadResource,
  );
  await assert.rejects(
    client.sendBytes("text" as unknown as Uint8Array),
    TypeError,
  );
});

Deno.test("MultiprocessingConnection rejects every call after close(), even after the end of stream or an error", async () => {
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    maxMessageSize: 4,
  });
  const closed = { name: "BadResource", message: /connection is closed/ };
  // After the peer's end of stream (which recvBytes() reports as null).
  {
    const client = await connectMultiprocessing({
      port: listener.addr.port,
      authkey: KEY,
    });
    await using server = await acceptWithin(listener);
    client.close();
    assert.equal(await server.recvBytes(), null);
    server.close();
    await assert.rejects(server.recvBytes(), closed);
    await assert.rejects(server.recvText(), closed);
    await assert.rejects(server[Symbol.asyncIterator]().next(), closed);
    await assert.rejects(server.sendBytes(new Uint8Array(1)), closed);
  }
  // After a stored error (a message over maxMessageSize).
  {
    await using client = await connectMultiprocessing({
      port: listener.addr.port,
      authkey: KEY,
    });
    await using server = await acceptWithin(listener);
    await client.sendBytes(new Uint8Array(5));
    await assert.rejects(server.recvBytes(), { reason: "too-large" });
    server.close();
    await assert.rejects(server.recvBytes(), closed);
    await assert.rejects(server.recvBytes({ timeout: 1000 }), closed);
  }
});

Deno.test("connectMultiprocessing() with a wrong authkey fails on both sides", async () => {
  const { listener, failed } = await listenCollecting();
  await using _ = listener;
  await assert.rejects(
    connectMultiprocessing({
      port: listener.addr.port,
      authkey: "s3cr3t-other-key",
    }),
    (error: unknown) =>
      error instanceof AuthenticationError && error.reason === "rejected" &&
      !error.message.includes("s3cr3t") && !error.message.includes(KEY),
  );
  const [failure] = await failed();
  assert.ok(failure instanceof AuthenticationError);
  assert.equal(failure.reason, "wrong-key");
  assert.match(failure.message, /authkeys differ/);
});

Deno.test("listenMultiprocessing() keeps serving while a client stalls, and times it out", async () => {
  const { listener, failed } = await listenCollecting({ timeout: 300 });
  await using _ = listener;
  using staller = await Deno.connect({ port: listener.addr.port });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener);
  await client.sendText("not blocked");
  assert.equal(await server.recvText(), "not blocked");
  const [failure] = await failed();
  assert.ok(failure instanceof DOMException);
  assert.equal(failure.name, "TimeoutError");
  // The stalled connection was closed by the listener.
  assert.ok(await readRawFrame(staller)); // our challenge
  assert.equal(await staller.read(new Uint8Array(1)), null);
});

// Regression: with maxPending handshakes in progress the listener stopped
// accepting, so this client waited for the staller's deadline (10 s).
Deno.test("listenMultiprocessing() with maxPending 1 closes a silent handshake to serve the next client at once", async () => {
  const { listener, failures, failed } = await listenCollecting({
    maxPending: 1,
  });
  await using _ = listener;
  using staller = await Deno.connect({ port: listener.addr.port });
  assert.ok(await readRawFrame(staller)); // its handshake has started
  await using client = await within(
    connectMultiprocessing({ port: listener.addr.port, authkey: KEY }),
    5000,
    "the second client's handshake",
  );
  await using server = await acceptWithin(listener, 5000);
  await client.sendText("served");
  assert.equal(await server.recvText(), "served");
  const [failure] = await failed();
  assert.equal(failures.length, 1);
  assert.ok(failure instanceof DOMException, String(failure));
  assert.equal(failure.name, "AbortError");
  assert.match(
    failure.message,
    /^Cannot authenticate the client at 127\.0\.0\.1:\d+: evicted to make room for others \(maxPending 1\) after \d+ ms, the oldest of the 2 unauthenticated connections from 127\.0\.0\.1, the most of any address$/,
  );
  // The staller was closed.
  assert.equal(await staller.read(new Uint8Array(1)), null);
});

Deno.test("connectMultiprocessing() times out on a listener that never speaks", async () => {
  using raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = raw.accept();
  await assert.rejects(
    connectMultiprocessing({
      port: raw.addr.port,
      authkey: KEY,
      timeout: 200,
    }),
    (error: unknown) =>
      error instanceof DOMException && error.name === "TimeoutError" &&
      /multiprocessing listener/.test(error.message),
  );
  (await accepted).close();
});

Deno.test("connectMultiprocessing() rejects with the signal's reason when aborted", async () => {
  using raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = raw.accept();
  const controller = new AbortController();
  const connecting = connectMultiprocessing({
    port: raw.addr.port,
    authkey: KEY,
    signal: controller.signal,
  });
  const peer = await accepted;
  controller.abort(new Error("stop"));
  await assert.rejects(connecting, { message: "stop" });
  peer.close();
});

Deno.test("listenMultiprocessing() close() ends iteration and accept()", async () => {
  const listener = await listenMultiprocessing({ authkey: KEY });
  const iterated = (async () => {
    let count = 0;
    for await (const _ of listener) count++;
    return count;
  })();
  const accepting = listener.accept();
  listener.close();
  assert.equal(await iterated, 0);
  await assert.rejects(accepting, Deno.errors.BadResource);
  await assert.rejects(listener.accept(), Deno.errors.BadResource);
  await listener[Symbol.asyncDispose]();
});

Deno.test("MultiprocessingListener.accept() times out and takes nothing from the next accept()", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  const started = Date.now();
  await assert.rejects(
    within(listener.accept({ timeout: 50 }), 5000),
    (error: unknown) =>
      error instanceof DOMException && error.name === "TimeoutError" &&
      /accept a connection/.test(error.message),
  );
  assert.ok(Date.now() - started < 2000);
  // The timed-out wait left the queue: this connection is not lost to it.
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await within(listener.accept({ timeout: 5000 }), 6000);
  await client.sendText("taken");
  assert.equal(await server.recvText(), "taken");
});

Deno.test("MultiprocessingListener.accept() rejects with the signal's reason and takes nothing", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  const controller = new AbortController();
  const aborted = listener.accept({ signal: controller.signal });
  controller.abort(new Error("stop waiting"));
  await assert.rejects(within(aborted, 5000), { message: "stop waiting" });
  await assert.rejects(
    listener.accept({ signal: AbortSignal.abort(new Error("already")) }),
    { message: "already" },
  );
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await acceptWithin(listener, 5000);
  await client.sendText("taken");
  assert.equal(await server.recvText(), "taken");
  await assert.rejects(listener.accept({ timeout: 0 }), RangeError);
});

Deno.test("listenMultiprocessing() is closed by its signal", async () => {
  const controller = new AbortController();
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    signal: controller.signal,
  });
  controller.abort();
  await assert.rejects(listener.accept(), Deno.errors.BadResource);
  // The socket is closed: a connect is refused (or reset when it raced the
  // close); an open listener would send its challenge.
  const outcome = await Deno.connect({ port: listener.addr.port }).then(
    async (conn) => {
      try {
        return await conn.read(new Uint8Array(1)) === null ? "closed" : "open";
      } catch {
        return "reset";
      } finally {
        conn.close();
      }
    },
    () => "refused",
  );
  assert.notEqual(outcome, "open");
});

/** A fresh Unix socket path in its own temporary folder. */
async function socketPath(): Promise<AsyncDisposable & { path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "connauth_mp_" });
  return {
    path: `${dir}/mp.sock`,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("listenMultiprocessing() and connectMultiprocessing() refuse a path with a port, or an empty path", async () => {
  const both = /give either path \(a Unix socket\) or hostname and port/;
  await assert.rejects(
    listenMultiprocessing({
      authkey: KEY,
      path: "/tmp/x.sock",
      port: 0,
    } as unknown as { authkey: string; path: string }),
    (error: unknown) => error instanceof TypeError && both.test(error.message),
  );
  await assert.rejects(
    connectMultiprocessing({ authkey: KEY, path: "/tmp/x.sock", port: 1 }),
    (error: unknown) => error instanceof TypeError && both.test(error.message),
  );
  await assert.rejects(
    listenMultiprocessing({ authkey: KEY, path: "" }),
    TypeError,
  );
  await assert.rejects(
    connectMultiprocessing({ authkey: KEY, path: "" }),
    TypeError,
  );
});

Deno.test("listenMultiprocessing() and connectMultiprocessing() check their options", async () => {
  await assert.rejects(listenMultiprocessing({ authkey: "" }), TypeError);
  await assert.rejects(
    listenMultiprocessing({ authkey: 42 as unknown as string }),
    TypeError,
  );
  await assert.rejects(
    listenMultiprocessing({ authkey: KEY, maxMessageSize: -1 }),
    RangeError,
  );
  await assert.rejects(
    listenMultiprocessing({ authkey: KEY, maxPending: 0 }),
    RangeError,
  );
  await assert.rejects(
    listenMultiprocessing({
      authkey: KEY,
      digest: "sha3_256" as unknown as "sha256",
    }),
    TypeError,
  );
  await assert.rejects(
    connectMultiprocessing({ authkey: KEY, port: 0 }),
    RangeError,
  );
  await assert.rejects(
    connectMultiprocessing({ authkey: KEY, port: 1, timeout: 0 }),
    RangeError,
  );
  // Every RangeError the JSDoc of both functions promises.
  for (const port of [-1, 1.5, 65536]) {
    await assert.rejects(
      listenMultiprocessing({ authkey: KEY, port }),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message ===
          `Cannot use port: expected a port number from 0 to 65535, got ${port}`,
    );
  }
  await assert.rejects(
    listenMultiprocessing({ authkey: KEY, timeout: -5 }),
    RangeError,
  );
  for (const port of [65536, 2.5]) {
    await assert.rejects(
      connectMultiprocessing({ authkey: KEY, port }),
      RangeError,
    );
  }
  await assert.rejects(
    connectMultiprocessing({ authkey: KEY, port: 1, maxMessageSize: 1.5 }),
    RangeError,
  );
  // One wording for each kind of option (_options.ts), as serve() has.
  for (
    const [options, message] of [
      [
        { maxMessageSize: 0 },
        "Cannot use maxMessageSize: expected a whole number of at least 1 (or Infinity for no limit), got 0",
      ],
      [
        { maxPending: 2.5 },
        "Cannot use maxPending: expected a whole number of at least 1 (or Infinity for no limit), got 2.5",
      ],
      [
        { timeout: 0 },
        "Cannot use timeout: expected a number of milliseconds above 0 (or Infinity for none), got 0",
      ],
    ] as const
  ) {
    await assert.rejects(
      listenMultiprocessing({ authkey: KEY, ...options }),
      (error: unknown) =>
        error instanceof RangeError && error.message === message,
    );
  }
  for (
    const options of [
      { maxPending: "8" },
      { maxMessageSize: "8" },
      { port: "80" },
    ]
  ) {
    await assert.rejects(
      listenMultiprocessing({
        authkey: KEY,
        ...options,
      } as unknown as { authkey: string }),
      TypeError,
    );
  }
  await assert.rejects(
    connectMultiprocessing({ authkey: KEY, port: 0 }),
    (error: unknown) =>
      error instanceof RangeError &&
      error.message ===
        "Cannot use port: expected a port number from 1 to 65535, got 0",
  );
});

Deno.test("listenMultiprocessing() takes Infinity for maxPending and maxMessageSize, as every limit does", async () => {
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    maxPending: Infinity,
    maxMessageSize: Infinity,
  });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
    maxMessageSize: Infinity,
    timeout: Infinity,
  });
  await using server = await acceptWithin(listener);
  const message = noise(2 * MiB);
  await client.sendBytes(message);
  sameBytes(await server.recvBytes(), message);
});

// ------------------------------------------- hand-made peers: failure paths

/** Runs our client against a raw listener that sends `challenge` first. */
async function clientAgainstRaw(
  challenge: Uint8Array,
  options: { legacyMd5?: boolean; close?: boolean } = {},
): Promise<unknown> {
  using raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connecting = connectMultiprocessing({
    port: raw.addr.port,
    authkey: KEY,
    legacyMd5: options.legacyMd5,
    timeout: 5000,
  });
  using peer = await raw.accept();
  await peer.write(challenge);
  if (options.close) peer.closeWrite();
  try {
    await connecting;
    return "connected";
  } catch (error) {
    return error;
  }
}

const CHALLENGE = encoder.encode("#CHALLENGE#");

function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

Deno.test("connectMultiprocessing() refuses a legacy (Python 3.11) challenge by default and says how to allow it", async () => {
  const error = await clientAgainstRaw(
    frame(concatBytes(CHALLENGE, new Uint8Array(20))),
  );
  assert.ok(error instanceof AuthenticationError, String(error));
  assert.equal(error.reason, "unsupported");
  assert.match(error.message, /Python 3\.11/);
  assert.match(error.message, /legacyMd5: true/);
});

Deno.test("connectMultiprocessing() refuses a sha3 challenge as unsupported", async () => {
  const error = await clientAgainstRaw(
    frame(concatBytes(
      CHALLENGE,
      encoder.encode("{sha3_256}"),
      new Uint8Array(40),
    )),
  );
  assert.ok(error instanceof AuthenticationError, String(error));
  assert.equal(error.reason, "unsupported");
  assert.match(error.message, /sha3_256/);
  assert.match(error.message, /sha256 or sha384/);
});

Deno.test("connectMultiprocessing() refuses a handshake message over 256 bytes", async () => {
  const error = await clientAgainstRaw(
    frame(concatBytes(CHALLENGE, new Uint8Array(300))),
  );
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.reason, "too-large");
  assert.match(error.message, /256-byte limit/);
});

Deno.test("connectMultiprocessing() refuses a peer that does not send a challenge", async () => {
  const error = await clientAgainstRaw(frame(encoder.encode("HELLO THERE")));
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.reason, "malformed");
  const garbage = await clientAgainstRaw(
    encoder.encode("HTTP/1.1 400 Bad\r\n\r\n"),
  );
  assert.ok(garbage instanceof ProtocolError, String(garbage));
  assert.equal(garbage.reason, "too-large");
});

Deno.test("connectMultiprocessing() refuses a truncated challenge", async () => {
  const whole = frame(concatBytes(
    CHALLENGE,
    encoder.encode("{sha256}"),
    new Uint8Array(40),
  ));
  const error = await clientAgainstRaw(whole.subarray(0, 30), { close: true });
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.reason, "closed");
  assert.match(error.message, /after 26 of 59 bytes/);
});

Deno.test("connectMultiprocessing() answers a legacy challenge with HMAC-MD5 when legacyMd5 is on", async () => {
  using raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connecting = connectMultiprocessing({
    port: raw.addr.port,
    authkey: KEY,
    legacyMd5: true,
  });
  using peer = await raw.accept();
  const message = crypto.getRandomValues(new Uint8Array(20));
  await peer.write(frame(concatBytes(CHALLENGE, message)));
  const answer = await readRawFrame(peer);
  const expected = createHmac("md5", KEY).update(message).digest();
  assert.deepEqual(answer, new Uint8Array(expected));
  await peer.write(frame(encoder.encode("#FAILURE#")));
  await assert.rejects(connecting, {
    name: "AuthenticationError",
    reason: "rejected",
  });
});

Deno.test("connectMultiprocessing() rejects a listener that cannot prove the authkey, and sends #FAILURE#", async () => {
  using raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connecting = connectMultiprocessing({
    port: raw.addr.port,
    authkey: KEY,
    timeout: 5000,
  });
  connecting.catch(() => {});
  using peer = await raw.accept();
  // First half: the listener challenges, our client answers, it is welcomed.
  const message = concatBytes(
    encoder.encode("{sha256}"),
    crypto.getRandomValues(new Uint8Array(40)),
  );
  await peer.write(frame(concatBytes(CHALLENGE, message)));
  const answer = await readRawFrame(peer);
  const expected = createHmac("sha256", KEY).update(message).digest();
  assert.deepEqual(
    answer,
    concatBytes(encoder.encode("{sha256}"), new Uint8Array(expected)),
  );
  await peer.write(frame(encoder.encode("#WELCOME#")));
  // Second half: our client challenges; this listener has another key.
  const ours = await readRawFrame(peer);
  assert.ok(ours);
  assert.equal(decoder.decode(ours.subarray(0, 19)), "#CHALLENGE#{sha256}");
  const wrong = createHmac("sha256", "not the key")
    .update(ours.subarray(CHALLENGE.byteLength))
    .digest();
  await peer.write(
    frame(concatBytes(encoder.encode("{sha256}"), new Uint8Array(wrong))),
  );
  assert.equal(decoder.decode((await readRawFrame(peer))!), "#FAILURE#");
  await assert.rejects(
    connecting,
    (error: unknown) =>
      error instanceof AuthenticationError && error.reason === "wrong-key" &&
      /authkeys differ/.test(error.message) && !error.message.includes(KEY),
  );
  // And it hangs up.
  assert.equal(await readRawFrame(peer), null);
});

Deno.test("listenMultiprocessing() refuses a bare HMAC-MD5 answer by default and sends #FAILURE#", async () => {
  const { listener, failed } = await listenCollecting();
  await using _ = listener;
  using peer = await Deno.connect({ port: listener.addr.port });
  const challenge = await readRawFrame(peer);
  assert.ok(challenge);
  const message = challenge.subarray(CHALLENGE.byteLength);
  assert.equal(decoder.decode(message.subarray(0, 8)), "{sha256}");
  assert.equal(message.byteLength, 48);
  const md5 = createHmac("md5", KEY).update(message).digest();
  await peer.write(frame(new Uint8Array(md5)));
  assert.equal(decoder.decode((await readRawFrame(peer))!), "#FAILURE#");
  const [failure] = await failed();
  assert.ok(failure instanceof AuthenticationError);
  assert.equal(failure.reason, "unsupported");
  assert.match(failure.message, /legacyMd5: true/);
});

Deno.test("listenMultiprocessing() refuses a MAC of the wrong length as malformed, not as a wrong key", async () => {
  const { listener, failed } = await listenCollecting({ legacyMd5: true });
  await using _ = listener;
  const answers = [
    new Uint8Array(20), // legacy form: a bare MAC, but MD5 is 16 bytes
    concatBytes(encoder.encode("{sha256}"), new Uint8Array(20)), // not 32
  ];
  for (const answer of answers) {
    using peer = await Deno.connect({ port: listener.addr.port });
    assert.ok(await readRawFrame(peer)); // the challenge
    await peer.write(frame(answer));
    assert.equal(decoder.decode((await readRawFrame(peer))!), "#FAILURE#");
    assert.equal(await readRawFrame(peer), null);
  }
  const failures = await failed(2);
  for (const failure of failures) {
    assert.ok(failure instanceof ProtocolError, String(failure));
    assert.equal(failure.reason, "malformed");
  }
  assert.match(
    (failures[0] as Error).message,
    /expected a 16-byte MAC \(HMAC-MD5\), got 20 bytes/,
  );
  assert.match(
    (failures[1] as Error).message,
    /expected a 32-byte MAC \(HMAC-SHA256\), got 20 bytes/,
  );
});

Deno.test("listenMultiprocessing() refuses an oversized, a truncated and a garbage answer", async () => {
  const { listener, failed } = await listenCollecting();
  await using _ = listener;
  const answers = [
    { bytes: new Uint8Array([0, 0, 1, 1]), close: false }, // 257 announced
    {
      bytes: frame(encoder.encode("{sha256}0123")).subarray(0, 10),
      close: true,
    },
    {
      bytes: frame(encoder.encode("no digest prefix, just words")),
      close: false,
    },
  ];
  for (const answer of answers) {
    using peer = await Deno.connect({ port: listener.addr.port });
    await readRawFrame(peer);
    await peer.write(answer.bytes);
    if (answer.close) peer.closeWrite();
    // The listener closes the connection (after #FAILURE# where it applies).
    while ((await readRawFrame(peer)) !== null) {
      // drain the verdict
    }
  }
  const failures = await failed(3);
  assert.deepEqual(
    failures.map((f) => f instanceof ProtocolError && f.reason),
    ["too-large", "closed", "malformed"],
  );
});

// --------------------------------------------------- CPython interop

interface PeerEvent {
  event: string;
  [field: string]: unknown;
}

/**
 * A running peer process with its JSON events: tests/interop/mp_peer.py, or
 * tests/_multiprocessing_peer.ts (our side, on a Unix socket).
 */
class ChildPeer implements AsyncDisposable {
  #name: string;
  #child: Deno.ChildProcess;
  #events: AsyncGenerator<string>;
  #stderr: Promise<string>;

  /** `name` says which peer in failure messages. */
  constructor(name: string, command: string, args: string[]) {
    this.#name = name;
    this.#child = spawn(command, args, { timeout: 60_000 });
    this.#child.stdin.close();
    this.#events = lines(this.#child.stdout);
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** mp_peer.py with `args`. */
  static python(python: string, args: string[]): ChildPeer {
    return new ChildPeer("the Python peer", python, [
      interopScript("mp_peer.py"),
      ...args,
    ]);
  }

  /**
   * tests/_multiprocessing_peer.ts with `args`, allowed the Unix socket
   * `path` (and nothing else on the network).
   */
  static deno(path: string, args: string[]): ChildPeer {
    return new ChildPeer("the Deno peer", Deno.execPath(), [
      "run",
      `--allow-net=unix:${path}`,
      `--allow-read=${path}`,
      `--allow-write=${path}`,
      new URL("./_multiprocessing_peer.ts", import.meta.url).pathname,
      ...args,
      "--path",
      path,
    ]);
  }

  static listener(
    python: string,
    session: string,
    authkey = KEY,
    extra: string[] = [],
  ): ChildPeer {
    return ChildPeer.python(python, [
      "listener",
      "--authkey-hex",
      hex(authkey),
      "--session",
      session,
      ...extra,
    ]);
  }

  static client(
    python: string,
    port: number,
    session: string,
    authkey = KEY,
    extra: string[] = [],
  ): ChildPeer {
    return ChildPeer.python(python, [
      "client",
      "--port",
      String(port),
      "--authkey-hex",
      hex(authkey),
      "--session",
      session,
      ...extra,
    ]);
  }

  async next(): Promise<PeerEvent> {
    const { value, done } = await this.#events.next();
    if (done) {
      throw new Error(`${this.#name} exited early: ${await this.#stderr}`);
    }
    return JSON.parse(value);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const status = await this.#child.status;
    for await (const _ of this.#events) {
      // drain
    }
    const stderr = await this.#stderr;
    assert.equal(status.code, 0, `${this.#name} failed: ${stderr}`);
  }
}

function hex(text: string): string {
  return toHex(encoder.encode(text));
}

const SIZES = [0, MiB, LARGE];

/** The Deno half of the "exchange" session (see mp_peer.py). */
async function exchange(conn: MultiprocessingConnection): Promise<void> {
  for (const size of SIZES) sameBytes(await conn.recvBytes(), pattern(size));
  const ours = [new Uint8Array(0), noise(MiB, 1), noise(LARGE, 2)];
  for (const message of ours) {
    await conn.sendBytes(message);
    sameBytes(await conn.recvBytes(), message);
  }
}

const PYTHONS = [
  { version: "3.12", path: findPython("3.12") },
  { version: "3.13", path: findPython("3.13") },
];
const PYTHON_311 = {
  label: "Python 3.11 (pyenv 3.11.x)",
  path: findPython("3.11"),
};

for (const { version, path } of PYTHONS) {
  const peer = { label: `Python ${version} (pyenv ${version}.x)`, path };

  peerTest(
    `listenMultiprocessing() serves a Python ${version} Client: empty, 1 MiB and 32 MiB both ways`,
    peer,
    async (python) => {
      await using listener = await listenMultiprocessing({ authkey: KEY });
      await using client = ChildPeer.client(
        python,
        listener.addr.port,
        "exchange",
        KEY,
        ["--sizes", SIZES.join(",")],
      );
      {
        await using conn = await acceptWithin(listener);
        assert.equal(conn.peerDigest, "sha256");
        assert.deepEqual(await client.next(), { event: "authenticated" });
        await exchange(conn);
      }
      assert.deepEqual(await client.next(), {
        event: "done",
        sent: 3,
        echoed: 3,
      });
    },
  );

  peerTest(
    `connectMultiprocessing() talks to a Python ${version} Listener: empty, 1 MiB and 32 MiB both ways`,
    peer,
    async (python) => {
      await using listener = ChildPeer.listener(python, "exchange", KEY, [
        "--sizes",
        SIZES.join(","),
      ]);
      const { port } = await listener.next();
      {
        await using conn = await connectMultiprocessing({
          port: port as number,
          authkey: KEY,
        });
        assert.equal(conn.peerDigest, "sha256");
        assert.deepEqual(await listener.next(), { event: "authenticated" });
        await exchange(conn);
      }
      assert.deepEqual(await listener.next(), {
        event: "done",
        sent: 3,
        echoed: 3,
      });
    },
  );

  peerTest(
    `listenMultiprocessing() with digest sha384 serves a Python ${version} Client`,
    peer,
    async (python) => {
      await using listener = await listenMultiprocessing({
        authkey: KEY,
        digest: "sha384",
      });
      await using client = ChildPeer.client(
        python,
        listener.addr.port,
        "echo",
      );
      await using conn = await acceptWithin(listener);
      assert.equal(conn.peerDigest, "sha384");
      await conn.sendText("sha384 works");
      assert.equal(await conn.recvText(), "sha384 works");
      conn.close();
      assert.deepEqual(await client.next(), { event: "authenticated" });
      assert.deepEqual(await client.next(), { event: "done", echoed: 1 });
    },
  );

  peerTest(
    `listenMultiprocessing() with two authkeys (rotation) serves a Python ${version} Client on either, and rejects a third`,
    peer,
    async (python) => {
      const { listener, failures, failed } = await listenCollecting({
        authkey: ["the new key", KEY],
      });
      await using _ = listener;
      for (const [authkey, index] of [["the new key", 0], [KEY, 1]] as const) {
        await using client = ChildPeer.client(
          python,
          listener.addr.port,
          "echo",
          authkey,
        );
        await using conn = await acceptWithin(listener);
        assert.equal(conn.authkeyIndex, index);
        // Python checked our answer to its challenge under its own key.
        assert.deepEqual(await client.next(), { event: "authenticated" });
        await conn.sendText(`key ${index}`);
        assert.equal(await conn.recvText(), `key ${index}`);
        conn.close();
        assert.deepEqual(await client.next(), { event: "done", echoed: 1 });
      }
      assert.equal(failures.length, 0);
      await using wrong = ChildPeer.client(
        python,
        listener.addr.port,
        "idle",
        "neither key",
      );
      const event = await wrong.next();
      assert.equal(event.event, "error");
      assert.equal(event.type, "AuthenticationError");
      const [failure] = await failed();
      assert.ok(failure instanceof AuthenticationError);
      assert.equal(failure.reason, "wrong-key");
    },
  );

  peerTest(
    `listenMultiprocessing() rejects a Python ${version} Client with a wrong authkey, and both sides say so`,
    peer,
    async (python) => {
      const { listener, failed } = await listenCollecting();
      await using _ = listener;
      await using client = ChildPeer.client(
        python,
        listener.addr.port,
        "idle",
        "not the key",
      );
      const event = await client.next();
      assert.equal(event.event, "error");
      assert.equal(event.type, "AuthenticationError");
      assert.match(String(event.message), /rejected/);
      const [failure] = await failed();
      assert.ok(failure instanceof AuthenticationError);
      assert.equal(failure.reason, "wrong-key");
    },
  );

  peerTest(
    `connectMultiprocessing() with a wrong authkey is rejected by a Python ${version} Listener, and both sides say so`,
    peer,
    async (python) => {
      await using listener = ChildPeer.listener(python, "idle");
      const { port } = await listener.next();
      await assert.rejects(
        connectMultiprocessing({ port: port as number, authkey: "wrong" }),
        { name: "AuthenticationError", reason: "rejected" },
      );
      const event = await listener.next();
      assert.equal(event.event, "error");
      assert.equal(event.type, "AuthenticationError");
    },
  );
}

const CPYTHON_312 = {
  label: "Python 3.12 (pyenv 3.12.x)",
  path: findPython("3.12"),
};

/** Our client against a Python 3.12 Listener that runs a raw session. */
async function recvFromPythonSession(
  python: string,
  session: string,
): Promise<{ first: unknown; second: unknown }> {
  await using listener = ChildPeer.listener(python, session);
  const { port } = await listener.next();
  await using conn = await connectMultiprocessing({
    port: port as number,
    authkey: KEY,
  });
  assert.deepEqual(await listener.next(), { event: "authenticated" });
  const settle = (p: Promise<unknown>) => p.then((v) => v, (e) => e);
  const first = await settle(conn.recvBytes());
  const second = await settle(conn.recvBytes());
  conn.close();
  return { first, second };
}

peerTest(
  "MultiprocessingConnection.recvBytes() refuses a 2 GiB length from Python before allocating",
  CPYTHON_312,
  async (python) => {
    const { first, second } = await recvFromPythonSession(python, "oversized");
    assert.ok(first instanceof ProtocolError, String(first));
    assert.equal(first.reason, "too-large");
    assert.match(first.message, /2147483647 bytes/);
    assert.equal(second, first); // the connection stays refused
  },
);

peerTest(
  "MultiprocessingConnection.recvBytes() refuses a 1 TiB 8-byte length from Python",
  CPYTHON_312,
  async (python) => {
    const { first } = await recvFromPythonSession(python, "oversized-long");
    assert.ok(first instanceof ProtocolError, String(first));
    assert.equal(first.reason, "too-large");
    assert.match(first.message, /1099511627776 bytes/);
  },
);

peerTest(
  "MultiprocessingConnection.recvBytes() refuses a truncated message from Python",
  CPYTHON_312,
  async (python) => {
    const { first } = await recvFromPythonSession(python, "truncated");
    assert.ok(first instanceof ProtocolError, String(first));
    assert.equal(first.reason, "closed");
    assert.match(first.message, /after 10 of 1000 bytes/);
  },
);

peerTest(
  "MultiprocessingConnection.recvBytes() reads the -1 + 8-byte length form",
  CPYTHON_312,
  async (python) => {
    await using listener = ChildPeer.listener(python, "long-header");
    const { port } = await listener.next();
    {
      await using conn = await connectMultiprocessing({
        port: port as number,
        authkey: KEY,
      });
      assert.equal(decoder.decode((await conn.recvBytes())!), "hello");
      await conn.sendText("after");
      assert.equal(await conn.recvText(), "after");
    }
    assert.equal((await listener.next()).event, "authenticated");
    assert.deepEqual(await listener.next(), { event: "done", echoed: 1 });
  },
);

peerTest(
  "listenMultiprocessing() with legacyMd5 serves a Python 3.11 Client",
  PYTHON_311,
  async (python) => {
    await using listener = await listenMultiprocessing({
      authkey: KEY,
      legacyMd5: true,
    });
    await using client = ChildPeer.client(
      python,
      listener.addr.port,
      "exchange",
      KEY,
      ["--sizes", "0,1048576"],
    );
    {
      await using conn = await acceptWithin(listener);
      assert.equal(conn.peerDigest, "md5");
      sameBytes(await conn.recvBytes(), pattern(0));
      sameBytes(await conn.recvBytes(), pattern(MiB));
      await conn.sendText("legacy ok");
      assert.equal(await conn.recvText(), "legacy ok");
    }
    assert.deepEqual(await client.next(), { event: "authenticated" });
    assert.deepEqual(await client.next(), {
      event: "done",
      sent: 2,
      echoed: 1,
    });
  },
);

peerTest(
  "listenMultiprocessing() with two authkeys and legacyMd5 serves a Python 3.11 Client on either, answering under the one it proved",
  PYTHON_311,
  async (python) => {
    const { listener, failures } = await listenCollecting({
      authkey: ["the new key", KEY],
      legacyMd5: true,
    });
    await using _ = listener;
    for (const [authkey, index] of [["the new key", 0], [KEY, 1]] as const) {
      await using client = ChildPeer.client(
        python,
        listener.addr.port,
        "echo",
        authkey,
      );
      await using conn = await acceptWithin(listener);
      assert.equal(conn.peerDigest, "md5");
      assert.equal(conn.authkeyIndex, index);
      // Python checked our HMAC-MD5 answer to its challenge under its key.
      assert.deepEqual(await client.next(), { event: "authenticated" });
      await conn.sendText(`key ${index}`);
      assert.equal(await conn.recvText(), `key ${index}`);
      conn.close();
      assert.deepEqual(await client.next(), { event: "done", echoed: 1 });
    }
    assert.equal(failures.length, 0);
  },
);

peerTest(
  "connectMultiprocessing() with legacyMd5 talks to a Python 3.11 Listener",
  PYTHON_311,
  async (python) => {
    await using listener = ChildPeer.listener(python, "echo");
    const { port } = await listener.next();
    {
      await using conn = await connectMultiprocessing({
        port: port as number,
        authkey: KEY,
        legacyMd5: true,
      });
      assert.equal(conn.peerDigest, "md5");
      await conn.sendBytes(noise(MiB));
      sameBytes(await conn.recvBytes(), noise(MiB));
    }
    assert.deepEqual(await listener.next(), { event: "authenticated" });
    assert.deepEqual(await listener.next(), { event: "done", echoed: 1 });
  },
);

peerTest(
  "listenMultiprocessing() without legacyMd5 refuses a Python 3.11 Client and says how to allow it",
  PYTHON_311,
  async (python) => {
    const { listener, failed } = await listenCollecting();
    await using _ = listener;
    await using client = ChildPeer.client(
      python,
      listener.addr.port,
      "idle",
    );
    const event = await client.next();
    assert.equal(event.event, "error");
    assert.equal(event.type, "AuthenticationError");
    const [failure] = await failed();
    assert.ok(failure instanceof AuthenticationError);
    assert.equal(failure.reason, "unsupported");
    assert.match(failure.message, /Python 3\.11 and older/);
    assert.match(failure.message, /legacyMd5: true/);
  },
);

peerTest(
  "connectMultiprocessing() without legacyMd5 refuses a Python 3.11 Listener and says how to allow it",
  PYTHON_311,
  async (python) => {
    await using listener = ChildPeer.listener(python, "idle");
    const { port } = await listener.next();
    await assert.rejects(
      connectMultiprocessing({ port: port as number, authkey: KEY }),
      (error: unknown) =>
        error instanceof AuthenticationError &&
        error.reason === "unsupported" &&
        /legacyMd5: true/.test(error.message),
    );
    // The Python side sees the connection end instead of an answer.
    const event = await listener.next();
    assert.equal(event.event, "error");
    assert.match(String(event.type), /EOFError|ConnectionResetError/);
  },
);

peerTest(
  "connectMultiprocessing() with a wrong authkey is rejected by a Python 3.11 Listener",
  PYTHON_311,
  async (python) => {
    await using listener = ChildPeer.listener(python, "idle");
    const { port } = await listener.next();
    await assert.rejects(
      connectMultiprocessing({
        port: port as number,
        authkey: "wrong",
        legacyMd5: true,
      }),
      { name: "AuthenticationError", reason: "rejected" },
    );
    const event = await listener.next();
    assert.equal(event.type, "AuthenticationError");
  },
);

// ------------------------------------------------------------ Unix sockets
//
// Deno allows a Unix socket only by its exact path (--allow-net=unix:PATH),
// which the test task cannot know in advance: our side runs in
// tests/_multiprocessing_peer.ts, a child process allowed just that path.

Deno.test("listenMultiprocessing() and connectMultiprocessing() with a path work over a Unix socket", async () => {
  await using socket = await socketPath();
  const { path } = socket;
  const client = (authkey: string, extra: string[] = []) =>
    ChildPeer.deno(path, [
      "client",
      "--authkey-hex",
      hex(authkey),
      "--session",
      "roundtrip",
      ...extra,
    ]);
  {
    await using listener = ChildPeer.deno(path, [
      "listener",
      "--authkey-hex",
      hex(KEY),
      "--session",
      "echo",
    ]);
    assert.deepEqual(await listener.next(), { event: "listening", path });
    // A wrong key fails on both sides, as over TCP.
    {
      await using wrong = client("not the key");
      assert.deepEqual(await wrong.next(), {
        event: "error",
        name: "AuthenticationError",
        reason: "rejected",
        message:
          "Cannot authenticate to the peer: it rejected our answer (the authkeys differ)",
      });
    }
    const refused = await listener.next();
    assert.equal(refused.event, "handshake-error");
    assert.equal(refused.reason, "wrong-key");
    {
      await using right = client(KEY, ["--sizes", `0,5,${MiB}`]);
      assert.deepEqual(await right.next(), {
        event: "authenticated",
        peerDigest: "sha256",
      });
      assert.deepEqual(await right.next(), { event: "done", checked: 3 });
    }
    assert.deepEqual(await listener.next(), {
      event: "authenticated",
      peerDigest: "sha256",
    });
    assert.deepEqual(await listener.next(), { event: "done", echoed: 3 });
  }
  // The listener removed its socket file when it closed, as CPython's does.
  assert.equal(exists(path), false);
  await using late = client(KEY);
  const missing = await late.next();
  assert.equal(missing.event, "error");
  assert.equal(missing.name, "NotFound");
});

for (const { version, path: python } of PYTHONS) {
  const peer = {
    label: `Python ${version} (pyenv ${version}.x)`,
    path: python,
  };

  peerTest(
    `listenMultiprocessing() with a path serves a Python ${version} Client(path) over a Unix socket`,
    peer,
    async (python) => {
      await using socket = await socketPath();
      await using listener = ChildPeer.deno(socket.path, [
        "listener",
        "--authkey-hex",
        hex(KEY),
        "--session",
        "roundtrip",
        "--sizes",
        `0,${MiB}`,
      ]);
      assert.deepEqual(await listener.next(), {
        event: "listening",
        path: socket.path,
      });
      {
        await using client = ChildPeer.python(python, [
          "client",
          "--path",
          socket.path,
          "--authkey-hex",
          hex(KEY),
          "--session",
          "echo",
        ]);
        assert.deepEqual(await client.next(), { event: "authenticated" });
        assert.deepEqual(await listener.next(), {
          event: "authenticated",
          peerDigest: "sha256",
        });
        assert.deepEqual(await listener.next(), { event: "done", checked: 2 });
        assert.deepEqual(await client.next(), { event: "done", echoed: 2 });
      }
    },
  );

  peerTest(
    `connectMultiprocessing() with a path talks to a Python ${version} Listener(path) over a Unix socket`,
    peer,
    async (python) => {
      await using socket = await socketPath();
      {
        await using listener = ChildPeer.python(python, [
          "listener",
          "--path",
          socket.path,
          "--authkey-hex",
          hex(KEY),
          "--session",
          "echo",
        ]);
        assert.deepEqual(await listener.next(), {
          event: "listening",
          path: socket.path,
        });
        await using client = ChildPeer.deno(socket.path, [
          "client",
          "--authkey-hex",
          hex(KEY),
          "--session",
          "roundtrip",
          "--sizes",
          `0,${MiB}`,
        ]);
        assert.deepEqual(await client.next(), {
          event: "authenticated",
          peerDigest: "sha256",
        });
        assert.deepEqual(await client.next(), { event: "done", checked: 2 });
        assert.deepEqual(await listener.next(), { event: "authenticated" });
        assert.deepEqual(await listener.next(), { event: "done", echoed: 2 });
      }
      assert.equal(exists(socket.path), false);
    },
  );
}

// ------------------------------------------------------------- the example

/** Runs examples/python_coordinator.py; `worker()` runs the Deno example. */
function startCoordinator(python: string) {
  const env = { CONNAUTH_SECRET: "example key" };
  const root = new URL("../examples/", import.meta.url).pathname;
  const coordinator = spawn(
    python,
    [`${root}python_coordinator.py`, "--port", "0"],
    { env },
  );
  coordinator.stdin.close();
  const stderr = new Response(coordinator.stderr).text();
  const output = lines(coordinator.stdout);
  const port = output.next().then(({ value }) => {
    const found = /listening on 127\.0\.0\.1:(\d+)/.exec(String(value))?.[1];
    assert.ok(found, `unexpected first line ${value}`);
    return found;
  });
  return {
    key: env.CONNAUTH_SECRET,
    async worker(args: string[], key: string) {
      const result = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-net=127.0.0.1",
          "--allow-env=CONNAUTH_SECRET",
          `${root}python_worker.ts`,
          "--port",
          await port,
          ...args,
        ],
        env: { CONNAUTH_SECRET: key },
        signal: AbortSignal.timeout(30_000),
      }).output();
      return {
        code: result.code,
        stdout: decoder.decode(result.stdout),
        stderr: decoder.decode(result.stderr),
      };
    },
    /** The coordinator's lines after "listening on", once it exited 0. */
    async rest(): Promise<string[]> {
      await port;
      const rest: string[] = [];
      for await (const line of output) rest.push(line);
      assert.equal((await coordinator.status).code, 0, await stderr);
      return rest;
    },
  };
}

const COORDINATOR_JOBS = [
  "worker authenticated",
  "job 1: 9 words, 'THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG'",
  "job 2: 4 words, 'AUTHENTICATION IS NOT ENCRYPTION'",
  "job 3: 0 words, ''",
  "job 4: 4 words, 'MULTIPROCESSING TALKS TO DENO'",
  "done",
];

peerTest(
  "examples/python_worker.ts answers the jobs of examples/python_coordinator.py",
  CPYTHON_312,
  async (python) => {
    const coordinator = startCoordinator(python);
    // A worker with the wrong authkey is refused, and says to check the key.
    const refused = await coordinator.worker([], "not the key");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /rejected our answer.*CONNAUTH_SECRET/);
    assert.doesNotMatch(refused.stderr, /--legacy-md5/);
    const accepted = await coordinator.worker([], coordinator.key);
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.match(accepted.stdout, /answered 4 jobs/);
    const rest = await coordinator.rest();
    assert.match(rest[0], /^worker refused: /);
    assert.deepEqual(rest.slice(1), COORDINATOR_JOBS);
  },
);

peerTest(
  "examples/python_worker.ts tells to rerun with --legacy-md5 against a Python 3.11 coordinator, not to check the key",
  PYTHON_311,
  async (python) => {
    const coordinator = startCoordinator(python);
    const legacy = await coordinator.worker([], coordinator.key);
    assert.equal(legacy.code, 1);
    assert.match(
      legacy.stderr,
      /rerun with --legacy-md5 \(or run the coordinator on Python 3\.12\+\)/,
    );
    assert.doesNotMatch(legacy.stderr, /CONNAUTH_SECRET|authkey/);
    // With the flag on, a wrong key is a key problem again.
    const refused = await coordinator.worker(["--legacy-md5"], "not the key");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /rejected our answer.*CONNAUTH_SECRET/);
    const accepted = await coordinator.worker(
      ["--legacy-md5"],
      coordinator.key,
    );
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.match(accepted.stdout, /answered 4 jobs/);
    const rest = await coordinator.rest();
    assert.match(rest[0], /^worker refused: /);
    assert.match(rest[1], /^worker refused: /);
    assert.deepEqual(rest.slice(2), COORDINATOR_JOBS);
  },
);

// ------------------- the listener's budgets, on in-memory connections
//
// The accept loop runs on a fake listener whose connections come from any
// address we name (loopback tests cannot pick their source address), over
// in-memory pipes: what is accepted, evicted and queued is decided by the
// code alone, not by timing.

/** One direction of an in-memory connection. */
class Channel {
  chunks: Uint8Array[] = [];
  ended = false;
  #waiter: (() => void) | undefined;

  push(data: Uint8Array): void {
    if (data.byteLength > 0) this.chunks.push(data.slice());
    this.wake();
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiter = resolve);
  }

  wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}

/** One end of an in-memory connection: what FrameWire and the listener use. */
class MemoryConn {
  #closed = false;

  constructor(
    readonly localAddr: Deno.NetAddr,
    readonly remoteAddr: Deno.NetAddr,
    readonly inbound: Channel,
    readonly outbound: Channel,
  ) {}

  /** The other end closed: what we read ends there. */
  get peerClosed(): boolean {
    return this.inbound.ended;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (true) {
      if (this.#closed) throw new Deno.errors.BadResource("closed");
      const chunk = this.inbound.chunks[0];
      if (chunk !== undefined) {
        const n = Math.min(buffer.byteLength, chunk.byteLength);
        buffer.set(chunk.subarray(0, n));
        if (n < chunk.byteLength) this.inbound.chunks[0] = chunk.subarray(n);
        else this.inbound.chunks.shift();
        return n;
      }
      if (this.inbound.ended) return null;
      await this.inbound.wait();
    }
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#closed) {
      return Promise.reject(new Deno.errors.BadResource("closed"));
    }
    this.outbound.push(data);
    return Promise.resolve(data.byteLength);
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("closed");
    this.#closed = true;
    this.outbound.end();
    this.inbound.wake(); // a read in progress fails
  }
}

/** A listener whose clients connect from the address they name. */
class MemoryListener {
  readonly addr: Deno.NetAddr = {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 9,
  };
  /** accept() calls so far. */
  accepts = 0;
  /** Connections not accepted yet. */
  backlog: MemoryConn[] = [];
  #waiter: ((conn: MemoryConn) => void) | undefined;
  #fail: ((error: Error) => void) | undefined;
  #closed = false;
  #port = 40000;

  accept(): Promise<MemoryConn> {
    this.accepts++;
    if (this.#closed) {
      return Promise.reject(new Deno.errors.BadResource("closed"));
    }
    const next = this.backlog.shift();
    if (next !== undefined) return Promise.resolve(next);
    return new Promise((resolve, reject) => {
      this.#waiter = resolve;
      this.#fail = reject;
    });
  }

  close(): void {
    this.#closed = true;
    this.#fail?.(new Deno.errors.BadResource("closed"));
    this.#waiter = this.#fail = undefined;
  }

  /** Connects from `hostname`; returns the client's end. */
  connect(hostname: string): MemoryConn {
    const up = new Channel();
    const down = new Channel();
    const remote: Deno.NetAddr = {
      transport: "tcp",
      hostname,
      port: this.#port++,
    };
    const server = new MemoryConn(this.addr, remote, up, down);
    const client = new MemoryConn(remote, this.addr, down, up);
    const waiter = this.#waiter;
    this.#waiter = this.#fail = undefined;
    if (waiter) waiter(server);
    else this.backlog.push(server);
    return client;
  }
}

/** Lets every promise chain that can move without a timer move. */
function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Waits (at most 500 ticks) until `done()` holds. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await tick();
  assert.ok(done(), `never happened: ${what}`);
}

/** A listener on a MemoryListener, with every report collected. */
async function memoryListener(
  maxPending: number,
  ipv6Prefix = 64,
) {
  const keys = await importKeys({ authkey: KEY });
  const fake = new MemoryListener();
  const reports: { error: unknown; info: MultiprocessingErrorInfo }[] = [];
  const listener = createListener(
    fake as unknown as Deno.Listener<Deno.Conn, Deno.NetAddr>,
    keys,
    { maxPending, ipv6Prefix },
    { onError: (error, info) => reports.push({ error, info }) },
  );
  /** A client that authenticates (the Deno client's own handshake). */
  const good = (hostname: string) =>
    within(
      openConnection(
        fake.connect(hostname) as unknown as Deno.Conn,
        "client",
        keys,
        new AbortController().signal,
      ),
      5000,
      `the handshake of the client at ${hostname}`,
    );
  /** The hosts of the connections evicted so far, in order. */
  const evicted = () =>
    reports.map(({ error, info }) => {
      assert.equal(info.phase, "handshake");
      assert.ok(error instanceof DOMException, String(error));
      assert.equal(error.name, "AbortError");
      assert.match(error.message, /evicted to make room for others/);
      return (info.remoteAddr as Deno.NetAddr).hostname;
    });
  return { fake, listener, reports, good, evicted };
}

Deno.test("MultiprocessingListener evicts the oldest unauthenticated connection of the address holding the most, and serves a good client from another", async () => {
  const { fake, listener, reports, good, evicted } = await memoryListener(3);
  await using _ = listener;
  const a1 = fake.connect("10.0.0.1");
  await tick();
  const a2 = fake.connect("10.0.0.1");
  await tick();
  const b1 = fake.connect("10.0.0.2");
  await tick();
  assert.equal(reports.length, 0, "3 pending fit maxPending 3");
  // 10.0.0.1 now holds 3 of 4: its oldest goes, and accepting goes on.
  const a3 = fake.connect("10.0.0.1");
  await until(() => reports.length === 1, "the first eviction");
  assert.deepEqual(evicted(), ["10.0.0.1"]);
  assert.match(
    (reports[0].error as Error).message,
    /^Cannot authenticate the client at 10\.0\.0\.1:40000: evicted to make room for others \(maxPending 3\) after \d+ ms, the oldest of the 3 unauthenticated connections from 10\.0\.0\.1, the most of any address$/,
  );
  assert.ok(a1.peerClosed, "the oldest of 10.0.0.1 was closed");
  // The good client comes in with 3 pending: 10.0.0.1 still holds the most.
  await using client = await good("10.0.0.3");
  await using server = await listener.accept({ timeout: 5000 });
  assert.equal((server.remoteAddr as Deno.NetAddr).hostname, "10.0.0.3");
  await client.sendText("served");
  assert.equal(await server.recvText({ timeout: 5000 }), "served");
  await until(() => reports.length === 2, "the second eviction");
  assert.deepEqual(evicted(), ["10.0.0.1", "10.0.0.1"]);
  assert.match((reports[1].error as Error).message, /oldest of the 2 /);
  assert.ok(a2.peerClosed, "the next oldest of 10.0.0.1 was closed");
  assert.ok(!a3.peerClosed && !b1.peerClosed, "the others still handshake");
  // The challenge each got, and nothing else.
  for (const conn of [a3, b1]) {
    assert.ok(conn.inbound.chunks.length > 0, "no challenge");
  }
});

Deno.test("MultiprocessingListener never counts or evicts authenticated connections waiting for accept()", async () => {
  const { fake, listener, reports, good, evicted } = await memoryListener(2);
  await using _ = listener;
  await using client = await good("10.0.0.9");
  await tick();
  // It waits for accept(): not pending, so two silent ones fit.
  fake.connect("10.0.0.1");
  fake.connect("10.0.0.1");
  await tick();
  assert.deepEqual(reports, []);
  // Past the budget the silent ones go, however many come.
  for (let i = 0; i < 6; i++) fake.connect(`10.0.0.${1 + (i % 2)}`);
  await until(() => reports.length === 6, "six evictions");
  for (const host of evicted()) assert.match(host, /^10\.0\.0\.[12]$/);
  await using server = await listener.accept({ timeout: 5000 });
  assert.equal((server.remoteAddr as Deno.NetAddr).hostname, "10.0.0.9");
  await client.sendText("still here");
  assert.equal(await server.recvText({ timeout: 5000 }), "still here");
});

Deno.test("MultiprocessingListener stops accepting while maxPending authenticated connections wait for accept(), and never closes one", async () => {
  const { fake, listener, reports, good } = await memoryListener(1);
  await using _ = listener;
  await using first = await good("10.0.0.1");
  await tick();
  // It waits for accept(); the loop's next accept was already under way.
  assert.equal(fake.accepts, 2);
  // That accept still takes one more client, whose handshake finishes
  // while the loop is paused: it joins the queue, it is not closed.
  await using second = await good("10.0.0.2");
  await tick();
  const third = fake.connect("10.0.0.3");
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(fake.accepts, 2, "paused: no accept while one waits");
  assert.deepEqual(fake.backlog.length, 1, "the third waits in the backlog");
  assert.equal(third.inbound.chunks.length, 0, "no challenge yet");
  // Taking one leaves one waiting: still paused.
  await using taken1 = await listener.accept({ timeout: 5000 });
  assert.equal((taken1.remoteAddr as Deno.NetAddr).hostname, "10.0.0.1");
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(fake.accepts, 2);
  // Taking the other resumes the loop: the third gets its challenge.
  await using taken2 = await listener.accept({ timeout: 5000 });
  assert.equal((taken2.remoteAddr as Deno.NetAddr).hostname, "10.0.0.2");
  await until(() => third.inbound.chunks.length > 0, "the third's challenge");
  assert.equal(fake.backlog.length, 0);
  await first.sendText("one");
  await second.sendText("two");
  assert.equal(await taken1.recvText({ timeout: 5000 }), "one");
  assert.equal(await taken2.recvText({ timeout: 5000 }), "two");
  assert.deepEqual(reports, []);
});

Deno.test("MultiprocessingListener counts an IPv6 /64 as one address by default, each address with ipv6Prefix 128", async () => {
  for (
    const [prefix, victim, key] of [
      [64, "2001:db8::1", "2001:db8::/64"],
      [128, "2001:db8:1::1", "2001:db8:1::1"],
    ] as const
  ) {
    const { fake, listener, reports, evicted } = await memoryListener(
      2,
      prefix,
    );
    await using _ = listener;
    fake.connect("2001:db8:1::1"); // the oldest, alone in its /64
    await tick();
    fake.connect("2001:db8::1");
    await tick();
    fake.connect("2001:db8::2"); // the same /64 as the one before
    await until(() => reports.length === 1, `an eviction (/${prefix})`);
    assert.deepEqual(evicted(), [victim], `ipv6Prefix ${prefix}`);
    assert.ok(
      (reports[0].error as Error).message.includes(
        `connections from ${key}, the most`,
      ),
      (reports[0].error as Error).message,
    );
  }
});

Deno.test("listenMultiprocessing() checks ipv6Prefix", async () => {
  for (const ipv6Prefix of [0, 129, 1.5]) {
    await assert.rejects(
      listenMultiprocessing({ authkey: KEY, ipv6Prefix }),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message.startsWith("Cannot use ipv6Prefix: expected"),
    );
  }
  await assert.rejects(
    listenMultiprocessing({
      authkey: KEY,
      ipv6Prefix: "64" as unknown as number,
    }),
    TypeError,
  );
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    ipv6Prefix: 128,
  });
  assert.equal(listener.addr.transport, "tcp");
});
