import assert from "node:assert/strict";
import { CipherState, DecryptError } from "../_noise_cipher.ts";
import { hkdf, keyPairFromPrivateKey } from "../_noise_crypto.ts";
import { HandshakeState, testHooks } from "../_noise_state.ts";
import { readExact, readExactOrEof } from "../_conn_io.ts";
import { AuthenticationError, ProtocolError } from "../errors.ts";
import {
  acceptNoise,
  connectNoise,
  createNoiseAuthenticator,
  generateNoisePsk,
  NOISE_MAX_PAYLOAD_LENGTH,
  type NoiseConn,
} from "../noise.ts";
import { type AuthFailureInfo, serve } from "../server.ts";
import type { Duplex } from "../types.ts";
import {
  duplexPair,
  findPython,
  interopScript,
  lines,
  peerTest,
  spawn,
  startExample,
  tcpPair,
  within,
} from "./_helpers.ts";

const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array((text.match(/../g) ?? []).map((b) => parseInt(b, 16)));
const text = (bytes: Uint8Array | null): string =>
  new TextDecoder().decode(bytes ?? new Uint8Array(0));
function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536) {
    crypto.getRandomValues(out.subarray(i, i + 65536));
  }
  return out;
}
const bytes = (value: string): Uint8Array<ArrayBuffer> =>
  new TextEncoder().encode(value) as Uint8Array<ArrayBuffer>;

interface Vector {
  protocol_name: string;
  init_prologue: string;
  init_psks: string[];
  init_ephemeral: string;
  resp_prologue: string;
  resp_psks: string[];
  resp_ephemeral: string;
  handshake_hash: string;
  messages: { payload: string; ciphertext: string }[];
}

const VECTOR: Vector = JSON.parse(
  await Deno.readTextFile(
    new URL(
      "./testdata/noise/cacophony_nnpsk0_aesgcm_sha256.json",
      import.meta.url,
    ),
  ),
);

Deno.test("HandshakeState reproduces the cacophony NNpsk0 AESGCM SHA256 vector byte for byte", async () => {
  assert.equal(VECTOR.protocol_name, "Noise_NNpsk0_25519_AESGCM_SHA256");
  const initiator = await HandshakeState.initialize(
    true,
    unhex(VECTOR.init_psks[0]),
    {
      prologue: unhex(VECTOR.init_prologue),
      testingEphemeralPrivateKey: unhex(VECTOR.init_ephemeral),
    },
  );
  const responder = await HandshakeState.initialize(
    false,
    unhex(VECTOR.resp_psks[0]),
    {
      prologue: unhex(VECTOR.resp_prologue),
      testingEphemeralPrivateKey: unhex(VECTOR.resp_ephemeral),
    },
  );
  const [m0, m1, ...transport] = VECTOR.messages;
  const c0 = await initiator.writeMessage(unhex(m0.payload));
  assert.equal(hex(c0), m0.ciphertext);
  assert.equal(hex(await responder.readMessage(c0)), m0.payload);
  const c1 = await responder.writeMessage(unhex(m1.payload));
  assert.equal(hex(c1), m1.ciphertext);
  assert.equal(hex(await initiator.readMessage(c1)), m1.payload);
  assert.equal(hex(initiator.result.handshakeHash), VECTOR.handshake_hash);
  assert.equal(hex(responder.result.handshakeHash), VECTOR.handshake_hash);
  // Transport: the initiator writes messages 2 and 4, the responder 3 and 5.
  for (const [index, message] of transport.entries()) {
    const [from, to] = index % 2 === 0
      ? [initiator, responder]
      : [responder, initiator];
    const ciphertext = await from.result.send.encryptWithAd(
      new Uint8Array(0),
      unhex(message.payload),
    );
    assert.equal(hex(ciphertext), message.ciphertext, `message ${index + 2}`);
    const plaintext = await to.result.receive.decryptWithAd(
      new Uint8Array(0),
      ciphertext,
    );
    assert.equal(hex(plaintext), message.payload);
  }
});

Deno.test("HandshakeState rejects the vector's first message under another PSK or prologue", async () => {
  const initiator = await HandshakeState.initialize(
    true,
    unhex(VECTOR.init_psks[0]),
    {
      prologue: unhex(VECTOR.init_prologue),
      testingEphemeralPrivateKey: unhex(VECTOR.init_ephemeral),
    },
  );
  const message = await initiator.writeMessage(
    unhex(VECTOR.messages[0].payload),
  );
  const otherPsk = unhex(VECTOR.resp_psks[0]);
  otherPsk[0] ^= 1;
  const wrongKey = await HandshakeState.initialize(false, otherPsk, {
    prologue: unhex(VECTOR.resp_prologue),
  });
  await assert.rejects(wrongKey.readMessage(message), DecryptError);
  const wrongPrologue = await HandshakeState.initialize(
    false,
    unhex(VECTOR.resp_psks[0]),
    { prologue: bytes("John Galt?") },
  );
  await assert.rejects(wrongPrologue.readMessage(message), DecryptError);
});

Deno.test("HandshakeState accepts the vector's first message replayed to a fresh responder, but not the vector's first transport message", async () => {
  // Why acceptNoise() waits for the initiator's first transport message:
  // message 0 proves nothing about freshness, message 2 does.
  const [m0, m1, m2] = VECTOR.messages;
  const fresh = await HandshakeState.initialize(
    false,
    unhex(VECTOR.resp_psks[0]),
    { prologue: unhex(VECTOR.resp_prologue) }, // a new ephemeral key
  );
  assert.equal(
    hex(await fresh.readMessage(unhex(m0.ciphertext))),
    m0.payload,
  );
  const reply = await fresh.writeMessage(unhex(m1.payload));
  assert.notEqual(hex(reply), m1.ciphertext);
  await assert.rejects(
    fresh.result.receive.decryptWithAd(new Uint8Array(0), unhex(m2.ciphertext)),
    DecryptError,
  );
  // The original responder (the vector's ephemeral key) decrypts it.
  const original = await HandshakeState.initialize(
    false,
    unhex(VECTOR.resp_psks[0]),
    {
      prologue: unhex(VECTOR.resp_prologue),
      testingEphemeralPrivateKey: unhex(VECTOR.resp_ephemeral),
    },
  );
  await original.readMessage(unhex(m0.ciphertext));
  assert.equal(
    hex(await original.writeMessage(unhex(m1.payload))),
    m1.ciphertext,
  );
  assert.equal(
    hex(
      await original.result.receive.decryptWithAd(
        new Uint8Array(0),
        unhex(m2.ciphertext),
      ),
    ),
    m2.payload,
  );
});

