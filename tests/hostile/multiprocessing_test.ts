// Hostile peers against the multiprocessing listener (the mutual HMAC
// handshake, on TCP and on a Unix socket) and against an authenticated
// connection's frames. The test marked "regression" failed before the fix it
// names; the others confirm defences that already held.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { AuthenticationError, ProtocolError } from "../../errors.ts";
import {
  connectMultiprocessing,
  listenMultiprocessing,
  type MultiprocessingConnection,
  type MultiprocessingErrorInfo,
} from "../../multiprocessing.ts";
import {
  findPython,
  interopScript,
  lines,
  peerTest,
  spawn,
  within,
} from "../_helpers.ts";

const KEY = "hostile multiprocessing key";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.byteLength);
  new DataView(out.buffer).setInt32(0, payload.byteLength);
  out.set(payload, 4);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

async function readRaw(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  for (let filled = 0; filled < n;) {
    const count = await conn.read(out.subarray(filled));
    if (count === null) return null;
    filled += count;
  }
  return out;
}

async function readRawFrame(conn: Deno.Conn): Promise<Uint8Array | null> {
  const head = await readRaw(conn, 4);
  if (head === null) return null;
  const size = new DataView(head.buffer).getInt32(0);
  assert.ok(size >= 0 && size <= 256, `unexpected frame length ${size}`);
  return await readRaw(conn, size);
}

/** Reads until the listener closes the connection (or resets it). */
async function drain(conn: Deno.Conn, label: string): Promise<void> {
  const buffer = new Uint8Array(512);
  for (let i = 0; i < 100; i++) {
    const n = await within(conn.read(buffer), 5000, label).catch((error) => {
      if (error instanceof Deno.errors.ConnectionReset) return null;
      throw error;
    });
    if (n === null) return;
  }
  assert.fail(`${label}: the listener did not close the connection`);
}

/**
 * The client side of the handshake by hand (sha256), so that a test can
 * then write raw frames as an authenticated peer.
 */
async function rawAuthenticatedClient(port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const challenge = (await readRawFrame(conn))!;
  const message = challenge.subarray("#CHALLENGE#".length);
  const mac = createHmac("sha256", KEY).update(message).digest();
  await conn.write(frame(concat(encoder.encode("{sha256}"), mac)));
  assert.equal(decoder.decode((await readRawFrame(conn))!), "#WELCOME#");
  const ours = concat(
    encoder.encode("{sha256}"),
    crypto.getRandomValues(new Uint8Array(40)),
  );
  await conn.write(frame(concat(encoder.encode("#CHALLENGE#"), ours)));
  const answer = (await readRawFrame(conn))!;
  const expected = createHmac("sha256", KEY).update(ours).digest();
  assert.deepEqual(answer.subarray(8), new Uint8Array(expected));
  await conn.write(frame(encoder.encode("#WELCOME#")));
  return conn;
}

