// Hostile peers against the Noise responder: what a peer without the PSK can
// make acceptNoise() and serve() with createNoiseAuthenticator() do. Tests marked
// "regression" failed before the fix they name; the others confirm a defence
// that already held.
import assert from "node:assert/strict";
import type { CipherState } from "../../_noise_cipher.ts";
import { HandshakeState } from "../../_noise_state.ts";
import { readExact } from "../../_conn_io.ts";
import { AuthenticationError, ProtocolError } from "../../errors.ts";
import {
  acceptNoise,
  connectNoise,
  createNoiseAuthenticator,
  generateNoisePsk,
  type NoiseConn,
} from "../../noise.ts";
import { type AuthFailureInfo, serve } from "../../server.ts";
import type { Duplex } from "../../types.ts";
import { duplexPair, tcpPair, within } from "../_helpers.ts";

const bytes = (value: string): Uint8Array<ArrayBuffer> =>
  new TextEncoder().encode(value) as Uint8Array<ArrayBuffer>;
const text = (value: Uint8Array | null): string =>
  new TextDecoder().decode(value ?? new Uint8Array(0));
const EMPTY = new Uint8Array(0);

function frame(message: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(2 + message.byteLength);
  out[0] = message.byteLength >> 8;
  out[1] = message.byteLength & 0xff;
  out.set(message, 2);
  return out;
}

/** Splits a recorded byte stream into its frames (length header included). */
function frames(stream: Uint8Array): Uint8Array<ArrayBuffer>[] {
  const out: Uint8Array<ArrayBuffer>[] = [];
  for (let at = 0; at + 2 <= stream.byteLength;) {
    const length = (stream[at] << 8) | stream[at + 1];
    out.push(stream.slice(at, at + 2 + length));
    at += 2 + length;
  }
  return out;
}

/**
 * Runs one honest session in memory (the client sends "pay 100" and
 * closes) and returns the frames the client sent, as an attacker on the
 * path records them.
 */
async function recordClient(psk: Uint8Array): Promise<Uint8Array[]> {
  const [a, b] = duplexPair();
  const chunks: Uint8Array[] = [];
  const writer = a.writable.getWriter();
  const tapped: Duplex = {
    readable: a.readable,
    writable: new WritableStream<Uint8Array>({
      async write(chunk) {
        chunks.push(chunk.slice());
        await writer.write(chunk);
      },
      close: () => writer.close(),
      abort: (reason) => writer.abort(reason),
    }),
  };
  const [client, server] = await Promise.all([
    connectNoise(tapped, psk, { timeout: 5000 }),
    acceptNoise(b, psk, { timeout: 5000 }),
  ]);
  await client.send(bytes("pay 100"));
  assert.equal(text(await server.receive({ timeout: 5000 })), "pay 100");
  await client.closeWrite();
  assert.equal(await server.receive({ timeout: 5000 }), null);
  client.close();
  server.close();
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return frames(all);
}

function isAuthFailure(pattern?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof AuthenticationError, `got ${error}`);
    assert.equal(error.reason, "wrong-key");
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

function assertClosed(conn: Deno.Conn): void {
  assert.throws(() => conn.close(), Deno.errors.BadResource);
}

/**
 * A minimal initiator written on the state machine, as another Noise
 * implementation would be: message 1, the reply, then whatever the test
 * sends. Returns its transport ciphers.
 */
async function foreignInitiator(
  conn: Deno.Conn,
  psk: Uint8Array,
): Promise<{ send: CipherState; receive: CipherState }> {
  const state = await HandshakeState.initialize(true, psk);
  await conn.write(frame(await state.writeMessage()));
  const reply = await readExact(conn, 2 + 48, undefined, "the reply");
  await state.readMessage(reply.slice(2));
  return state.result;
}