Deno.test("keyPairFromPrivateKey derives the vector's ephemeral public key (PKCS#8 import)", async () => {
  const pair = await keyPairFromPrivateKey(unhex(VECTOR.init_ephemeral));
  // Message 0 starts with the initiator's ephemeral public key in the clear.
  assert.equal(hex(pair.publicKey), VECTOR.messages[0].ciphertext.slice(0, 64));
  await assert.rejects(keyPairFromPrivateKey(new Uint8Array(31)), RangeError);
});

async function hmacSha256(
  key: Uint8Array<ArrayBuffer>,
  data: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, data));
}

Deno.test("hkdf() matches the Noise spec's HMAC formulation of HKDF", async () => {
  for (const ikmLength of [0, 32, 33, 100]) {
    const ck = crypto.getRandomValues(new Uint8Array(32));
    const ikm = crypto.getRandomValues(new Uint8Array(ikmLength));
    // Noise spec section 4.3, written out.
    const tempKey = await hmacSha256(ck, ikm);
    const out1 = await hmacSha256(tempKey, new Uint8Array([1]));
    const out2 = await hmacSha256(tempKey, new Uint8Array([...out1, 2]));
    const out3 = await hmacSha256(tempKey, new Uint8Array([...out2, 3]));
    assert.deepEqual(await hkdf(ck, ikm, 2), [out1, out2]);
    assert.deepEqual(await hkdf(ck, ikm, 3), [out1, out2, out3]);
  }
});

Deno.test("CipherState refuses to encrypt or decrypt at the reserved nonce 2^64-1", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const sender = await CipherState.create(key);
  const receiver = await CipherState.create(key);
  const last = (1n << 64n) - 2n;
  sender.setNonce(last);
  receiver.setNonce(last);
  const ad = new Uint8Array(0);
  const ciphertext = await sender.encryptWithAd(ad, bytes("last one"));
  assert.equal(text(await receiver.decryptWithAd(ad, ciphertext)), "last one");
  assert.equal(sender.nonce, (1n << 64n) - 1n);
  await assert.rejects(
    sender.encryptWithAd(ad, bytes("one too many")),
    (error: Error) =>
      error instanceof RangeError &&
      /nonce counter is exhausted/.test(error.message),
  );
  await assert.rejects(receiver.decryptWithAd(ad, ciphertext), RangeError);
});

Deno.test("CipherState leaves the nonce unchanged when a tag fails", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const sender = await CipherState.create(key);
  const receiver = await CipherState.create(key);
  const ad = new Uint8Array(0);
  const ciphertext = await sender.encryptWithAd(ad, bytes("hello"));
  const tampered = ciphertext.slice();
  tampered[0] ^= 0x80;
  await assert.rejects(receiver.decryptWithAd(ad, tampered), DecryptError);
  assert.equal(receiver.nonce, 0n);
  assert.equal(text(await receiver.decryptWithAd(ad, ciphertext)), "hello");
});

// ---------------------------------------------------------------------------
// A man in the middle for in-memory connections: sees every frame (2-byte
// length + message) and decides what to pass on.

type Direction = "to-server" | "to-client";
/**
 * Returns the raw chunks to forward (any bytes; a promise holds that chunk
 * and everything after it until it resolves), or null to close.
 */
type FrameHook = (
  direction: Direction,
  index: number,
  frame: Uint8Array<ArrayBuffer>,
) => (Uint8Array | Promise<Uint8Array>)[] | null;

function relayPair(hook: FrameHook): {
  client: Duplex;
  server: Duplex;
  done: Promise<void>;
} {
  const [client, relayClient] = duplexPair();
  const [relayServer, server] = duplexPair();
  async function pump(from: Duplex, to: Duplex, direction: Direction) {
    const writer = to.writable.getWriter();
    let index = 0;
    try {
      while (true) {
        const header = await readExactOrEof(from.readable, 2, undefined, "hdr");
        if (header === null) break;
        const body = await readExact(
          from.readable,
          (header[0] << 8) | header[1],
          undefined,
          "body",
        );
        const frame = new Uint8Array(2 + body.length);
        frame.set(header);
        frame.set(body, 2);
        const out = hook(direction, index++, frame);
        if (out === null) break;
        for (const chunk of out) await writer.write(await chunk);
      }
    } catch {
      // the far end went away
    } finally {
      await writer.close().catch(() => {});
      await from.readable.cancel().catch(() => {});
    }
  }
  const done = Promise.all([
    pump(relayClient, relayServer, "to-server"),
    pump(relayServer, relayClient, "to-client"),
  ]).then(() => {});
  return { client, server, done };
}

async function noisePair(
  client: Duplex,
  server: Duplex,
  psk = generateNoisePsk(),
): Promise<[NoiseConn, NoiseConn]> {
  return await Promise.all([
    connectNoise(client, psk, { timeout: 5000 }),
    acceptNoise(server, psk, { timeout: 5000 }),
  ]);
}

function isProtocolError(reason: string, pattern?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof ProtocolError, `got ${error}`);
    assert.equal(error.reason, reason);
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

function assertClosed(conn: Deno.Conn): void {
  assert.throws(() => conn.close(), Deno.errors.BadResource);
}

function isTimeout(pattern?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof DOMException, `got ${error}`);
    assert.equal(error.name, "TimeoutError");
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

/**
 * An in-memory pair whose client side can stop taking writes, like a peer
 * that does not read: `stall()` holds every write until `release()`.
 */