Deno.test("listenMultiprocessing() refuses a crowd of hostile peers, closes each, and keeps serving", async () => {
  const failures: unknown[] = [];
  const infos: MultiprocessingErrorInfo[] = [];
  let hookCalls = 0;
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    timeout: 300,
    maxPending: 4,
    onError(error, info) {
      failures.push(error);
      infos.push(info);
      hookCalls++;
      // A failing hook must not stop the listener.
      throw new Error("the hook fails too");
    },
  });
  const { port } = listener.addr;
  const sha256Answer = (bytes: number) =>
    frame(concat(encoder.encode("{sha256}"), new Uint8Array(bytes)));
  const hostile: [string, Uint8Array, "close" | "stay" | "leave", string][] = [
    [
      "HTTP",
      encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      "stay",
      "too-large",
    ],
    [
      "a TLS ClientHello",
      new Uint8Array([0x16, 3, 1, 0, 200, 1]),
      "stay",
      "too-large",
    ],
    [
      "a 2 GiB length",
      new Uint8Array([0x7f, 0xff, 0xff, 0xff]),
      "stay",
      "too-large",
    ],
    [
      "a -1 + 2^63 length",
      new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]),
      "stay",
      "too-large",
    ],
    [
      "a negative length",
      new Uint8Array([0xff, 0xff, 0xff, 0xfe]),
      "stay",
      "malformed",
    ],
    [
      "an answer cut short",
      sha256Answer(32).subarray(0, 20),
      "close",
      "closed",
    ],
    ["a wrong MAC", sha256Answer(32), "stay", "wrong-key"],
    ["a MAC of the wrong length", sha256Answer(31), "stay", "malformed"],
    [
      "an unknown digest",
      frame(concat(encoder.encode("{md4}"), new Uint8Array(16))),
      "stay",
      "unsupported",
    ],
    [
      "garbage",
      frame(crypto.getRandomValues(new Uint8Array(256))),
      "stay",
      "malformed",
    ],
    ["an early close", new Uint8Array(0), "close", "closed"],
    [
      "a peer that writes and goes away",
      new Uint8Array([0, 0, 0, 40, 1, 2]),
      "leave",
      "any",
    ],
    ["a stall", new Uint8Array(0), "stay", "TimeoutError"],
  ];
  // maxPending at a time, so that none is evicted and each meets its own
  // error. (A slot that leaked could not stall the rest: pending handshakes
  // never pause the accept loop, and a leaked one, the oldest, would be the
  // first evicted.)
  for (let i = 0; i < hostile.length; i += 4) {
    await Promise.all(
      hostile.slice(i, i + 4).map(async ([label, data, then]) => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          if (data.byteLength) await conn.write(data);
          if (then === "leave") return;
          if (then === "close") await conn.closeWrite();
          await drain(conn, label);
        } finally {
          conn.close();
        }
      }),
    );
  }
  // An honest client gets in, so every slot was given back.
  await using client = await connectMultiprocessing({ port, authkey: KEY });
  await using server = await within(listener.accept(), 5000, "accept");
  await client.sendText("still serving");
  assert.equal(await server.recvText({ timeout: 5000 }), "still serving");
  for (let i = 0; i < 100 && failures.length < hostile.length; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(failures.length, hostile.length);
  assert.equal(hookCalls, hostile.length);
  for (const info of infos) {
    assert.equal(info.phase, "handshake");
    assert.equal(info.remoteAddr?.transport, "tcp");
  }
  const reasons = failures.map((error) =>
    error instanceof ProtocolError || error instanceof AuthenticationError
      ? error.reason
      : error instanceof DOMException
      ? error.name
      : "other"
  );
  for (const [label, , , expected] of hostile) {
    if (expected === "any") continue;
    const index = reasons.indexOf(expected);
    assert.ok(index >= 0, `${label}: no ${expected} in ${reasons}`);
    reasons.splice(index, 1);
  }
});

// Regression: every connection got a 64 KiB read buffer at accept, before
// its peer had sent a byte (6.4 MiB for 100 silent peers).
Deno.test("listenMultiprocessing() spends little memory on peers that connect and say nothing", async () => {
  const COUNT = 64;
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    maxPending: COUNT,
  });
  const conns: Deno.Conn[] = [];
  const before = Deno.memoryUsage().external;
  try {
    for (let i = 0; i < COUNT; i++) {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: listener.addr.port,
      });
      conns.push(conn);
      // Its handshake has started: the challenge is here.
      assert.ok(await within(readRawFrame(conn), 5000, "the challenge"));
    }
    const grown = Deno.memoryUsage().external - before;
    // About 0.6 KiB each now; 64 KiB each before.
    assert.ok(
      grown < COUNT * 16 * 1024,
      `${COUNT} silent peers cost ${Math.round(grown / 1024)} KiB`,
    );
  } finally {
    for (const conn of conns) conn.close();
  }
  // The buffer grows once a peer authenticates: large messages still pass.
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using server = await within(listener.accept(), 5000, "accept");
  const big = crypto.getRandomValues(new Uint8Array(65536));
  const messages = [new Uint8Array(100), big, new Uint8Array(300_000)];
  for (const message of messages) await client.sendBytes(message);
  for (const message of messages) {
    assert.deepEqual(await server.recvBytes({ timeout: 5000 }), message);
  }
});