// Regression: the responder resolved as soon as it had sent its reply, so a
// recorded first message, replayed by a peer without the PSK, passed as an
// authenticated connection.
Deno.test("acceptNoise() refuses a replayed first message, whatever the replayer sends next", async () => {
  const psk = generateNoisePsk();
  const recorded = await recordClient(psk);
  const [first, ...rest] = recorded;
  assert.equal(first.byteLength, 2 + 48);
  const variants: [string, Uint8Array[], "close" | "stay", RegExp][] = [
    [
      "the whole recorded session",
      [first, ...rest],
      "stay",
      /first transport message does not decrypt/,
    ],
    [
      "nothing more, then a close",
      [first],
      "close",
      /closed the connection before its first transport message/,
    ],
    [
      "a garbage frame",
      [first, frame(crypto.getRandomValues(new Uint8Array(40)))],
      "stay",
      /does not decrypt/,
    ],
    [
      "a frame shorter than a tag",
      [first, new Uint8Array([0, 3, 1, 2, 3])],
      "stay",
      /less than the 16-byte tag/,
    ],
    [
      "a 65535-byte length, then a close",
      [first, new Uint8Array([0xff, 0xff, 1, 2, 3])],
      "close",
      /closed the connection/,
    ],
  ];
  for (const [label, send, then, pattern] of variants) {
    using pair = await tcpPair();
    const accepting = acceptNoise(pair.server, psk, { timeout: 5000 });
    for (const chunk of send) await pair.client.write(chunk);
    if (then === "close") await pair.client.closeWrite();
    await assert.rejects(
      within(accepting, 5000, label),
      isAuthFailure(pattern),
      label,
    );
    assertClosed(pair.server);
  }
  // A replayer that goes silent is bounded by the handshake deadline.
  using pair = await tcpPair();
  const accepting = acceptNoise(pair.server, psk, { timeout: 200 });
  await pair.client.write(first);
  await assert.rejects(within(accepting, 5000), { name: "TimeoutError" });
  assertClosed(pair.server);
});

// Regression: serve() fired onConnection and ran the handler for a replayed
// first message, and its throttle never saw a failure.
Deno.test("serve() with createNoiseAuthenticator() counts a replayed first message as an authentication failure and never admits it", async () => {
  const psk = generateNoisePsk();
  const [first, ...rest] = await recordClient(psk);
  const failures: AuthFailureInfo[] = [];
  let connections = 0;
  let handled = 0;
  await using server = serve<NoiseConn>({
    hostname: "127.0.0.1",
    port: 0,
    log: false,
    handshakeTimeout: 2000,
    throttle: { delay: 1, maxDelay: 1 },
    authenticate: createNoiseAuthenticator(psk),
    onConnection: () => connections++,
    onAuthFailure: (info) => failures.push(info),
  }, async (conn) => {
    handled++;
    await conn.readable.pipeTo(conn.writable);
  });
  const { port } = server.addr as Deno.NetAddr;
  for (const replay of [[first, ...rest], [first]]) {
    using raw = await Deno.connect({ hostname: "127.0.0.1", port });
    for (const chunk of replay) await raw.write(chunk);
    if (replay.length === 1) await raw.closeWrite();
    // The reply comes back (the replayer cannot use it), then the close.
    const reply = new Uint8Array(2 + 48);
    assert.ok(await readExact(raw, reply.length, undefined, "the reply"));
    assert.equal(await within(raw.read(new Uint8Array(16)), 5000), null);
  }
  assert.equal(failures.length, 2);
  for (const failure of failures) {
    assert.equal(failure.error.reason, "wrong-key");
  }
  assert.equal(connections, 0);
  assert.equal(handled, 0);
  assert.equal(server.stats.authenticated, 0);
  // The key holder still gets in.
  await using conn = await connectNoise(
    await Deno.connect({ hostname: "127.0.0.1", port }),
    psk,
    { timeout: 5000 },
  );
  await conn.send(bytes("hello"));
  assert.equal(text(await conn.receive({ timeout: 5000 })), "hello");
  assert.equal(connections, 1);
});

// Regression: connectNoise() sent nothing after the handshake, so the
// responder had nothing to check the initiator's key against.
Deno.test("connectNoise() sends an empty first transport message before any data", async () => {
  const psk = generateNoisePsk();
  const [first, confirmation, data, ...rest] = await recordClient(psk);
  assert.equal(first.byteLength, 2 + 48);
  // A zero-length payload encrypts to the 16-byte tag alone.
  assert.deepEqual([...confirmation.subarray(0, 2)], [0, 16]);
  assert.equal(data.byteLength, 2 + 16 + "pay 100".length);
  assert.deepEqual(rest, []);
});