function stallablePair(): {
  client: Duplex;
  server: Duplex;
  stall(): void;
  release(): void;
} {
  const [client, server] = duplexPair();
  const writer = client.writable.getWriter();
  let gate: PromiseWithResolvers<void> | undefined;
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (gate) await gate.promise;
      await writer.write(chunk);
    },
    close: () => writer.close(),
    abort: (reason) => writer.abort(reason),
  });
  return {
    client: { readable: client.readable, writable },
    server,
    stall() {
      gate ??= Promise.withResolvers();
    },
    release() {
      gate?.resolve();
      gate = undefined;
    },
  };
}

// ---------------------------------------------------------------------------

Deno.test("connectNoise() and acceptNoise() carry messages both ways over TCP", async () => {
  using pair = await tcpPair();
  const [client, server] = await noisePair(pair.client, pair.server);
  assert.equal(client.initiator, true);
  assert.equal(server.initiator, false);
  assert.equal(hex(client.handshakeHash), hex(server.handshakeHash));
  assert.equal(client.handshakeHash.length, 32);
  assert.deepEqual(client.remoteAddr, pair.client.remoteAddr);
  await client.send(bytes("ping"));
  await client.send(new Uint8Array(0));
  assert.equal(text(await server.receive()), "ping");
  assert.equal((await server.receive())!.length, 0);
  const big = crypto.getRandomValues(new Uint8Array(NOISE_MAX_PAYLOAD_LENGTH));
  await server.send(big);
  assert.deepEqual(await client.receive(), big);
  await client.closeWrite();
  assert.equal(await server.receive(), null);
  await server.send(bytes("after half-close"));
  assert.equal(text(await client.receive()), "after half-close");
  client.close();
  assert.equal(await server.receive(), null);
  server.close();
  assertClosed(pair.client);
  assertClosed(pair.server);
});

Deno.test("NoiseConn streams large writes as several messages and reads them with BYOB", async () => {
  using pair = await tcpPair();
  const [client, server] = await noisePair(pair.client, pair.server);
  await using _client = client;
  await using _server = server;
  const data = randomBytes(300_000);
  const writing = (async () => {
    const writer = client.writable.getWriter();
    await writer.write(data);
    await writer.close();
  })();
  const reader = server.readable.getReader({ mode: "byob" });
  const received = new Uint8Array(data.length);
  let offset = 0;
  for (let i = 0; i < 10_000 && offset < data.length; i++) {
    const { value, done } = await reader.read(
      new Uint8Array(new ArrayBuffer(7_000)),
    );
    assert.equal(done, false);
    received.set(value!, offset);
    offset += value!.length;
  }
  const end = await reader.read(new Uint8Array(new ArrayBuffer(10)));
  assert.equal(end.done, true);
  assert.equal(offset, data.length);
  assert.deepEqual(received, data);
  await writing;
});

Deno.test("NoiseConn splits a write into messages of at most 65535 bytes", async () => {
  const lengths: number[] = [];
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-server" && index > 0) lengths.push(frame.length - 2);
    return [frame];
  });
  const [client, server] = await noisePair(relay.client, relay.server);
  const data = randomBytes(150_000);
  const writer = client.writable.getWriter();
  await writer.write(data);
  await writer.close();
  const received = new Uint8Array(
    await new Response(server.readable).arrayBuffer(),
  );
  assert.deepEqual(received, data);
  // The handshake's empty first transport message (a bare tag), then the
  // data.
  assert.deepEqual(lengths, [16, 65535, 65535, 150_000 - 2 * 65519 + 16]);
  await assert.rejects(
    client.send(new Uint8Array(NOISE_MAX_PAYLOAD_LENGTH + 1)),
    RangeError,
  );
  client.close();
  server.close();
  await relay.done;
});

Deno.test("acceptNoise() rejects a wrong PSK and connectNoise() reports the rejection; both close", async () => {
  using pair = await tcpPair();
  const [connected, accepted] = await Promise.allSettled([
    connectNoise(pair.client, generateNoisePsk(), { timeout: 5000 }),
    acceptNoise(pair.server, generateNoisePsk(), { timeout: 5000 }),
  ]);
  assert.equal(accepted.status, "rejected");
  assert.ok(accepted.reason instanceof AuthenticationError);
  assert.equal(accepted.reason.reason, "wrong-key");
  assert.match(
    accepted.reason.message,
    /does not decrypt under our pre-shared key/,
  );
  assert.equal(connected.status, "rejected");
  assert.ok(connected.reason instanceof AuthenticationError);
  assert.equal(connected.reason.reason, "rejected");
  assertClosed(pair.client);
  assertClosed(pair.server);
});

Deno.test("connectNoise() rejects a responder whose reply does not decrypt (tampered)", async () => {
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-client" && index === 0) {
      const copy = frame.slice();
      copy[copy.length - 1] ^= 1; // the tag
      return [copy];
    }
    return [frame];
  });
  const [connected, accepted] = await Promise.allSettled([
    connectNoise(relay.client, "00".repeat(32)),
    acceptNoise(relay.server, "00".repeat(32)),
  ]);
  assert.equal(connected.status, "rejected");
  assert.ok(connected.reason instanceof AuthenticationError);
  assert.equal(connected.reason.reason, "wrong-key");
  // The responder never reports a session the initiator gave up on: it
  // waits for the initiator's first transport message, which never comes.
  assert.equal(accepted.status, "rejected");
  assert.ok(accepted.reason instanceof AuthenticationError);
  assert.equal(accepted.reason.reason, "wrong-key");
  assert.match(accepted.reason.message, /before its first transport message/);
  await relay.done;
});

Deno.test("connectNoise() rejects a responder whose ephemeral key is invalid (all zeros) and closes", async () => {
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-client" && index === 0) {
      const copy = frame.slice();
      copy.fill(0, 2, 2 + 32); // the responder's `e`, after the length
      return [copy];
    }
    return [frame];
  });
  const psk = generateNoisePsk();
  const [connected, accepted] = await Promise.allSettled([
    connectNoise(relay.client, psk, { timeout: 5000 }),
    acceptNoise(relay.server, psk, { timeout: 5000 }),
  ]);
  assert.equal(connected.status, "rejected");
  isProtocolError(
    "malformed",
    /the responder sent an invalid ephemeral public key/,
  )(connected.reason);
  // The responder sees the initiator close before it proved the key.
  assert.equal(accepted.status, "rejected");
  assert.ok(accepted.reason instanceof AuthenticationError);
  assert.match(accepted.reason.message, /before its first transport message/);
  await relay.done;
});