Deno.test("MultiprocessingConnection.recvBytes() refuses lying, negative and truncated lengths from an authenticated raw peer", async () => {
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    maxMessageSize: 1024,
  });
  const cases: [string, Uint8Array, boolean, RegExp][] = [
    [
      "a length over maxMessageSize",
      new Uint8Array([0, 0, 4, 1]),
      false,
      /announced 1025 bytes/,
    ],
    [
      "a -1 + 2^64-1 length",
      new Uint8Array([0xff, 0xff, 0xff, 0xff, ...new Uint8Array(8).fill(0xff)]),
      false,
      /announced 18446744073709551615 bytes/,
    ],
    [
      "a negative length",
      new Uint8Array([0x80, 0, 0, 0]),
      false,
      /negative length/,
    ],
    [
      "a message cut short",
      new Uint8Array([0, 0, 0, 10, 1, 2, 3]),
      true,
      /after 3 of 10 bytes/,
    ],
    ["a length cut short", new Uint8Array([0, 0]), true, /after 2 of 4 bytes/],
  ];
  for (const [label, bytes, close, pattern] of cases) {
    using raw = await rawAuthenticatedClient(listener.addr.port);
    await using server: MultiprocessingConnection = await within(
      listener.accept(),
      5000,
      label,
    );
    await raw.write(bytes);
    if (close) await raw.closeWrite();
    await assert.rejects(
      within(server.recvBytes(), 5000, label),
      (error: unknown) => {
        assert.ok(error instanceof ProtocolError, `${label}: got ${error}`);
        assert.match(error.message, pattern, label);
        return true;
      },
    );
    // The error sticks: the stream cannot be read on in step.
    await assert.rejects(server.recvBytes(), ProtocolError);
  }
});

Deno.test("MultiprocessingConnection.recvBytes() with maxMessageSize Infinity refuses a length no array can hold, before reading it", async () => {
  await using listener = await listenMultiprocessing({
    authkey: KEY,
    maxMessageSize: Infinity,
  });
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "a -1 + 2^64-1 length",
      new Uint8Array([0xff, 0xff, 0xff, 0xff, ...new Uint8Array(8).fill(0xff)]),
      /announced 18446744073709551615 bytes, over the maxMessageSize limit of Infinity bytes/,
    ],
    [
      "a -1 + 2^52 length",
      new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0x10, 0, 0, 0, 0, 0, 0]),
      /announced 4503599627370496 bytes, more than this process can allocate/,
    ],
  ];
  for (const [label, bytes, pattern] of cases) {
    using raw = await rawAuthenticatedClient(listener.addr.port);
    await using server = await within(listener.accept(), 5000, label);
    await raw.write(bytes);
    await assert.rejects(
      within(server.recvBytes(), 5000, label),
      (error: unknown) => {
        assert.ok(error instanceof ProtocolError, `${label}: got ${error}`);
        assert.equal(error.reason, "too-large", label);
        assert.match(error.message, pattern, label);
        return true;
      },
    );
  }
  // Below what the process can allocate, no limit means no limit.
  using raw = await rawAuthenticatedClient(listener.addr.port);
  await using server = await within(listener.accept(), 5000, "accept");
  await raw.write(frame(new Uint8Array(100_000).fill(7)));
  assert.deepEqual(
    await within(server.recvBytes(), 5000, "a message"),
    new Uint8Array(100_000).fill(7),
  );
});

// Unix sockets: the listener runs as its own process, which Deno allows the
// socket's exact path (the test task only allows 127.0.0.1); the hostile
// clients are a few lines of Python.
const PYTHON = { label: "python3", path: findPython("3") };

const HOSTILE_UNIX_CLIENT = `
import socket, sys
path, payload, then = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(path)
s.sendall(payload)
if then == "close":
    s.shutdown(socket.SHUT_WR)
while s.recv(512):
    pass
print("closed", flush=True)
`;