// Regression for the rule: the initiator's first transport message confirms
// the handshake. Its data (if any) is the application's first read; an empty
// one is consumed.
Deno.test("acceptNoise() keeps the data of the first transport message for the first read, and consumes an empty one", async () => {
  const psk = generateNoisePsk();
  for (const firsts of [["first data", "second"], ["", "after the empty"]]) {
    using pair = await tcpPair();
    const accepting = acceptNoise(pair.server, psk, { timeout: 5000 });
    const { send } = await foreignInitiator(pair.client, psk);
    for (const message of firsts) {
      await pair.client.write(
        frame(await send.encryptWithAd(EMPTY, bytes(message))),
      );
    }
    await pair.client.closeWrite();
    const server = await accepting;
    const received: string[] = [];
    for (let i = 0; i < 5; i++) {
      const message = await server.receive({ timeout: 5000 });
      if (message === null) break;
      received.push(text(message));
    }
    assert.deepEqual(received, firsts.filter((m) => m !== ""));
    server.close();
  }
});

// The price of the rule, documented: a server that speaks first still works
// with connectNoise(), which always sends its first transport message; an
// initiator that waits for the server to speak is not authenticated, and
// the handshake deadline ends it.
Deno.test("acceptNoise() serves a speak-first protocol with connectNoise() and times out an initiator that only listens", async () => {
  const psk = generateNoisePsk();
  {
    using pair = await tcpPair();
    const [client, server] = await Promise.all([
      connectNoise(pair.client, psk, { timeout: 5000 }),
      acceptNoise(pair.server, psk, { timeout: 5000 }).then(async (conn) => {
        await conn.send(bytes("220 welcome"));
        return conn;
      }),
    ]);
    assert.equal(text(await client.receive({ timeout: 5000 })), "220 welcome");
    client.close();
    server.close();
  }
  using pair = await tcpPair();
  const accepting = acceptNoise(pair.server, psk, { timeout: 300 });
  const { receive } = await foreignInitiator(pair.client, psk);
  await assert.rejects(within(accepting, 5000), { name: "TimeoutError" });
  assert.ok(receive);
  assertClosed(pair.server);
});

// Confirms: a crowd of peers that do not hold the key (garbage, another
// protocol, lying lengths, truncation, early close, stall) is refused, no
// handler runs, every socket is closed within the handshake deadline and the
// key holder is served throughout.
Deno.test("serve() with createNoiseAuthenticator() refuses a crowd of hostile peers and keeps serving", async () => {
  const psk = generateNoisePsk();
  const errors: unknown[] = [];
  const failures: AuthFailureInfo[] = [];
  let handled = 0;
  await using server = serve<NoiseConn>({
    hostname: "127.0.0.1",
    port: 0,
    log: false,
    handshakeTimeout: 300,
    throttle: { delay: 1, maxDelay: 1 },
    authenticate: createNoiseAuthenticator(psk),
    onAuthFailure: (info) => failures.push(info),
    onError: (error) => errors.push(error),
  }, async (conn) => {
    handled++;
    await conn.readable.pipeTo(conn.writable);
  });
  const { port } = server.addr as Deno.NetAddr;
  const hostile: [string, Uint8Array, "close" | "stay"][] = [
    ["HTTP", bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "stay"],
    ["a TLS ClientHello", new Uint8Array([0x16, 3, 1, 0, 200, 1]), "stay"],
    ["a lying 65535-byte length", new Uint8Array([0xff, 0xff, 0]), "stay"],
    ["a first message cut short", new Uint8Array([0, 48, 1, 2, 3]), "close"],
    [
      "48 random bytes",
      frame(crypto.getRandomValues(new Uint8Array(48))),
      "stay",
    ],
    ["an early close", new Uint8Array(0), "close"],
    ["a stall", new Uint8Array(0), "stay"],
  ];
  const peers = await Promise.all(hostile.map(async ([label, data, then]) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    if (data.byteLength) await conn.write(data);
    if (then === "close") await conn.closeWrite();
    return { label, conn };
  }));
  // The key holder is served while they are all connected.
  {
    await using conn = await connectNoise(
      await Deno.connect({ hostname: "127.0.0.1", port }),
      psk,
      { timeout: 5000 },
    );
    await conn.send(bytes("ping"));
    assert.equal(text(await conn.receive({ timeout: 5000 })), "ping");
  }
  // Each hostile peer sees the server close its socket.
  for (const { label, conn } of peers) {
    const buffer = new Uint8Array(64);
    for (let i = 0; i < 10; i++) {
      const n = await within(conn.read(buffer), 5000, label).catch(() => null);
      if (n === null) break;
    }
    conn.close();
  }
  assert.equal(handled, 1);
  assert.equal(server.stats.authenticated, 1);
  assert.equal(failures.length, 1); // the random first message
  assert.ok(
    errors.every((error) =>
      error instanceof ProtocolError ||
      (error instanceof DOMException && error.name === "TimeoutError")
    ),
    errors.map(String).join("\n"),
  );
  for (let i = 0; i < 100 && server.stats.open > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(server.stats.open, 0);
});