Deno.test("connectNoise() and acceptNoise() wipe their PSK copies whether the handshake succeeds, fails or stalls", async () => {
  const copies: Uint8Array[] = [];
  testHooks.pskCopy = (copy) => copies.push(copy);
  const wiped = () => copies.every((copy) => copy.every((byte) => byte === 0));
  try {
    // Success.
    const [a, b] = duplexPair();
    const [client, server] = await noisePair(a, b);
    client.close();
    server.close();
    assert.equal(copies.length, 2);
    assert.ok(wiped(), "after a handshake that succeeded");
    // Failure after the psk token: a wrong key.
    const [c, d] = duplexPair();
    await Promise.allSettled([
      connectNoise(c, generateNoisePsk(), { timeout: 5000 }),
      acceptNoise(d, generateNoisePsk(), { timeout: 5000 }),
    ]);
    assert.equal(copies.length, 4);
    assert.ok(wiped(), "after a wrong key");
    // Failure before it: the responder never gets a message.
    const [, e] = duplexPair();
    await assert.rejects(
      acceptNoise(e, generateNoisePsk(), { timeout: 50 }),
      isTimeout(),
    );
    assert.equal(copies.length, 5);
    assert.ok(wiped(), "after a handshake that timed out");
  } finally {
    testHooks.pskCopy = undefined;
  }
});

Deno.test("acceptNoise() rejects a different prologue as a wrong key", async () => {
  using pair = await tcpPair();
  const psk = generateNoisePsk();
  const [connected, accepted] = await Promise.allSettled([
    connectNoise(pair.client, psk, { prologue: "app/1" }),
    acceptNoise(pair.server, psk, { prologue: "app/2" }),
  ]);
  assert.equal(connected.status, "rejected");
  assert.equal(accepted.status, "rejected");
  assert.equal(accepted.reason.reason, "wrong-key");
});

Deno.test("NoiseConn.receive() rejects a tampered message and closes the connection", async () => {
  const relay = relayPair((direction, index, frame) => {
    // 0: the first handshake message, 1: the empty first transport message.
    if (direction === "to-server" && index === 3) {
      const copy = frame.slice();
      copy[5] ^= 0x01;
      return [copy];
    }
    return [frame];
  });
  const [client, server] = await noisePair(relay.client, relay.server);
  await client.send(bytes("first"));
  await client.send(bytes("second"));
  assert.equal(text(await server.receive()), "first");
  await assert.rejects(
    server.receive(),
    isProtocolError(
      "malformed",
      /Noise message 2: its authentication tag does not verify/,
    ),
  );
  // The failure sticks, and the connection is gone: the client sees its end.
  await assert.rejects(server.receive(), ProtocolError);
  await assert.rejects(server.send(bytes("x")), ProtocolError);
  assert.equal(await client.receive(), null);
  client.close();
  await relay.done;
});

Deno.test("NoiseConn.receive() rejects reordered messages", async () => {
  let held: Uint8Array | undefined;
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-server" && index === 2) {
      held = frame;
      return [];
    }
    if (direction === "to-server" && index === 3) return [frame, held!];
    return [frame];
  });
  const [client, server] = await noisePair(relay.client, relay.server);
  await client.send(bytes("one"));
  await client.send(bytes("two"));
  await assert.rejects(server.receive(), isProtocolError("malformed"));
  client.close();
  await relay.done;
});

Deno.test("NoiseConn.receive() rejects a replayed message", async () => {
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-server" && index === 2) return [frame, frame];
    return [frame];
  });
  const [client, server] = await noisePair(relay.client, relay.server);
  await client.send(bytes("pay 100"));
  assert.equal(text(await server.receive()), "pay 100");
  await assert.rejects(server.receive(), isProtocolError("malformed"));
  client.close();
  await relay.done;
});

Deno.test("NoiseConn.readable errors on a tampered message without handing out its bytes", async () => {
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-server" && index === 3) {
      const copy = frame.slice();
      copy[2] ^= 0xff;
      return [copy];
    }
    return [frame];
  });
  const [client, server] = await noisePair(relay.client, relay.server);
  await client.send(bytes("good"));
  await client.send(bytes("evil"));
  const reader = server.readable.getReader();
  assert.equal(text((await reader.read()).value!), "good");
  await assert.rejects(reader.read(), isProtocolError("malformed"));
  client.close();
  await relay.done;
});

Deno.test("NoiseConn.receive() rejects a truncated message", async () => {
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-server" && index === 2) {
      return [frame.subarray(0, 10), frame.subarray(10, 20)];
    }
    if (direction === "to-server" && index > 2) return null;
    return [frame];
  });
  const [client, server] = await noisePair(relay.client, relay.server);
  await client.send(bytes("a message that will be cut short"));
  await client.send(bytes("closes the relay"));
  await assert.rejects(
    server.receive(),
    isProtocolError("closed", /after 18 of 48 bytes/),
  );
  client.close();
  await relay.done;
});

Deno.test("NoiseConn.receive() rejects a frame shorter than a tag", async () => {
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-server" && index === 2) {
      return [new Uint8Array([0, 3, 1, 2, 3])];
    }
    return [frame];
  });
  const [client, server] = await noisePair(relay.client, relay.server);
  await client.send(bytes("x"));
  await assert.rejects(
    server.receive(),
    isProtocolError("malformed", /less than the 16-byte tag/),
  );
  client.close();
  await relay.done;
});