peerTest(
  "listenMultiprocessing() on a Unix socket refuses hostile peers and keeps serving",
  PYTHON,
  async (python) => {
    const dir = await Deno.makeTempDir({ prefix: "connauth_hostile_mp_" });
    const path = `${dir}/mp.sock`;
    const keyHex = Array.from(
      encoder.encode(KEY),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    const peer = new URL("../_multiprocessing_peer.ts", import.meta.url)
      .pathname;
    const deno = (args: string[]) =>
      spawn(Deno.execPath(), [
        "run",
        `--allow-net=unix:${path}`,
        `--allow-read=${path}`,
        `--allow-write=${path}`,
        peer,
        ...args,
        "--path",
        path,
        "--authkey-hex",
        keyHex,
      ], { timeout: 60_000 });
    const listener = deno(["listener", "--session", "echo"]);
    listener.stdin.close();
    const events = lines(listener.stdout);
    const next = async () => {
      const { value, done } = await within(events.next(), 20_000, "an event");
      assert.ok(!done, "the listener ended early");
      return JSON.parse(value);
    };
    try {
      assert.deepEqual(await next(), { event: "listening", path });
      const hostile: [string, string, string][] = [
        ["HTTP", "GET / HTTP/1.1\r\n\r\n", "too-large"],
        ["a negative length", "\xff\xff\xff\xfe", "malformed"],
        ["an early close", "", "closed"],
      ];
      for (const [label, payload, reason] of hostile) {
        const bytes = Uint8Array.from(payload, (c) => c.charCodeAt(0));
        const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0"))
          .join("");
        const { code, stdout, stderr } = await new Deno.Command(python, {
          args: ["-c", HOSTILE_UNIX_CLIENT, path, hex, "close"],
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(20_000),
        }).output();
        assert.equal(code, 0, `${label}: ${decoder.decode(stderr)}`);
        assert.equal(decoder.decode(stdout).trim(), "closed", label);
        const event = await next();
        assert.equal(event.event, "handshake-error", label);
        assert.equal(event.reason, reason, label);
      }
      // The key holder is served after them.
      const client = deno([
        "client",
        "--session",
        "roundtrip",
        "--sizes",
        "0,5",
      ]);
      client.stdin.close();
      const clientOut = await new Response(client.stdout).text();
      await new Response(client.stderr).text();
      await client.status;
      assert.deepEqual(
        clientOut.trim().split("\n").map((line) => JSON.parse(line)),
        [
          { event: "authenticated", peerDigest: "sha256" },
          { event: "done", checked: 2 },
        ],
      );
      assert.deepEqual(await next(), {
        event: "authenticated",
        peerDigest: "sha256",
      });
      assert.deepEqual(await next(), { event: "done", echoed: 2 });
    } finally {
      await events.return(undefined);
      await new Response(listener.stderr).text().catch(() => "");
      await listener.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// Regression: a failed accept (a client that reset its connection before it
// was accepted, the process out of file descriptors) was never reported;
// only handshake failures reached the hook. Now both go to onError, each
// with its phase.
peerTest(
  "listenMultiprocessing() reports connections reset before accept to onError (phase accept) and keeps serving",
  PYTHON,
  async (python) => {
    const COUNT = 50;
    const reports: { error: unknown; info: MultiprocessingErrorInfo }[] = [];
    await using listener = await listenMultiprocessing({
      authkey: KEY,
      onError: (error, info) => reports.push({ error, info }),
    });
    // Synchronous: this process's event loop (and the listener's accept
    // loop) waits until every reset connection is queued in the backlog.
    const output = new Deno.Command(python, {
      args: [
        interopScript("reset_burst.py"),
        "127.0.0.1",
        String(listener.addr.port),
        String(COUNT),
      ],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    assert.equal(decoder.decode(output.stdout).trim(), `reset ${COUNT}`);
    await using client = await connectMultiprocessing({
      port: listener.addr.port,
      authkey: KEY,
      timeout: 10_000,
    });
    await using server = await within(listener.accept(), 10_000, "accept");
    await client.sendText("served");
    assert.equal(await server.recvText({ timeout: 5000 }), "served");
    const accepts = reports.filter(({ info }) => info.phase === "accept");
    assert.ok(accepts.length > 0, "no failed accept was reported");
    assert.ok(accepts.length <= COUNT);
    for (const { error, info } of accepts) {
      assert.ok(error instanceof Deno.errors.NotConnected, String(error));
      assert.equal(info.remoteAddr, undefined);
    }
    // Whatever was accepted before its reset failed its handshake instead,
    // reported with the peer's address.
    for (const { info } of reports) {
      if (info.phase === "handshake") {
        assert.equal(info.remoteAddr?.transport, "tcp");
      }
    }
  },
);

// Regression: the listener stopped accepting while `maxPending` handshakes
// were in progress, so an address holding that many silent sockets, and
// re-opening each one as it was closed, kept every other client out: each
// socket held its place for `timeout` (10 s), and the backlog behind it was
// the flood's too. Now the listener keeps accepting and, with its budget
// full, closes the oldest unauthenticated connection of the address that
// holds the most: the flood's own. tests/interop/silent_flood.py binds each
// silent socket to its own 127.0.1.x source; the good clients come from
// 127.0.0.1, one at a time.

/**
 * How long a good client may take, connect to echo. Before the fix none
 * was served within 15 s under this flood.
 */
const SERVED_WITHIN = 2000;
/** Good clients of each kind, one after another, while the flood lasts. */
const PROBES = 5;

interface FloodReport {
  ready?: boolean;
  done?: boolean;
  held: number;
  opened: number;
  closed: number;
}

/**
 * Runs silent_flood.py against `port` (at most 60 s) while `body` runs,
 * then stops it (its standard input closes) and returns its last report.
 */
async function withFlood(
  python: string,
  port: number,
  addresses: number,
  perAddress: number,
  body: () => Promise<void>,
): Promise<FloodReport> {
  const child = spawn(python, [
    interopScript("silent_flood.py"),
    "127.0.0.1",
    String(port),
    String(addresses),
    String(perAddress),
    "60",
  ], { timeout: 90_000 });
  const stdout = lines(child.stdout);
  const stderr = new Response(child.stderr).text();
  let last: FloodReport | undefined;
  try {
    const first = await within(stdout.next(), 20_000, "the flood's start");
    assert.ok(!first.done, "the flood did not start");
    assert.equal((JSON.parse(first.value) as FloodReport).ready, true);
    await body();
  } finally {
    await child.stdin.close().catch(() => {});
    for await (const line of stdout) last = JSON.parse(line);
    await child.status;
  }
  assert.ok(last?.done, `the flood did not finish: ${await stderr}`);
  await stderr;
  return last!;
}

/** Connects, sends one message, waits for its echo; the time it took, in ms. */
async function denoProbe(port: number, index: number): Promise<number> {
  const start = performance.now();
  await using client = await connectMultiprocessing({
    port,
    authkey: KEY,
    timeout: SERVED_WITHIN,
  });
  await client.sendText(`deno ${index}`);
  assert.equal(
    await client.recvText({ timeout: SERVED_WITHIN }),
    `deno ${index}`,
  );
  return performance.now() - start;
}

for (const version of ["3.12", "3.13"]) {
  peerTest(
    `listenMultiprocessing() with maxPending 8 serves connectMultiprocessing() and a Python ${version} Client within ${SERVED_WITHIN} ms, ${PROBES} times each, while 4 addresses x 8 silent sockets are held and re-opened`,
    { label: `python${version}`, path: findPython(version) },
    async (python) => {
      const evicted = new Map<string, number>();
      const goodClientErrors: unknown[] = [];
      const listener = await listenMultiprocessing({
        authkey: KEY,
        maxPending: 8,
        onError(error, info) {
          const host = (info.remoteAddr as Deno.NetAddr | undefined)?.hostname;
          if (host === "127.0.0.1") goodClientErrors.push(error);
          if (
            info.phase === "handshake" && error instanceof DOMException &&
            error.name === "AbortError" &&
            /evicted to make room for others \(maxPending 8\)/.test(
              error.message,
            )
          ) {
            evicted.set(String(host), (evicted.get(String(host)) ?? 0) + 1);
          }
        },
      });
      const { port } = listener.addr;
      // Echoes one message on each connection, then closes it.
      const echoes = new Set<Promise<void>>();
      const serving = (async () => {
        for await (const conn of listener) {
          const echo = (async () => {
            await using server = conn;
            const message = await server.recvBytes({ timeout: 10_000 });
            if (message !== null) await server.sendBytes(message);
          })().catch(() => {});
          echoes.add(echo);
          echo.then(() => echoes.delete(echo));
        }
      })();
      const deno: number[] = [];
      const pythonLines: { client: number; ms: number; error?: string }[] = [];
      let report: FloodReport;
      try {
        report = await withFlood(python, port, 4, 8, async () => {
          for (let i = 0; i < PROBES; i++) {
            deno.push(await denoProbe(port, i));
            const { code, stdout, stderr } = await new Deno.Command(python, {
              args: [
                interopScript("mp_clients.py"),
                "127.0.0.1",
                String(port),
                Array.from(
                  encoder.encode(KEY),
                  (b) => b.toString(16).padStart(2, "0"),
                ).join(""),
                "1",
                String(SERVED_WITHIN / 1000),
              ],
              stdout: "piped",
              stderr: "piped",
              signal: AbortSignal.timeout(30_000),
            }).output();
            assert.equal(code, 0, decoder.decode(stderr));
            pythonLines.push(JSON.parse(decoder.decode(stdout)));
          }
        });
      } finally {
        await listener[Symbol.asyncDispose]();
        await serving;
        await Promise.all(echoes);
      }
      assert.equal(deno.length, PROBES, `Deno clients served: ${deno}`);
      assert.deepEqual(
        pythonLines.filter((line) => line.error !== undefined),
        [],
        "a Python client was not served",
      );
      assert.equal(pythonLines.length, PROBES);
      assert.deepEqual(goodClientErrors, [], "a good client failed");
      // The flood was really there: its sockets were evicted, and re-opened.
      assert.ok(
        report.closed > 0 && report.opened > 32,
        JSON.stringify(report),
      );
      assert.ok(evicted.size > 0, "nothing was evicted: nothing was tested");
      for (const host of evicted.keys()) {
        assert.match(host, /^127\.0\.1\.[1-4]$/, "a good client was evicted");
      }
    },
  );
}