/**
 * A connection whose readable is a byte stream the test feeds, recording
 * how much room each read offers: the size of the responder's read buffer
 * as it stands.
 */
function feedingConn(chunks: Uint8Array[]): {
  conn: Duplex;
  offered: number[];
} {
  const offered: number[] = [];
  let next = 0;
  const readable = new ReadableStream({
    type: "bytes",
    async pull(controller) {
      const request = controller.byobRequest!;
      const view = request.view as Uint8Array;
      offered.push(view.byteLength);
      if (next === chunks.length) {
        // Nothing more: the peer stalls until the responder gives up.
        await new Promise<void>(() => {});
      }
      const chunk = chunks[next++];
      view.set(chunk.subarray(0, view.byteLength));
      request.respond(Math.min(chunk.byteLength, view.byteLength));
    },
  }) as ReadableStream<Uint8Array<ArrayBuffer>>;
  const writable = new WritableStream<Uint8Array>();
  return { conn: { readable, writable }, offered };
}

// Regression: a frame header alone made the read buffer grow to the whole
// announced length (64 KiB) before the bytes arrived.
Deno.test("acceptNoise() grows its read buffer with the bytes that arrive, not with a length the peer announces", async () => {
  const psk = generateNoisePsk();
  const [first] = await recordClient(psk);
  // A replayed first message, then a 65535-byte length and 10 bytes.
  const { conn, offered } = feedingConn([
    first,
    new Uint8Array([0xff, 0xff, ...new Uint8Array(10)]),
  ]);
  await assert.rejects(
    within(acceptNoise(conn, psk, { timeout: 300 }), 5000),
    { name: "TimeoutError" },
  );
  // Every read offered at most the first buffer's 16 KiB.
  assert.ok(offered.length >= 3, `reads: ${offered}`);
  assert.ok(
    offered.every((size) => size <= 16 * 1024),
    `reads offered ${offered.join(", ")} bytes`,
  );
});

// Regression: every connection got a 16 KiB read buffer before its peer had
// sent a byte.
Deno.test("acceptNoise() reads the handshake with a buffer the size of a handshake message", async () => {
  const psk = generateNoisePsk();
  const { conn, offered } = feedingConn([]);
  await assert.rejects(
    within(acceptNoise(conn, psk, { timeout: 100 }), 5000),
    { name: "TimeoutError" },
  );
  assert.deepEqual(offered, [2 + 48 + 2]);
  // After the handshake the buffer takes 16 KiB at once: large messages
  // still go through whole.
  const [a, b] = duplexPair();
  const [client, server] = await Promise.all([
    connectNoise(a, psk, { timeout: 5000 }),
    acceptNoise(b, psk, { timeout: 5000 }),
  ]);
  const big = crypto.getRandomValues(new Uint8Array(65519));
  await client.send(big);
  await client.send(bytes("small"));
  assert.deepEqual(await server.receive({ timeout: 5000 }), big);
  assert.equal(text(await server.receive({ timeout: 5000 })), "small");
  client.close();
  server.close();
});