Deno.test("NoiseConn.receive() stops at its timeout or signal and keeps a half-read message for the next call", async () => {
  const rest = Promise.withResolvers<void>();
  const relay = relayPair((direction, index, frame) => {
    if (direction === "to-server" && index === 2) {
      // Half the frame now, the rest when the test says so.
      return [frame.subarray(0, 10), rest.promise.then(() => frame.slice(10))];
    }
    return [frame];
  });
  const [client, server] = await noisePair(relay.client, relay.server);
  await client.send(bytes("a message that arrives in two parts"));
  await client.send(bytes("and the next one"));
  await within(
    assert.rejects(
      server.receive({ timeout: 100 }),
      isTimeout(/Cannot receive a Noise message: timed out after 100 ms/),
    ),
    3000,
  );
  const stop = new AbortController();
  const stopped = server.receive({ signal: stop.signal });
  stop.abort(new Error("stopped by the test"));
  await assert.rejects(stopped, /stopped by the test/);
  // Nothing was lost or damaged: the message and the next one decrypt.
  rest.resolve();
  assert.equal(
    text(await within(server.receive({ timeout: 3000 }), 5000)),
    "a message that arrives in two parts",
  );
  assert.equal(text(await server.receive()), "and the next one");
  // The options are checked like the handshake's.
  await assert.rejects(server.receive({ timeout: 0 }), RangeError);
  client.close();
  assert.equal(await server.receive({ timeout: 3000 }), null);
  server.close();
  await relay.done;
});

Deno.test("NoiseConn.send() times out on a peer that does not read and closes the connection", async () => {
  using pair = await tcpPair();
  const [client, server] = await noisePair(pair.client, pair.server);
  // The server reads nothing: sends go into the socket buffers until they
  // are full, then one waits and its deadline passes.
  const chunk = randomBytes(NOISE_MAX_PAYLOAD_LENGTH);
  let sent = 0;
  let failure: unknown;
  for (; sent < 2000 && failure === undefined; sent++) {
    await client.send(chunk, { timeout: 200 }).catch((error) => {
      failure = error;
    });
  }
  isTimeout(/Cannot send a Noise message: timed out after 200 ms/)(failure);
  // Part of the frame may have gone out, so the connection is closed rather
  // than left out of step; later calls say so.
  assertClosed(pair.client);
  await assert.rejects(client.send(bytes("x")), TypeError);
  assert.equal(await client.receive(), null);
  // The peer gets every whole message, then the end or a cut frame.
  let received = 0;
  try {
    for (let i = 0; i < sent; i++) {
      const message = await server.receive({ timeout: 5000 });
      if (message === null) break;
      assert.deepEqual(message, chunk);
      received++;
    }
  } catch (error) {
    isProtocolError("closed")(error);
  }
  // `sent` counts the attempts, the one that timed out included.
  assert.ok(
    received === sent - 1 || received === sent,
    `received ${received} of ${sent}`,
  );
  server.close();
});

Deno.test("NoiseConn.send() stopped while queued sends nothing and the connection goes on", async () => {
  const pair = stallablePair();
  const [client, server] = await noisePair(pair.client, pair.server);
  pair.stall();
  const first = client.send(bytes("first"));
  await assert.rejects(
    client.send(bytes("never sent"), { timeout: 50 }),
    isTimeout(),
  );
  const stop = new AbortController();
  const aborted = client.send(bytes("never sent either"), {
    signal: stop.signal,
  });
  stop.abort();
  await assert.rejects(aborted, { name: "AbortError" });
  pair.release();
  await first;
  await client.send(bytes("third"), { timeout: 3000 });
  // The peer reads on in step: the skipped messages spent no nonce.
  assert.equal(text(await server.receive({ timeout: 3000 })), "first");
  assert.equal(text(await server.receive({ timeout: 3000 })), "third");
  client.close();
  server.close();
});

Deno.test("NoiseConn.closeWrite() stops at its timeout and leaves the sending side open", async () => {
  const pair = stallablePair();
  const [client, server] = await noisePair(pair.client, pair.server);
  pair.stall();
  const first = client.send(bytes("first"));
  await assert.rejects(
    client.closeWrite({ timeout: 50 }),
    isTimeout(/Cannot close the Noise connection for writing: timed out/),
  );
  pair.release();
  await first;
  await client.send(bytes("still open"));
  await client.closeWrite({ timeout: 3000 });
  assert.equal(text(await server.receive()), "first");
  assert.equal(text(await server.receive()), "still open");
  assert.equal(await server.receive({ timeout: 3000 }), null);
  client.close();
  server.close();
});

Deno.test("NoiseConn[Symbol.asyncDispose]() closes after gracePeriod when a peer stops reading", async () => {
  using pair = await tcpPair();
  const psk = generateNoisePsk();
  const [client, server] = await Promise.all([
    connectNoise(pair.client, psk, { timeout: 5000, gracePeriod: 100 }),
    acceptNoise(pair.server, psk, { timeout: 5000 }),
  ]);
  // More than the socket buffers hold, and the server reads nothing.
  const chunk = randomBytes(NOISE_MAX_PAYLOAD_LENGTH);
  const sends = Array.from({ length: 400 }, () => client.send(chunk));
  const started = performance.now();
  await within(client[Symbol.asyncDispose](), 3000);
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 90, `closed after ${elapsed} ms`);
  assertClosed(pair.client);
  const results = await Promise.allSettled(sends);
  const failed = results.filter((result) => result.status === "rejected");
  assert.ok(failed.length > 0, "some sends were still pending");
  for (const result of failed) {
    assert.ok(result.reason instanceof TypeError, `got ${result.reason}`);
  }
  server.close();
});

Deno.test("connectNoise() checks gracePeriod", async () => {
  const [a] = duplexPair();
  const psk = generateNoisePsk();
  await assert.rejects(connectNoise(a, psk, { gracePeriod: -1 }), RangeError);
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    connectNoise(a, psk, { gracePeriod: "5" as any }),
    TypeError,
  );
  assert.throws(
    () => createNoiseAuthenticator(psk, { gracePeriod: -1 }),
    RangeError,
  );
  assert.equal(a.readable.locked, false);
});

Deno.test("NoiseConn.send() refuses to go past nonce 2^64-2 and closes the connection", async () => {
  using pair = await tcpPair();
  // Both ends of the client-to-server direction start one before the last
  // usable nonce, as after 2^64-3 messages: the handshake's empty first
  // transport message takes it, and "the last one" gets the last.
  testHooks.afterSplit = (result, initiator) => {
    (initiator ? result.send : result.receive).setNonce((1n << 64n) - 3n);
  };
  let client: NoiseConn, server: NoiseConn;
  try {
    [client, server] = await noisePair(pair.client, pair.server);
  } finally {
    testHooks.afterSplit = undefined;
  }
  await client.send(bytes("the last one"));
  assert.equal(text(await server.receive()), "the last one");
  const exhausted = (error: unknown): boolean =>
    error instanceof RangeError &&
    /nonce counter is exhausted/.test(error.message);
  await assert.rejects(client.send(bytes("one too many")), exhausted);
  // The connection is closed, as for every other failure.
  assertClosed(pair.client);
  await assert.rejects(client.send(bytes("again")), exhausted);
  await assert.rejects(client.receive(), exhausted);
  assert.equal(await server.receive(), null);
  server.close();
});

Deno.test("acceptNoise() refuses an oversized handshake length before reading it", async () => {
  using pair = await tcpPair();
  const accepting = acceptNoise(pair.server, generateNoisePsk(), {
    timeout: 5000,
  });
  // Claims 65535 bytes and sends only 4: refused from the length alone.
  await pair.client.write(new Uint8Array([0xff, 0xff, 1, 2, 3, 4]));
  await assert.rejects(
    accepting,
    isProtocolError("too-large", /65535 bytes, expected 48/),
  );
  assertClosed(pair.server);
});

Deno.test("acceptNoise() refuses an HTTP request as not Noise", async () => {
  using pair = await tcpPair();
  const accepting = acceptNoise(pair.server, generateNoisePsk());
  await pair.client.write(bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  await assert.rejects(
    accepting,
    isProtocolError("too-large", /does not speak Noise_NNpsk0/),
  );
});

Deno.test("acceptNoise() rejects a first message cut short", async () => {
  using pair = await tcpPair();
  const accepting = acceptNoise(pair.server, generateNoisePsk());
  await pair.client.write(new Uint8Array([0, 48, ...new Uint8Array(20)]));
  pair.client.close();
  await assert.rejects(
    accepting,
    isProtocolError("closed", /after 20 of 48 bytes/),
  );
});

Deno.test("connectNoise() rejects a reply of the wrong length", async () => {
  using pair = await tcpPair();
  const connecting = connectNoise(pair.client, generateNoisePsk());
  await readExact(pair.server.readable, 50, undefined, "message 0");
  await pair.server.write(new Uint8Array([0, 10, ...new Uint8Array(10)]));
  await assert.rejects(
    connecting,
    isProtocolError("malformed", /is 10 bytes, expected 48/),
  );
});

Deno.test("acceptNoise() times out on a silent peer and honours its signal", async () => {
  using pair = await tcpPair();
  await assert.rejects(
    acceptNoise(pair.server, generateNoisePsk(), { timeout: 100 }),
    (error: unknown) => {
      assert.ok(error instanceof DOMException);
      assert.equal(error.name, "TimeoutError");
      assert.match(
        error.message,
        /Noise handshake with the initiator: timed out after 100 ms/,
      );
      return true;
    },
  );
  assertClosed(pair.server);
  using other = await tcpPair();
  const controller = new AbortController();
  const connecting = connectNoise(other.client, generateNoisePsk(), {
    signal: controller.signal,
  });
  controller.abort();
  await assert.rejects(connecting, { name: "AbortError" });
  assertClosed(other.client);
});

Deno.test("connectNoise() checks the PSK and options before any I/O", async () => {
  const [a] = duplexPair();
  await assert.rejects(connectNoise(a, new Uint8Array(31)), RangeError);
  await assert.rejects(connectNoise(a, "abcd"), RangeError);
  await assert.rejects(connectNoise(a, "zz".repeat(32)), TypeError);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(connectNoise(a, 42 as any), TypeError);
  await assert.rejects(
    connectNoise(a, generateNoisePsk(), { timeout: 0 }),
    RangeError,
  );
  const secret = "ab".repeat(31);
  await assert.rejects(connectNoise(a, secret), (error: Error) => {
    assert.ok(!error.message.includes(secret));
    return true;
  });
  assert.throws(() => createNoiseAuthenticator(new Uint8Array(16)), RangeError);
  assert.equal(a.readable.locked, false);
});

Deno.test("connectNoise() accepts the PSK as bytes on one side and hex on the other", async () => {
  const [a, b] = duplexPair();
  const psk = generateNoisePsk();
  const [client, server] = await Promise.all([
    connectNoise(a, psk),
    acceptNoise(b, hex(psk).toUpperCase()),
  ]);
  await client.send(bytes("ok"));
  assert.equal(text(await server.receive()), "ok");
  client.close();
  server.close();
});

Deno.test("NoiseConn allows either readable or receive(), not both", async () => {
  const [a, b] = duplexPair();
  const [client, server] = await noisePair(a, b);
  await client.send(bytes("x"));
  assert.equal(text(await server.receive()), "x");
  await client.send(bytes("y"));
  await assert.rejects(server.readable.getReader().read(), TypeError);
  const [c, d] = duplexPair();
  const [client2, server2] = await noisePair(c, d);
  await client2.send(bytes("z"));
  assert.equal(text((await server2.readable.getReader().read()).value!), "z");
  await assert.rejects(server2.receive(), TypeError);
  for (const conn of [client, server, client2, server2]) conn.close();
});

Deno.test("serve() with createNoiseAuthenticator() serves Noise clients and refuses a wrong PSK", async () => {
  const psk = generateNoisePsk();
  const failures: AuthFailureInfo[] = [];
  await using server = serve<NoiseConn>({
    hostname: "127.0.0.1",
    port: 0,
    log: false,
    authenticate: createNoiseAuthenticator(psk, { prologue: "echo/1" }),
    onAuthFailure: (info) => failures.push(info),
  }, async (conn) => {
    await conn.readable.pipeTo(conn.writable);
  });
  const { port } = server.addr as Deno.NetAddr;
  for (let i = 0; i < 3; i++) {
    await using conn = await connectNoise(
      await Deno.connect({ hostname: "127.0.0.1", port }),
      psk,
      { prologue: "echo/1", timeout: 5000 },
    );
    await conn.send(bytes(`hello ${i}`));
    assert.equal(text(await conn.receive()), `hello ${i}`);
  }
  const raw = await Deno.connect({ hostname: "127.0.0.1", port });
  await assert.rejects(
    connectNoise(raw, generateNoisePsk(), {
      prologue: "echo/1",
      timeout: 5000,
    }),
    (error: unknown) =>
      error instanceof AuthenticationError && error.reason === "rejected",
  );
  assert.equal(failures.length, 1);
  assert.equal(failures[0].error.reason, "wrong-key");
  assert.equal(server.stats.authenticated, 3);
});

Deno.test("serve() with createNoiseAuthenticator() reports a client that does not speak Noise and a stalled one", async () => {
  const errors: { error: unknown; phase: string }[] = [];
  await using server = serve<NoiseConn>({
    hostname: "127.0.0.1",
    port: 0,
    log: false,
    handshakeTimeout: 200,
    authenticate: createNoiseAuthenticator(generateNoisePsk()),
    onError: (error, info) => errors.push({ error, phase: info.phase }),
  }, () => {
    throw new Error("no handler may run");
  });
  const { port } = server.addr as Deno.NetAddr;
  for (const request of [bytes("GET / HTTP/1.1\r\n\r\n"), new Uint8Array(0)]) {
    using raw = await Deno.connect({ hostname: "127.0.0.1", port });
    if (request.length) await raw.write(request);
    // The server closes the connection: after the bad length at once, after
    // its handshake deadline for the silent client.
    assert.equal(await raw.read(new Uint8Array(16)), null);
  }
  assert.equal(errors.length, 2);
  assert.ok(errors[0].error instanceof ProtocolError);
  assert.equal(errors[0].error.reason, "too-large");
  assert.ok(errors[1].error instanceof DOMException);
  assert.equal(errors[1].error.name, "TimeoutError");
  assert.deepEqual(errors.map((e) => e.phase), ["handshake", "handshake"]);
  assert.equal(server.stats.authenticated, 0);
});

// ---------------------------------------------------------------------------
// A real peer: tests/interop/noise_peer.py, a Python implementation written
// from the Noise specification on the `cryptography` package.

function pythonWithCryptography(): string | null {
  const python = findPython("3");
  if (python === null) return null;
  const { code } = new Deno.Command(python, {
    args: ["-c", "import cryptography.hazmat.primitives.ciphers.aead"],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  return code === 0 ? python : null;
}

const PYTHON_NOISE = {
  label: "python3 with the cryptography package (pip install cryptography)",
  path: pythonWithCryptography(),
};

/** Runs the Python peer; `next()` gives its stdout lines one by one. */
function pythonPeer(python: string, args: string[]) {
  const child = spawn(python, [interopScript("noise_peer.py"), ...args]);
  child.stdin.close();
  const stdout = lines(child.stdout);
  const stderr = new Response(child.stderr).text();
  return {
    async next(): Promise<string> {
      const { value, done } = await stdout.next();
      if (done) {
        throw new Error(`the Python peer ended early: ${await stderr}`);
      }
      return value;
    },
    async finish(): Promise<{ code: number; rest: string[] }> {
      const rest: string[] = [];
      for await (const line of stdout) rest.push(line);
      const [{ code }] = await Promise.all([child.status, stderr]);
      return { code, rest };
    },
  };
}

peerTest(
  "acceptNoise() serves a Python initiator written from the spec",
  PYTHON_NOISE,
  async (python) => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const psk = generateNoisePsk();
    const peer = pythonPeer(python, [
      "initiator",
      String(listener.addr.port),
      hex(psk),
      "interop/1",
    ]);
    await using conn = await acceptNoise(await listener.accept(), psk, {
      prologue: "interop/1",
      timeout: 20_000,
    });
    assert.equal(await peer.next(), `hash ${hex(conn.handshakeHash)}`);
    const received: number[] = [];
    for (let i = 0; i < 10; i++) {
      const message = await conn.receive();
      if (message === null) break;
      received.push(message.length);
      await conn.send(message);
    }
    assert.deepEqual(received, [17, 0, 65519, 3]);
    await conn.closeWrite();
    const { code, rest } = await peer.finish();
    assert.deepEqual(rest, ["ok"]);
    assert.equal(code, 0);
  },
);

peerTest(
  "connectNoise() talks to a Python responder written from the spec",
  PYTHON_NOISE,
  async (python) => {
    const psk = generateNoisePsk();
    const peer = pythonPeer(python, ["responder", hex(psk), ""]);
    const port = Number((await peer.next()).replace("port ", ""));
    await using conn = await connectNoise(
      await Deno.connect({ hostname: "127.0.0.1", port }),
      hex(psk),
      { timeout: 20_000 },
    );
    // Our first transport message, the one the responder waits for, is
    // empty: a bare tag.
    assert.equal(
      await peer.next(),
      `hash ${hex(conn.handshakeHash)} first 0`,
    );
    const data = randomBytes(200_000);
    const reading = new Response(conn.readable).arrayBuffer();
    const writer = conn.writable.getWriter();
    await writer.write(bytes("hello from deno"));
    await writer.write(data);
    await writer.close();
    const echoed = new Uint8Array(await reading);
    assert.equal(text(echoed.subarray(0, 15)), "hello from deno");
    assert.deepEqual(echoed.subarray(15), data);
    const { code, rest } = await peer.finish();
    // 1 message, then 200000 bytes in 4 messages of at most 65519.
    assert.deepEqual(rest, ["ok 5"]);
    assert.equal(code, 0);
  },
);

peerTest(
  "acceptNoise() and connectNoise() refuse a Python peer with another PSK",
  PYTHON_NOISE,
  async (python) => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const initiator = pythonPeer(python, [
      "initiator",
      String(listener.addr.port),
      hex(generateNoisePsk()),
      "",
    ]);
    await assert.rejects(
      acceptNoise(await listener.accept(), generateNoisePsk()),
      (error: unknown) =>
        error instanceof AuthenticationError && error.reason === "wrong-key",
    );
    assert.deepEqual(await initiator.finish(), {
      code: 4,
      rest: ["error closed"],
    });

    const responder = pythonPeer(python, [
      "responder",
      hex(generateNoisePsk()),
      "",
    ]);
    const port = Number((await responder.next()).replace("port ", ""));
    await assert.rejects(
      connectNoise(
        await Deno.connect({ hostname: "127.0.0.1", port }),
        generateNoisePsk(),
      ),
      (error: unknown) =>
        error instanceof AuthenticationError && error.reason === "rejected",
    );
    assert.deepEqual(await responder.finish(), {
      code: 3,
      rest: ["error wrong-key"],
    });
  },
);

// ---------------------------------------------------------------------------
// The examples, end to end.

const EXAMPLES = new URL("../examples/", import.meta.url).pathname;

async function runNoiseExample(
  name: string,
  args: string[],
  env: Record<string, string>,
  killAfter = 30_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env=CONNAUTH_PSK",
      `${EXAMPLES}${name}`,
      ...args,
    ],
    env,
    stdin: "null",
    signal: AbortSignal.timeout(killAfter),
  }).output();
  return {
    code,
    stdout: new TextDecoder().decode(stdout).trim(),
    stderr: new TextDecoder().decode(stderr),
  };
}

/** Starts examples/noise_echo_server.ts on a free port; its log in `log`. */
async function startNoiseServer(psk: string) {
  const server = await startExample([
    "run",
    "--allow-net=127.0.0.1",
    "--allow-env=CONNAUTH_PSK",
    `${EXAMPLES}noise_echo_server.ts`,
    "--port",
    "0",
  ], { env: { CONNAUTH_PSK: psk } });
  return {
    port: server.port,
    log: server.log,
    /** Stops it with Ctrl-C; its exit code once its log is drained. */
    async stop(): Promise<number> {
      server.child.kill("SIGINT");
      await server.child.status;
      return (await server.stop()).code;
    },
  };
}

Deno.test("examples/noise_echo_server.ts and noise_echo_client.ts work end to end", async () => {
  const psk = hex(generateNoisePsk());
  const server = await startNoiseServer(psk);
  const { port, log } = server;
  let code: number;
  try {
    assert.notEqual(port, 0, log.join("\n"));
    const ok = await runNoiseExample(
      "noise_echo_client.ts",
      ["--port", String(port), "Hello", "Noise"],
      { CONNAUTH_PSK: psk },
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "Hello Noise");
    assert.ok(!ok.stderr.includes("demo"));

    const wrong = await runNoiseExample(
      "noise_echo_client.ts",
      ["--port", String(port)],
      { CONNAUTH_PSK: hex(generateNoisePsk()) },
    );
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /rejected our pre-shared key/);
    assert.equal(wrong.stdout, "");

    const demo = await runNoiseExample(
      "noise_echo_client.ts",
      ["--port", String(port)],
      {},
    );
    assert.equal(demo.code, 1);
    assert.match(demo.stderr, /public demo pre-shared key/);

    const bad = await runNoiseExample("noise_echo_client.ts", [], {
      CONNAUTH_PSK: "not hex",
    });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /CONNAUTH_PSK: expected 64 hexadecimal digits/);
  } finally {
    code = await server.stop(); // a graceful stop
  }
  assert.equal(code, 0, log.join("\n"));
  const text = log.join("\n");
  assert.match(text, /authentication failed \(wrong-key\)/);
  assert.ok(!text.includes(psk), "the log shows no key");
});

Deno.test("examples/noise_echo_server.ts stops at once on Ctrl-C with an idle client connected", async () => {
  const psk = hex(generateNoisePsk());
  const server = await startNoiseServer(psk);
  let conn: NoiseConn | undefined;
  let code: number;
  let elapsed: number;
  try {
    assert.notEqual(server.port, 0, server.log.join("\n"));
    conn = await connectNoise(
      await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      psk,
      { prologue: "connauth noise echo", timeout: 5000 },
    );
    // The handler runs (it echoes), then the client goes idle.
    await conn.send(bytes("hello"), { timeout: 5000 });
    assert.equal(text(await conn.receive({ timeout: 5000 })), "hello");
  } finally {
    const started = performance.now();
    code = await server.stop();
    elapsed = performance.now() - started;
  }
  // The server closed our connection on its way out.
  assert.equal(await conn!.receive({ timeout: 5000 }), null);
  conn!.close();
  assert.equal(code, 0, server.log.join("\n"));
  // serve()'s grace period is 5000 ms; an aborted pipe ends well before.
  assert.ok(elapsed < 2500, `stopped after ${elapsed} ms`);
});

Deno.test("examples/noise_echo_client.ts gives up after --timeout when the server goes silent after the handshake", async () => {
  const psk = hex(generateNoisePsk());
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  // Completes the handshake, then reads and answers nothing.
  const silent = listener.accept().then((conn) =>
    acceptNoise(conn, psk, { prologue: "connauth noise echo", timeout: 5000 })
  );
  const started = performance.now();
  const result = await runNoiseExample(
    "noise_echo_client.ts",
    ["--port", String(listener.addr.port), "--timeout", "300", "Hello"],
    { CONNAUTH_PSK: psk },
    10_000,
  );
  const elapsed = performance.now() - started;
  // A client that never connected must fail the test, not hang it.
  (await within(silent, 5000, "the client's handshake")).close();
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    result.stderr,
    /Cannot get the echo: Cannot receive a Noise message: timed out after \d+ ms/,
  );
  assert.equal(result.stdout, "");
  assert.ok(elapsed < 8000, `exited after ${elapsed} ms`);
  const help = await runNoiseExample("noise_echo_client.ts", ["--help"], {});
  assert.match(help.stdout, /--timeout MS\s+deadline for each step/);
});
