// Tests for server.ts: serve() under load, silent and hostile clients,
// limits, throttling, errors in handlers and peers, shutdown; connect().
import assert from "node:assert/strict";
import {
  type AuthFailureInfo,
  connect,
  type ConnectionInfo,
  type RefuseInfo,
  serve,
  type ServeErrorInfo,
  type ServeListener,
  type ServeOptions,
  type Server,
  type ServerConn,
} from "../server.ts";
import { AuthenticationError, ProtocolError } from "../errors.ts";
import {
  clientAuthenticate,
  HmacKey,
  serverAuthenticate,
} from "../handshake.ts";
import { closeQuietly } from "../_conn_io.ts";
import {
  findPython,
  interopScript,
  lines,
  peerTest,
  type RunningExample,
  spawn,
  startExample,
  within,
} from "./_helpers.ts";

const KEY = "peanut butter";
const HELLO = new TextEncoder().encode("Hello World");

function portOf(server: Server): number {
  return (server.addr as Deno.NetAddr).port;
}

async function echo(conn: ServerConn): Promise<void> {
  await conn.readable.pipeTo(conn.writable);
}

function echoServer(options: Partial<ServeOptions> = {}): Server {
  return serve(
    { hostname: "127.0.0.1", port: 0, secret: KEY, log: false, ...options },
    echo,
  );
}

/** Reads a stream to its end. */
async function readAll(
  readable: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of readable) chunks.push(chunk);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Reads exactly n bytes; null on EOF (or a reset) before all arrive. */
async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const buffer = new Uint8Array(n);
  let offset = 0;
  while (offset < n) {
    let count: number | null;
    try {
      count = await conn.read(buffer.subarray(offset));
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return null;
      throw error;
    }
    if (count === null) return null;
    offset += count;
  }
  return buffer;
}

/** Resolves when the peer closes (EOF or reset); rejects after `ms`. */
async function waitClosed(conn: Deno.Conn, ms: number): Promise<void> {
  const buffer = new Uint8Array(256);
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // closed meanwhile
    }
  }, ms);
  try {
    while (true) {
      let count: number | null;
      try {
        count = await conn.read(buffer);
      } catch (error) {
        if (error instanceof Deno.errors.ConnectionReset) return;
        if (error instanceof Deno.errors.BadResource) {
          throw new Error(`the server did not close within ${ms} ms`);
        }
        throw error;
      }
      if (count === null) return;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Connects, authenticates, sends Hello World, checks the echo, closes. */
async function helloRoundTrip(
  port: number,
  key = KEY,
  timeout = 20_000,
): Promise<void> {
  const conn = await connect({ port, secret: key, timeout });
  try {
    await conn.write(HELLO);
    const reply = await readN(conn, HELLO.length);
    assert.deepEqual(reply, HELLO);
  } finally {
    conn.close();
  }
}

/** Asserts that a new connection to `port` gets no challenge. */
async function assertNotServed(port: number): Promise<void> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (error) {
    assert.ok(
      error instanceof Deno.errors.ConnectionRefused ||
        error instanceof Deno.errors.ConnectionReset,
      String(error),
    );
    return;
  }
  try {
    assert.equal(await readN(conn, 1), null);
  } finally {
    conn.close();
  }
}

/** Polls `condition` every 10 ms; throws after `ms`. */
async function waitFor(
  condition: () => boolean,
  ms: number,
  what: string,
): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A listener on two loopback ports: connections to `port` show their real
 * address, connections to `aliasPort` appear to come from `alias` (set it
 * before connecting), so one test can be several clients.
 */
function aliasListener(): {
  listener: ServeListener;
  aliasPort: number;
  alias: string;
} {
  const real = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const aliased = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = { alias: "192.0.2.1" };
  const pending: (Promise<ServerConn> | undefined)[] = [undefined, undefined];
  const disguise = (conn: Deno.Conn): ServerConn => {
    const remoteAddr: Deno.NetAddr = {
      transport: "tcp",
      hostname: state.alias,
      port: (conn.remoteAddr as Deno.NetAddr).port,
    };
    return new Proxy(conn, {
      get(target, property) {
        if (property === "remoteAddr") return remoteAddr;
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
  const listener: ServeListener = {
    addr: real.addr,
    async accept() {
      pending[0] ??= real.accept();
      pending[1] ??= aliased.accept().then(disguise);
      const { index, conn } = await Promise.race(
        pending.map((promise, index) =>
          promise!.then((conn) => ({ index, conn }))
        ),
      );
      pending[index] = undefined;
      return conn;
    },
    close() {
      real.close();
      aliased.close();
    },
    async *[Symbol.asyncIterator]() {
      while (true) yield await listener.accept();
    },
  };
  return {
    listener,
    aliasPort: aliased.addr.port,
    get alias() {
      return state.alias;
    },
    set alias(value: string) {
      state.alias = value;
    },
  };
}

/**
 * One client of a wrong-key flood that does not wait: until `stopAt` (at
 * most `attempts` times) it connects, waits at most 100 ms for the
 * challenge, sends a wrong digest if one came, and closes at once.
 */
async function wrongKeyFlooder(
  port: number,
  stopAt: number,
  attempts: number,
  counts: { guesses: number },
): Promise<void> {
  for (let i = 0; i < attempts && Date.now() < stopAt; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const timer = setTimeout(() => closeQuietly(conn), 100);
    try {
      const challenge = await readN(conn, 32);
      if (challenge) {
        await conn.write(new Uint8Array(32));
        counts.guesses++;
      }
    } catch {
      // closed by the timer, or by the server
    } finally {
      clearTimeout(timer);
      closeQuietly(conn);
    }
  }
}

Deno.test("serve() authenticates and echoes 500 clients at once", async () => {
  let connections = 0;
  await using server = echoServer({
    maxPerAddress: 1000, // every test client is 127.0.0.1
    onConnection: () => connections++,
  });
  const port = portOf(server);
  await Promise.all(
    Array.from({ length: 500 }, () => helloRoundTrip(port)),
  );
  assert.equal(connections, 500);
  assert.equal(server.stats.authenticated, 500);
});

Deno.test("serve() serves a good client within a second while 200 silent sockets wait, and closes them at the deadline", async () => {
  const handshakeTimeout = 1500;
  const errors: unknown[] = [];
  await using server = echoServer({
    handshakeTimeout,
    maxPerAddress: 1000,
    onError: (error) => errors.push(error),
  });
  const port = portOf(server);
  const silentStart = Date.now();
  const silent = await Promise.all(
    Array.from(
      { length: 200 },
      () => Deno.connect({ hostname: "127.0.0.1", port }),
    ),
  );
  try {
    await waitFor(
      () => server.stats.handshaking === 200,
      5000,
      "200 silent handshakes",
    );
    const start = performance.now();
    await helloRoundTrip(port);
    const elapsed = performance.now() - start;
    assert.ok(elapsed < 1000, `the good client took ${elapsed} ms`);

    // Every silent socket is closed by the server at its deadline, not before.
    await Promise.all(silent.map((conn) => waitClosed(conn, 10_000)));
    const closedAfter = Date.now() - silentStart;
    assert.ok(
      closedAfter >= handshakeTimeout - 100,
      `silent sockets closed after ${closedAfter} ms`,
    );
    await waitFor(() => server.stats.open === 0, 5000, "all closed");
    assert.equal(errors.length, 200);
    for (const error of errors) {
      assert.ok(error instanceof DOMException);
      assert.equal(error.name, "TimeoutError");
      assert.match(error.message, /timed out after 1500 ms/);
    }
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("serve() closes silent sockets that expire together at most 64 per 10 ms, so that a flood does not come back at once", async () => {
  // 200 clients wait in the listen backlog before the server starts: it
  // accepts them all within a few ms, so their deadlines fall together.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const silent = await Promise.all(
    Array.from(
      { length: 200 },
      () => Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    ),
  );
  const closedAt: number[] = [];
  try {
    await using server = serve({
      listener,
      secret: KEY,
      log: false,
      handshakeTimeout: 300,
      maxPerAddress: 1000,
      onError: () => closedAt.push(performance.now()),
    }, echo);
    await waitFor(() => server.stats.accepted === 200, 5000, "200 accepted");
    await waitFor(() => closedAt.length === 200, 5000, "200 expired");
    // 64 in one window of 10 ms, 64 in the next, ...: never more than 128
    // within 10 ms, and four windows in all.
    for (let i = 0; i + 128 < closedAt.length; i++) {
      const gap = closedAt[i + 128] - closedAt[i];
      assert.ok(
        gap >= 9,
        `closes ${i} and ${i + 128} ${gap.toFixed(1)} ms apart`,
      );
    }
    const spread = closedAt[199] - closedAt[0];
    assert.ok(spread >= 25, `200 closed within ${spread.toFixed(1)} ms`);
    await Promise.all(silent.map((conn) => waitClosed(conn, 5000)));
    assert.equal(server.stats.open, 0);
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("serve() pauses an address after each wrong key, doubling up to maxDelay, and a good client from it waits its turn", async () => {
  const failures: AuthFailureInfo[] = [];
  await using server = echoServer({
    throttle: { delay: 50, maxDelay: 400 },
    onAuthFailure: (info) => failures.push(info),
  });
  const port = portOf(server);
  const pauses = [0, 50, 100, 200, 400, 400];
  const waits: number[] = [];
  const closes: number[] = [];
  for (let i = 0; i < pauses.length; i++) {
    const start = performance.now();
    // Resolves once the challenge arrives: after the address's pause.
    using conn = await connect({ port, secret: "wrong", timeout: 5000 });
    waits.push(performance.now() - start);
    const sent = performance.now();
    await waitClosed(conn, 5000);
    closes.push(performance.now() - sent);
  }
  // The failed connection is closed at once, the next one waits: the
  // pause is on the address, not on the connection.
  for (let i = 0; i < pauses.length; i++) {
    assert.ok(
      waits[i] >= pauses[i] - 25,
      `waits ${waits.map(Math.round)} for pauses ${pauses}`,
    );
    assert.ok(closes[i] < 300, `closed after ${closes.map(Math.round)} ms`);
  }
  assert.deepEqual(failures.map((f) => f.delay), [50, 100, 200, 400, 400, 400]);
  assert.deepEqual(failures.map((f) => f.failures), [1, 2, 3, 4, 5, 6]);
  for (const info of failures) {
    assert.ok(info.error instanceof AuthenticationError);
    assert.equal(info.error.reason, "wrong-key");
  }
  // A good client from the address waits out the pause too, then gets in;
  // its success adds no pause, so the next one is served at once.
  let start = performance.now();
  await helloRoundTrip(port);
  assert.ok(performance.now() - start >= 375);
  start = performance.now();
  await helloRoundTrip(port);
  const next = performance.now() - start;
  assert.ok(next < 200, `the next good client took ${next} ms`);
  assert.equal(failures.length, 6);
  assert.equal(server.stats.authenticated, 2);
});

Deno.test("serve() with default limits lets a good client in from the address of a wrong-key flood that does not wait", async () => {
  const refused: RefuseInfo[] = [];
  let failures = 0;
  await using server = echoServer({
    onRefuse: (info) => refused.push(info),
    onAuthFailure: () => failures++,
  });
  const port = portOf(server);
  // 50 clients from 127.0.0.1 guessing for 1.5 s, none waiting for a
  // verdict (or, past 100 ms, for a challenge).
  const flooders = 50;
  const counts = { guesses: 0 };
  const flood = Promise.all(
    Array.from(
      { length: flooders },
      () => wrongKeyFlooder(port, Date.now() + 1500, 1000, counts),
    ),
  );
  await delay(300);
  // The good client, from the same address, retries until it gets in. The
  // address is paused for up to maxDelay (10 s) after the flood's failures,
  // and while the flood lasts the good client's connections may be closed
  // as throttled; then it gets its turn.
  const start = performance.now();
  let servedAfter = -1;
  let attempts = 0;
  while (servedAfter < 0 && performance.now() - start < 25_000) {
    attempts++;
    try {
      await helloRoundTrip(port, KEY, 15_000);
      servedAfter = performance.now() - start;
    } catch (error) {
      assert.ok(
        error instanceof ProtocolError ||
          error instanceof Deno.errors.ConnectionReset,
        String(error),
      );
      await delay(100);
    }
  }
  await flood;
  assert.ok(servedAfter >= 0, `not served in ${attempts} attempts`);
  assert.ok(servedAfter < 15_000, `served after ${servedAfter} ms`);
  // Never shut out as max-per-address, and the guesses were bounded: the
  // handshakes started before the first failure was counted (each
  // flooder's first one or two, as the event loop interleaves them), then
  // one per pause, none of which ends within the flood.
  const shutOut = refused.filter((info) => info.reason !== "throttled");
  assert.equal(shutOut.length, 0, `refused as ${shutOut[0]?.reason}`);
  assert.ok(failures >= 1 && failures <= 4 * flooders, `${failures} failures`);
  assert.equal(failures, counts.guesses);
  assert.equal(server.stats.authenticated, 1);
});

Deno.test("serve() bounds wrong-key guesses per address with maxPerAddress: Infinity, and the flood starves no other address", async () => {
  const aliased = aliasListener();
  aliased.alias = "192.0.2.7";
  const failures: number[] = [];
  const maxDelay = 200;
  await using server = serve({
    listener: aliased.listener,
    secret: KEY,
    log: false,
    maxPerAddress: Infinity,
    maxConnections: 200,
    throttle: { delay: 100, maxDelay },
    onAuthFailure: () => failures.push(performance.now()),
  }, echo);
  const port = portOf(server);
  const flooders = 40;
  const floodMs = 2000;
  const start = performance.now();
  const counts = { guesses: 0 };
  const flood = Promise.all(
    Array.from(
      { length: flooders },
      () => wrongKeyFlooder(port, Date.now() + floodMs, 1000, counts),
    ),
  );
  let flooding = true;
  void flood.finally(() => flooding = false);
  let maxWaiting = 0;
  let maxOpen = 0;
  const sampler = (async () => {
    while (flooding) {
      maxWaiting = Math.max(maxWaiting, server.stats.waiting);
      maxOpen = Math.max(maxOpen, server.stats.open);
      await delay(10);
    }
  })();
  // Meanwhile a client from another address is served without delay.
  const other: number[] = [];
  while (flooding) {
    const began = performance.now();
    await helloRoundTrip(aliased.aliasPort, KEY, 5000);
    other.push(performance.now() - began);
    await delay(100);
  }
  await Promise.all([flood, sampler]);
  const end = performance.now();
  assert.ok(other.length >= 5, `${other.length} round trips`);
  assert.ok(
    other.every((ms) => ms < 1000),
    `other address: ${other.map(Math.round)} ms`,
  );
  // One burst (the handshakes in flight at the first failure), then at most
  // one guess per pause, whatever the concurrency.
  const late = failures.filter((t) => t - start > 500).length;
  const bound = Math.ceil((end - start - 500) / maxDelay) + 2;
  assert.ok(late <= bound, `${late} guesses after 500 ms (bound ${bound})`);
  assert.ok(
    failures.length - late <= 4 * flooders,
    `${failures.length - late} guesses in the first 500 ms`,
  );
  assert.equal(failures.length, counts.guesses);
  // Waiting connections are capped per address; nothing piles up.
  assert.ok(maxWaiting <= 32, `${maxWaiting} waiting`);
  assert.ok(maxOpen < 100, `${maxOpen} open`);
  assert.equal(server.stats.authenticated, other.length);
});

Deno.test("serve() closes the oldest waiting connection past maxWaiting, and a waiting one at its deadline, as throttled", async () => {
  const refused: RefuseInfo[] = [];
  await using server = echoServer({
    handshakeTimeout: 1000,
    throttle: { delay: 10_000, maxWaiting: 2 },
    onRefuse: (info) => refused.push(info),
  });
  const port = portOf(server);
  // One wrong key: closed at once, the address paused for 10 s.
  {
    const start = performance.now();
    using bad = await connect({ port, secret: "wrong" });
    await waitClosed(bad, 5000);
    assert.ok(performance.now() - start < 500);
  }
  const open = async (nth: number) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await waitFor(
      () => server.stats.accepted === 1 + nth,
      5000,
      `connection ${nth} accepted`,
    );
    return conn;
  };
  const a = await open(1);
  const b = await open(2);
  try {
    assert.equal(server.stats.waiting, 2);
    const c = await open(3); // a, the oldest, is closed to make room
    const start = performance.now();
    try {
      await waitClosed(a, 500);
      assert.deepEqual(refused.map((r) => r.reason), ["throttled"]);
      // b and c get no challenge and are closed at their deadline.
      await waitClosed(b, 3000);
      await waitClosed(c, 3000);
      const elapsed = performance.now() - start;
      assert.ok(elapsed >= 800, `closed after ${elapsed} ms`);
      assert.deepEqual(refused.map((r) => r.reason), [
        "throttled",
        "throttled",
        "throttled",
      ]);
      assert.equal(server.stats.open, 0);
    } finally {
      closeQuietly(c);
    }
  } finally {
    closeQuietly(a);
    closeQuietly(b);
  }
});

Deno.test("serve() with throttle: false closes failures at once and counts nothing", async () => {
  const failures: AuthFailureInfo[] = [];
  await using server = echoServer({
    throttle: false,
    onAuthFailure: (info) => failures.push(info),
  });
  const port = portOf(server);
  for (let i = 0; i < 3; i++) {
    using conn = await connect({ port, secret: "wrong" });
    await waitClosed(conn, 5000);
  }
  await waitFor(() => server.stats.open === 0, 5000, "all closed");
  assert.deepEqual(failures.map((f) => [f.failures, f.delay]), [
    [0, 0],
    [0, 0],
    [0, 0],
  ]);
});

Deno.test("serve() refuses an address for banFor after banAfter failures, even with the right key", async () => {
  const refused: RefuseInfo[] = [];
  await using server = echoServer({
    throttle: { delay: 0, banAfter: 2, banFor: 60_000 },
    onRefuse: (info) => refused.push(info),
  });
  const port = portOf(server);
  for (let i = 0; i < 2; i++) {
    using conn = await connect({ port, secret: "wrong" });
    await waitClosed(conn, 5000);
  }
  // Banned now: closed before any challenge is sent.
  await assert.rejects(
    connect({ port, secret: KEY }),
    (error: unknown) =>
      error instanceof ProtocolError && error.reason === "closed" ||
      error instanceof Deno.errors.ConnectionReset,
  );
  assert.equal(refused.length, 1);
  assert.equal(refused[0].reason, "banned");
  assert.equal(server.stats.authenticated, 0);
});

Deno.test("serve() closes the newest connection past maxPerAddress and keeps the others", async () => {
  const refused: RefuseInfo[] = [];
  await using server = echoServer({
    maxPerAddress: 3,
    onRefuse: (info) => refused.push(info),
  });
  const port = portOf(server);
  const held = await Promise.all(
    Array.from({ length: 3 }, () => connect({ port, secret: KEY })),
  );
  try {
    await waitFor(() => server.stats.active === 3, 5000, "3 active");
    await assert.rejects(
      connect({ port, secret: KEY }),
      (error: unknown) =>
        error instanceof ProtocolError && error.reason === "closed" ||
        error instanceof Deno.errors.ConnectionReset,
    );
    assert.deepEqual(refused.map((r) => r.reason), ["max-per-address"]);
    // The first three still work.
    for (const conn of held) {
      await conn.write(HELLO);
      assert.deepEqual(await readN(conn, HELLO.length), HELLO);
    }
  } finally {
    for (const conn of held) conn.close();
  }
  // A slot is free again once they close.
  await waitFor(() => server.stats.open === 0, 5000, "all closed");
  await helloRoundTrip(port);
});

Deno.test("serve() counts every Unix socket peer as one address, for maxPerAddress and throttling", async () => {
  // Deno wants net permission for each socket path, which the test task
  // cannot name in advance: run the server and its clients in a child that
  // is allowed exactly this path.
  const dir = await Deno.makeTempDir({ prefix: "connauth-unix-" });
  try {
    const path = `${dir}/server.sock`;
    const script = `
      import { serve } from ${
      JSON.stringify(import.meta.resolve("../server.ts"))
    };
      import { clientAuthenticate } from ${
      JSON.stringify(import.meta.resolve("../handshake.ts"))
    };
      const path = Deno.args[0];
      const events = [];
      const until = async (condition) => {
        for (let i = 0; i < 500 && !condition(); i++) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };
      const server = serve({
        listener: Deno.listen({ transport: "unix", path }),
        secret: "k",
        log: false,
        maxPerAddress: 1,
        onRefuse: (info) => events.push("refused " + info.reason),
        onAuthFailure: (info) =>
          events.push("failure " + info.failures + ", pause " + info.delay),
      }, (conn) => conn.readable.pipeTo(conn.writable));
      const first = await Deno.connect({ transport: "unix", path });
      await clientAuthenticate(first, "k");
      await until(() => server.stats.active === 1);
      const second = await Deno.connect({ transport: "unix", path });
      try {
        await clientAuthenticate(second, "k");
        await second.write(new Uint8Array([1]));
        const n = await second.read(new Uint8Array(1));
        events.push(n === 1 ? "second served" : "second closed");
      } catch (error) {
        events.push("second closed");
      }
      second.close();
      first.close();
      await until(() => server.stats.open === 0);
      const bad = await Deno.connect({ transport: "unix", path });
      await clientAuthenticate(bad, "wrong");
      await bad.read(new Uint8Array(1)).catch(() => null);
      bad.close();
      await until(() => events.length === 3);
      await server.shutdown();
      console.log(JSON.stringify(events));
    `;
    const child = spawn(Deno.execPath(), [
      "run",
      `--allow-net=unix:${path}`,
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      "-",
      path,
    ]);
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(script));
    await writer.close();
    const output = await child.output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    const events = JSON.parse(new TextDecoder().decode(output.stdout));
    assert.deepEqual(events, [
      "refused max-per-address",
      "second closed",
      "failure 1, pause 250",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve() counts an IPv6 /64 as one address by default; ipv6Prefix changes the prefix", async () => {
  // Each address connects in turn with maxPerAddress: 1 and stays open;
  // true when it is served, false when refused as max-per-address.
  async function served(
    ipv6Prefix: number | undefined,
    addresses: string[],
  ): Promise<{ served: boolean[]; log: string[] }> {
    const aliased = aliasListener();
    const log: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => log.push(args.join(" "));
    const open: Deno.TcpConn[] = [];
    const result: boolean[] = [];
    try {
      await using server = serve({
        listener: aliased.listener,
        secret: KEY,
        maxPerAddress: 1,
        ipv6Prefix,
      }, echo);
      for (const address of addresses) {
        aliased.alias = address;
        try {
          open.push(await connect({ port: aliased.aliasPort, secret: KEY }));
          await waitFor(
            () => server.stats.active === open.length,
            5000,
            `${address} served`,
          );
          result.push(true);
        } catch (error) {
          assert.ok(
            error instanceof ProtocolError ||
              error instanceof Deno.errors.ConnectionReset,
            String(error),
          );
          result.push(false);
        }
      }
      for (const conn of open) conn.close();
    } finally {
      console.error = original;
    }
    return { served: result, log };
  }
  const addresses = [
    "2001:db8:1:2::1",
    "2001:DB8:1:2:0:0:ffff:5", // the same /64, written otherwise
    "2001:db8:1:3::1",
    "2001:db8:1:102::1",
    "fe80::1%eth0", // link-local: every host on the link shares fe80::/64
    "fe80::2%eth0",
    "::ffff:192.0.2.1",
    "192.0.2.1", // the same IPv4 address as the mapped one
  ];
  const byDefault = await served(undefined, addresses);
  assert.deepEqual(byDefault.served, [
    true,
    false,
    true,
    true,
    true,
    true,
    true,
    false,
  ]);
  const refusals = byDefault.log.filter((line) => line.includes("refused"));
  assert.match(refusals[0], /connections from 2001:db8:1:2::\/64 already/);
  assert.match(refusals[1], /connections from 192\.0\.2\.1 already/);
  assert.deepEqual(
    (await served(56, addresses)).served,
    [true, false, false, true, true, true, true, false],
  );
  assert.deepEqual(
    (await served(128, addresses)).served,
    [true, true, true, true, true, true, true, false],
  );
  assert.throws(
    () => serve({ port: 0, secret: KEY, ipv6Prefix: 0 }, () => {}),
    RangeError,
  );
});

Deno.test("serve() at maxHandshakes keeps accepting and closes the oldest pending connection of the address holding the most", async () => {
  const aliased = aliasListener();
  aliased.alias = "192.0.2.1";
  const refused: RefuseInfo[] = [];
  await using server = serve({
    listener: aliased.listener,
    secret: KEY,
    log: false,
    maxHandshakes: 2,
    onRefuse: (info) => refused.push(info),
  }, echo);
  const port = portOf(server);
  const silent: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      silent.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      await waitFor(
        () => server.stats.handshaking === i + 1,
        5000,
        `${i + 1} handshaking`,
      );
    }
    // The budget is full. A client from another address is accepted at
    // once, and 127.0.0.1's oldest silent connection is closed for it.
    const start = performance.now();
    await helloRoundTrip(aliased.aliasPort, KEY, 5000);
    assert.ok(
      performance.now() - start < 1000,
      `served after ${performance.now() - start} ms`,
    );
    await waitClosed(silent[0], 2000);
    assert.deepEqual(
      refused.map((r) => [r.reason, (r.remoteAddr as Deno.NetAddr).port]),
      [["evicted", (silent[0].localAddr as Deno.NetAddr).port]],
    );
    assert.equal(server.stats.evicted, 1);
    assert.equal(server.stats.handshaking, 1);
    assert.equal(server.stats.authenticated, 1);
    // Two silent ones from the other address now: that address holds the
    // most, so its oldest goes, not 127.0.0.1's remaining one.
    const other: Deno.TcpConn[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        other.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port: aliased.aliasPort,
          }),
        );
        await waitFor(
          () => server.stats.accepted === 3 + i + 1,
          5000,
          `silent ${i + 1} from 192.0.2.1 accepted`,
        );
      }
      await waitClosed(other[0], 2000);
      assert.deepEqual(refused.map((r) => r.reason), ["evicted", "evicted"]);
      assert.equal(
        (refused[1].remoteAddr as Deno.NetAddr).hostname,
        "192.0.2.1",
      );
      assert.equal(server.stats.handshaking, 2);
      // 127.0.0.1's silent connection is still waiting for its reply.
      const challenge = await readN(silent[1], 32);
      assert.equal(challenge?.length, 32);
    } finally {
      for (const conn of other) conn.close();
    }
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("serve() at maxConnections closes a pending connection for a new one, and pauses only when all are authenticated", async () => {
  const refused: RefuseInfo[] = [];
  await using server = echoServer({
    maxConnections: 2,
    onRefuse: (info) => refused.push(info),
  });
  const port = portOf(server);
  const first = await connect({ port, secret: KEY });
  try {
    await waitFor(() => server.stats.active === 1, 5000, "1 active");
    using silent = await Deno.connect({ hostname: "127.0.0.1", port });
    await waitFor(() => server.stats.handshaking === 1, 5000, "1 pending");
    // Full: the pending one is closed for the newcomer, the authenticated
    // one never is.
    await helloRoundTrip(port, KEY, 5000);
    await waitClosed(silent, 2000);
    assert.deepEqual(refused.map((r) => r.reason), ["evicted"]);
    await first.write(HELLO);
    assert.deepEqual(await readN(first, HELLO.length), HELLO);
    assert.ok(server.stats.open <= 2);
  } finally {
    first.close();
  }
});

Deno.test("serve() stops accepting at maxConnections once all are authenticated, and resumes when one closes", async () => {
  const refused: RefuseInfo[] = [];
  await using server = echoServer({
    maxConnections: 1,
    onRefuse: (info) => refused.push(info),
  });
  const port = portOf(server);
  const first = await connect({ port, secret: KEY });
  try {
    await waitFor(() => server.stats.active === 1, 5000, "1 active");
    // The accept under way when the first handshake ended takes one more
    // connection: with nothing else unauthenticated it is the one closed.
    await assert.rejects(
      connect({ port, secret: KEY, timeout: 5000 }),
      (error: unknown) =>
        error instanceof ProtocolError && error.reason === "closed" ||
        error instanceof Deno.errors.ConnectionReset,
    );
    assert.deepEqual(refused.map((r) => r.reason), ["evicted"]);
    // Then the loop pauses: the next client waits in the listen backlog
    // (no challenge) and is served once the first connection closes.
    const third = connect({ port, secret: KEY, timeout: 10_000 });
    third.catch(() => {}); // awaited below
    await delay(300);
    assert.equal(server.stats.accepted, 2);
    first.close();
    const conn = await third;
    try {
      await conn.write(HELLO);
      assert.deepEqual(await readN(conn, HELLO.length), HELLO);
    } finally {
      conn.close();
    }
    assert.equal(server.stats.accepted, 3);
    assert.equal(refused.length, 1);
  } finally {
    try {
      first.close();
    } catch {
      // closed above
    }
  }
});

Deno.test("serve() reports a throwing handler through onError and goes on serving", async () => {
  const errors: [unknown, ServeErrorInfo][] = [];
  let calls = 0;
  await using server = serve(
    {
      port: 0,
      secret: KEY,
      log: false,
      onError: (error, info) => errors.push([error, info]),
    },
    async (conn) => {
      if (++calls === 1) throw new Error("handler bug");
      await echo(conn);
    },
  );
  const port = portOf(server);
  const first = await connect({ port, secret: KEY });
  try {
    await waitClosed(first, 5000); // the server closes it after the throw
  } finally {
    first.close();
  }
  await helloRoundTrip(port);
  assert.equal(errors.length, 1);
  assert.equal((errors[0][0] as Error).message, "handler bug");
  assert.equal(errors[0][1].phase, "handler");
  assert.equal((errors[0][1].remoteAddr as Deno.NetAddr).hostname, "127.0.0.1");
});

Deno.test("serve() reports a peer that resets mid-handshake and goes on serving", async () => {
  const errors: [unknown, ServeErrorInfo][] = [];
  await using server = echoServer({
    onError: (error, info) => errors.push([error, info]),
  });
  const port = portOf(server);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  // Read part of the challenge; closing with unread bytes sends a reset.
  assert.ok(await readN(conn, 1));
  await delay(50);
  conn.close();
  await waitFor(() => errors.length === 1, 5000, "the reset reported");
  assert.equal(errors[0][1].phase, "handshake");
  assert.ok(
    errors[0][0] instanceof Deno.errors.ConnectionReset ||
      errors[0][0] instanceof ProtocolError,
    String(errors[0][0]),
  );
  await helloRoundTrip(port);
});

Deno.test("serve() reports a short reply as a handshake error, not an auth failure", async () => {
  const errors: unknown[] = [];
  const failures: unknown[] = [];
  await using server = echoServer({
    onError: (error) => errors.push(error),
    onAuthFailure: (info) => failures.push(info),
  });
  const port = portOf(server);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  assert.ok(await readN(conn, 32));
  await conn.write(new Uint8Array(5)); // 5 of 32 digest bytes
  await conn.closeWrite();
  await waitClosed(conn, 5000);
  conn.close();
  await waitFor(() => errors.length === 1, 5000, "the error reported");
  assert.ok(errors[0] instanceof ProtocolError);
  assert.equal((errors[0] as ProtocolError).reason, "closed");
  assert.equal(failures.length, 0);
});

Deno.test("serve() echoes to a client that half-closes, then closes", async () => {
  await using server = echoServer();
  const port = portOf(server);
  using conn = await connect({ port, secret: KEY });
  await conn.write(HELLO);
  await conn.closeWrite();
  assert.deepEqual(await readN(conn, HELLO.length), HELLO);
  assert.equal(await conn.read(new Uint8Array(1)), null);
  await helloRoundTrip(port);
});

Deno.test("serve() reports a handler write to a closed socket and goes on serving", async () => {
  const errors: [unknown, ServeErrorInfo][] = [];
  const gone = Promise.withResolvers<void>();
  await using server = serve(
    {
      port: 0,
      secret: KEY,
      log: false,
      onError: (error, info) => errors.push([error, info]),
    },
    async (conn, info) => {
      if (info.id !== 1) return await echo(conn);
      await gone.promise;
      await delay(50);
      const writer = conn.writable.getWriter();
      for (let i = 0; i < 100; i++) {
        await writer.write(new Uint8Array(65536)); // EPIPE / reset soon
      }
    },
  );
  const port = portOf(server);
  const conn = await connect({ port, secret: KEY });
  conn.close();
  gone.resolve();
  await waitFor(() => errors.length === 1, 5000, "the write error");
  assert.equal(errors[0][1].phase, "handler");
  await helloRoundTrip(port);
});

Deno.test("serve() passes a custom authenticator's result to the handler and throttles its AuthenticationError", async () => {
  const failures: AuthFailureInfo[] = [];
  const seen: string[] = [];
  await using server = serve<{ conn: ServerConn; user: string }>({
    port: 0,
    log: false,
    throttle: { delay: 10 },
    onAuthFailure: (info) => failures.push(info),
    authenticate: async (conn, { signal, remoteAddr }) => {
      assert.equal((remoteAddr as Deno.NetAddr).hostname, "127.0.0.1");
      try {
        await serverAuthenticate(conn, KEY, { signal });
        return { conn, user: "alice" };
      } catch (error) {
        if (!(error instanceof AuthenticationError)) throw error;
        throw new AuthenticationError("Cannot authenticate: no", "rejected");
      }
    },
  }, async ({ conn, user }, info: ConnectionInfo) => {
    seen.push(`${user} #${info.id}`);
    await echo(conn);
  });
  const port = portOf(server);
  await helloRoundTrip(port);
  using bad = await connect({ port, secret: "wrong" });
  await waitClosed(bad, 5000);
  assert.deepEqual(seen, ["alice #1"]);
  assert.equal(failures.length, 1);
  assert.equal(failures[0].error.reason, "rejected");
  assert.equal(failures[0].delay, 10);
});

Deno.test("serve() closes a custom authenticator's connection at the handshake deadline even when it ignores its signal", async () => {
  const errors: [unknown, ServeErrorInfo][] = [];
  const readEnded = Promise.withResolvers<unknown>();
  await using server = serve<ServerConn>({
    port: 0,
    log: false,
    handshakeTimeout: 200,
    onError: (error, info) => errors.push([error, info]),
    // Waits for a byte that never comes, deaf to its signal.
    authenticate: async (conn) => {
      try {
        await (conn as Deno.Conn).read(new Uint8Array(1));
        readEnded.resolve("read returned");
      } catch (error) {
        readEnded.resolve(error);
      }
      return conn;
    },
  }, () => {
    throw new Error("no handler may run");
  });
  using client = await Deno.connect({
    hostname: "127.0.0.1",
    port: portOf(server),
  });
  const start = performance.now();
  await waitClosed(client, 3000);
  const elapsed = performance.now() - start;
  assert.ok(elapsed >= 150 && elapsed < 2000, `closed after ${elapsed} ms`);
  // Closing the socket is what ended the authenticator's read.
  assert.notEqual(await readEnded.promise, "read returned");
  await waitFor(() => errors.length === 1, 2000, "the timeout reported");
  const [error, info] = errors[0];
  assert.ok(error instanceof DOMException && error.name === "TimeoutError");
  assert.match(error.message, /timed out after 200 ms/);
  assert.equal(info.phase, "handshake");
  assert.equal(server.stats.handshaking, 0);
  assert.equal(server.stats.open, 0);
});

Deno.test("serve() shutdown lets in-flight handlers finish, refuses new connections and resolves finished", async () => {
  const started = Promise.withResolvers<void>();
  let signalAborted = false;
  const server = serve(
    { port: 0, secret: KEY, log: false },
    async (conn, info) => {
      // Read the request (not to end of stream: in Deno that closes the
      // whole connection).
      const request = new Uint8Array(HELLO.length);
      let offset = 0;
      const reader = conn.readable.getReader();
      while (offset < request.length) {
        const { value, done } = await reader.read();
        if (done) break;
        request.set(value, offset);
        offset += value.length;
      }
      reader.releaseLock();
      // Wait for the test to start the shutdown, then reply late.
      started.resolve();
      await new Promise((resolve) =>
        info.signal.addEventListener("abort", resolve, { once: true })
      );
      signalAborted = info.signal.aborted;
      await delay(200);
      const writer = conn.writable.getWriter();
      await writer.write(request);
      await writer.close();
    },
  );
  const port = portOf(server);
  const conn = await connect({ port, secret: KEY });
  try {
    await conn.write(HELLO);
    await started.promise;
    const finished = server.shutdown();
    // Refused: by the kernel once the socket is gone, or reset by the
    // closing listener; never served (no challenge).
    await assertNotServed(port);
    assert.deepEqual(await readN(conn, HELLO.length), HELLO);
    await finished;
    assert.equal(signalAborted, true);
    assert.equal(server.stats.open, 0);
    assert.equal(server.shutdown(), server.finished);
  } finally {
    conn.close();
  }
});

Deno.test("serve() shutdown closes handlers that outlive the grace period", async () => {
  const errors: unknown[] = [];
  const server = serve(
    {
      port: 0,
      secret: KEY,
      log: false,
      gracePeriod: 200,
      onError: (error) => errors.push(error),
    },
    async (conn) => {
      // Ignores info.signal: reads until the socket goes away.
      await readAll(conn.readable);
    },
  );
  const conn = await connect({ port: portOf(server), secret: KEY });
  try {
    await waitFor(() => server.stats.active === 1, 5000, "1 active");
    const start = performance.now();
    await server.shutdown();
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 150, `finished after ${elapsed} ms`);
    await waitClosed(conn, 5000);
    assert.deepEqual(errors, []); // forced closes are not reported
  } finally {
    conn.close();
  }
});

Deno.test("serve() with gracePeriod Infinity lets a handler finish after shutdown, however long it takes", async () => {
  const server = serve(
    { port: 0, secret: KEY, log: false, gracePeriod: Infinity },
    async (conn, info) => {
      await new Promise((resolve) =>
        info.signal.addEventListener("abort", resolve, { once: true })
      );
      // Past the moment a timer of Infinity ms would have fired (at once).
      await new Promise((resolve) => setTimeout(resolve, 200));
      await conn.write!(new TextEncoder().encode("done"));
    },
  );
  const conn = await connect({ port: portOf(server), secret: KEY });
  try {
    await waitFor(() => server.stats.active === 1, 5000, "1 active");
    const finished = server.shutdown();
    const reply = await within(readN(conn, 4), 5000, "the handler's reply");
    assert.equal(new TextDecoder().decode(reply!), "done");
    await within(finished, 5000, "shutdown");
  } finally {
    conn.close();
  }
});

Deno.test("serve() shutdown stops waiting for a handler that ignores its signal and its socket, and reports it", async () => {
  const errors: [unknown, ServeErrorInfo][] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let release = () => {};
  const handlerDone = Promise.withResolvers<void>();
  const server = serve(
    {
      port: 0,
      secret: KEY,
      log: false,
      gracePeriod: 100,
      onError: (error, info) => errors.push([error, info]),
    },
    async () => {
      // Neither info.signal nor the socket: a 3 s timer.
      await new Promise<void>((resolve) => {
        release = resolve;
        timer = setTimeout(resolve, 3000);
      });
      handlerDone.resolve();
    },
  );
  const conn = await connect({ port: portOf(server), secret: KEY });
  try {
    await waitFor(() => server.stats.active === 1, 5000, "1 active");
    const start = performance.now();
    await server.shutdown();
    const elapsed = performance.now() - start;
    // gracePeriod (100 ms), then 1000 ms for the closed socket to end it.
    assert.ok(
      elapsed >= 1000 && elapsed < 2500,
      `finished after ${elapsed} ms`,
    );
    await waitClosed(conn, 1000);
    assert.equal(errors.length, 1);
    const [error, info] = errors[0];
    assert.ok(error instanceof DOMException && error.name === "TimeoutError");
    assert.match(
      error.message,
      /the handler for 127\.0\.0\.1:\d+ did not settle within the grace period \(100 ms\)/,
    );
    assert.equal(info.phase, "handler");
    assert.equal((info.remoteAddr as Deno.NetAddr).hostname, "127.0.0.1");
  } finally {
    clearTimeout(timer);
    release();
    await handlerDone.promise;
    conn.close();
  }
  // The abandoned task ran to its end later, quietly.
  await delay(0);
  assert.equal(errors.length, 1);
  assert.equal(server.stats.active, 0);
});

Deno.test("serve() aborts pending handshakes on shutdown and shuts down on its signal", async () => {
  const controller = new AbortController();
  const server = echoServer({ signal: controller.signal });
  const silent = await Deno.connect({
    hostname: "127.0.0.1",
    port: portOf(server),
  });
  try {
    await waitFor(() => server.stats.handshaking === 1, 5000, "1 handshaking");
    controller.abort();
    await server.finished;
    await waitClosed(silent, 5000);
  } finally {
    silent.close();
  }
});

Deno.test("serve() shuts down at the end of an await using block", async () => {
  let port = 0;
  {
    await using server = echoServer();
    port = portOf(server);
    await helloRoundTrip(port);
  }
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("serve() accepts from a given listener and closes it on shutdown", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = serve({ listener, secret: KEY, log: false }, echo);
  // A plain copy (Deno's own address prints as [Object: null prototype]).
  assert.deepEqual(server.addr, { ...listener.addr });
  await helloRoundTrip(listener.addr.port);
  await server.shutdown();
  await assert.rejects(listener.accept(), Deno.errors.BadResource);
});

Deno.test("serve() rejects bad options before listening", () => {
  const handler = () => {};
  assert.throws(
    () => serve({ port: 0 }, handler),
    (e: unknown) => e instanceof TypeError && /pass secret/.test(e.message),
  );
  assert.throws(
    () =>
      serve(
        { port: 0, secret: KEY, authenticate: (c) => Promise.resolve(c) },
        handler,
      ),
    TypeError,
  );
  assert.throws(() => serve({ port: 0, secret: "" }, handler), TypeError);
  assert.throws(
    () => serve({ port: 0, secret: KEY, maxConnections: 0 }, handler),
    RangeError,
  );
  assert.throws(
    () => serve({ port: 0, secret: KEY, maxPerAddress: 1.5 }, handler),
    RangeError,
  );
  assert.throws(
    () => serve({ port: 0, secret: KEY, handshakeTimeout: 0 }, handler),
    RangeError,
  );
  assert.throws(
    () => serve({ port: 0, secret: KEY, throttle: { delay: -1 } }, handler),
    RangeError,
  );
  assert.throws(() => serve({ port: 70000, secret: KEY }, handler), RangeError);
  assert.throws(
    () => serve({ port: 0, secret: KEY, challengeLength: 8 }, handler),
    (e: unknown) =>
      e instanceof RangeError && /challengeLength: .*, got 8$/.test(e.message),
  );
  assert.throws(
    () => serve({ port: 0, secret: KEY }, undefined as unknown as () => void),
    TypeError,
  );
});

Deno.test("serve() rejects finished and closes the listener when the key cannot be imported", async () => {
  const sha1 = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(16),
    { name: "HMAC", hash: "SHA-1" },
    false,
    ["sign", "verify"],
  );
  const server = serve(
    { port: 0, secret: sha1, hash: "SHA-256", log: false },
    () => {},
  );
  await assert.rejects(server.finished, TypeError);
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: portOf(server) }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("serve() logs failures to stderr without key material, and log: false silences it", async () => {
  const secret = "correct horse battery staple";
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    {
      await using server = serve(
        { port: 0, secret: secret, throttle: { delay: 0 } },
        async (conn, info) => {
          if (info.id === 1) throw new Error("handler bug");
          await echo(conn);
        },
      );
      const port = portOf(server);
      using bad = await connect({ port, secret: "wrong horse" });
      await waitClosed(bad, 5000);
      using good = await connect({ port, secret: secret });
      await waitClosed(good, 5000);
      await waitFor(() => lines.length >= 2, 5000, "2 log lines");
    }
    const log = lines.join("\n");
    assert.match(log, /127\.0\.0\.1:\d+: authentication failed \(wrong-key\)/);
    assert.match(log, /127\.0\.0\.1:\d+: handler failed: Error: handler bug/);
    assert.ok(!log.includes(secret) && !log.includes("wrong horse"), log);

    lines.length = 0;
    {
      await using server = echoServer({ log: false });
      using bad = await connect({ port: portOf(server), secret: "wrong" });
      await waitClosed(bad, 5000);
    }
    assert.deepEqual(lines, []);
  } finally {
    console.error = original;
  }
});

Deno.test("connect() rejects with TimeoutError against a server that never sends a challenge, and closes the socket", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  await assert.rejects(
    connect({ port: listener.addr.port, secret: KEY, timeout: 200 }),
    (error: unknown) =>
      error instanceof DOMException && error.name === "TimeoutError" &&
      /Cannot connect to 127\.0\.0\.1:\d+/.test(error.message),
  );
  using server = await accepted;
  // Our side was closed: the server sees end of stream.
  assert.equal(await server.read(new Uint8Array(1)), null);
});

Deno.test("connect() rejects with the signal's reason when aborted", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const controller = new AbortController();
  const pending = connect({
    port: listener.addr.port,
    secret: KEY,
    signal: controller.signal,
  });
  controller.abort(new Error("stop"));
  await assert.rejects(pending, /stop/);
  (await accepted).close();
});

Deno.test("connect() rejects when nothing listens and on bad options", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  await assert.rejects(
    connect({ port, secret: KEY }),
    Deno.errors.ConnectionRefused,
  );
  await assert.rejects(connect({ port: 0, secret: KEY }), RangeError);
  await assert.rejects(connect({ port, secret: "" }), TypeError);
  await assert.rejects(
    connect({ port } as unknown as Parameters<typeof connect>[0]),
    TypeError,
  );
  // Checked before connecting: nothing listens, yet the error is the option's.
  await assert.rejects(connect({ port, secret: KEY, challengeLength: 8 }), {
    name: "RangeError",
    message: /^Cannot use challengeLength: .*, got 8$/,
  });
  await assert.rejects(
    connect({ port: "80" as unknown as number, secret: KEY }),
    { name: "TypeError", message: /^Cannot use port: .*, got "80"$/ },
  );
});

Deno.test("connect() with the wrong key gets end of stream on its first read", async () => {
  await using server = echoServer({ throttle: false });
  using conn = await connect({ port: portOf(server), secret: "wrong" });
  await conn.write(HELLO).catch(() => {});
  assert.equal(await readN(conn, 1), null);
});

Deno.test("connect() and serve() agree on hash and challenge length", async () => {
  await using server = echoServer({ hash: "SHA-512", challengeLength: 64 });
  const port = portOf(server);
  using conn = await connect({
    port,
    secret: KEY,
    hash: "SHA-512",
    challengeLength: 64,
  });
  await conn.write(HELLO);
  assert.deepEqual(await readN(conn, HELLO.length), HELLO);
  // A client with another key is rejected.
  using other = await connect({
    port,
    secret: "wrong",
    hash: "SHA-512",
    challengeLength: 64,
  });
  assert.equal(await readN(other, 1), null);
  // clientAuthenticate() works against serve() too.
  using raw = await Deno.connect({ hostname: "127.0.0.1", port });
  await clientAuthenticate(raw, KEY, { hash: "SHA-512", challengeLength: 64 });
});

Deno.test("serve() authenticates with a key given as an HmacKey or a CryptoKey (WebCrypto's verify) as with text", async () => {
  const keys = [
    await HmacKey.import(KEY),
    await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(KEY),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    ),
    new TextEncoder().encode(KEY),
  ];
  for (const key of keys) {
    const failures: AuthFailureInfo[] = [];
    await using server = echoServer({
      secret: key,
      onAuthFailure: (info) => failures.push(info),
    });
    await helloRoundTrip(portOf(server));
    using wrong = await connect({ port: portOf(server), secret: "wrong" });
    assert.equal(await readN(wrong, 1), null);
    await waitFor(() => failures.length === 1, 5000, "the failure");
    assert.equal(failures[0].error.reason, "wrong-key");
  }
});

// The upper-case server and the chat client, as subprocesses.

const EXAMPLES = new URL("../examples/", import.meta.url).pathname;

function startUpperServer(
  env: Record<string, string>,
): Promise<RunningExample> {
  return startExample([
    "run",
    "--allow-net=127.0.0.1",
    "--allow-env=CONNAUTH_SECRET",
    `${EXAMPLES}upper_server.ts`,
    "--port",
    "0",
  ], { env });
}

/** Starts examples/chat_client.ts against `port`, every stdio piped. */
function spawnChatClient(
  port: number,
  env: Record<string, string>,
  args: string[] = [],
): Deno.ChildProcess {
  return spawn(Deno.execPath(), [
    "run",
    `--allow-net=127.0.0.1:${port}`,
    "--allow-env=CONNAUTH_SECRET",
    `${EXAMPLES}chat_client.ts`,
    "--port",
    String(port),
    ...args,
  ], { env });
}

async function runChatClient(
  port: number,
  env: Record<string, string>,
  input: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawnChatClient(port, env);
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const output = await child.output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

Deno.test("examples/chat_client.ts driven through a pipe talks to examples/upper_server.ts", async () => {
  const env = { CONNAUTH_SECRET: "example key" };
  const server = await startUpperServer(env);
  let status: Deno.CommandStatus | undefined;
  try {
    const chat = await runChatClient(
      server.port,
      env,
      "hello\n\n   \nHéllo wörld\r\nquit\nnot sent\n",
    );
    assert.equal(chat.code, 0, chat.stderr);
    assert.equal(chat.stdout, "HELLO\nHÉLLO WÖRLD\n");
    assert.ok(!chat.stdout.includes(">>:"), "no prompt when piped");

    // End of input without quit also exits cleanly.
    const eof = await runChatClient(server.port, env, "one more");
    assert.equal(eof.code, 0, eof.stderr);
    assert.equal(eof.stdout, "ONE MORE\n");

    const wrong = await runChatClient(
      server.port,
      { CONNAUTH_SECRET: "nope" },
      "hello\n",
    );
    assert.equal(wrong.code, 1);
    assert.equal(wrong.stdout, "");
    assert.match(wrong.stderr, /the server closed the connection/);
  } finally {
    status = await server.stop();
  }
  // SIGTERM is a clean shutdown.
  assert.equal(status.code, 0);
  await waitFor(
    () => server.log.some((line) => line === "upper server stopped"),
    5000,
    "the stop line",
  );
  const log = server.log.join("\n");
  assert.match(log, /accept 127\.0\.0\.1:\d+ \(#1\)/);
  assert.match(log, /127\.0\.0\.1:\d+: authentication failed \(wrong-key\)/);
  assert.ok(!log.includes("example key") && !log.includes("nope"), log);
});

/** Starts examples/chat_client.ts with its stdin left open for the test. */
function startChatClient(
  port: number,
  env: Record<string, string>,
  args: string[] = [],
): {
  child: Deno.ChildProcess;
  say(line: string): Promise<void>;
  stdout: AsyncGenerator<string>;
  close(): Promise<Deno.CommandStatus>;
} {
  const child = spawnChatClient(port, env, args);
  const writer = child.stdin.getWriter();
  const stdout = lines(child.stdout);
  const stderr = child.stderr.pipeTo(new WritableStream());
  return {
    child,
    stdout,
    say: (line) => writer.write(new TextEncoder().encode(`${line}\n`)),
    async close() {
      await writer.close().catch(() => {});
      const status = await child.status;
      for await (const _ of stdout) {
        // drain
      }
      await stderr;
      return status;
    },
  };
}

Deno.test("examples/upper_server.ts stops cleanly on Ctrl-C (SIGINT) with a chat session open", async () => {
  const env = { CONNAUTH_SECRET: "example key" };
  const server = await startUpperServer(env);
  const chat = startChatClient(server.port, env);
  try {
    await chat.say("hello");
    assert.equal((await chat.stdout.next()).value, "HELLO");
    const start = performance.now();
    server.child.kill("SIGINT");
    const status = await server.child.status;
    const elapsed = performance.now() - start;
    assert.equal(status.code, 0);
    // The session's handler stops on its signal: no wait for gracePeriod.
    assert.ok(elapsed < 3000, `exited after ${elapsed} ms`);
  } finally {
    await server.stop();
    await chat.close();
  }
  assert.ok(server.log.includes("upper server stopped"), server.log.join("\n"));
  assert.ok(
    !server.log.some((line) => /failed/.test(line)),
    server.log.join("\n"),
  );
});

Deno.test("examples/chat_client.ts exits at once on Ctrl-C (SIGINT) while it waits for a reply", async () => {
  const got = Promise.withResolvers<void>();
  // A server that takes the line and never answers.
  await using server = serve(
    { port: 0, secret: "example key", log: false, gracePeriod: 100 },
    async (conn) => {
      for await (const chunk of conn.readable) {
        if (chunk.includes(10)) got.resolve();
      }
    },
  );
  const chat = startChatClient(
    portOf(server),
    { CONNAUTH_SECRET: "example key" },
    ["--timeout", "10000"],
  );
  try {
    await chat.say("hello");
    await within(got.promise, 5000, "the line reaching the server");
    await delay(100); // it is waiting for the reply now
    const start = performance.now();
    chat.child.kill("SIGINT");
    const status = await chat.child.status;
    const elapsed = performance.now() - start;
    assert.equal(status.code, 130); // 128 + SIGINT, as a shell reports it
    assert.ok(elapsed < 2000, `exited after ${elapsed} ms`);
    assert.equal((await chat.stdout.next()).done, true);
  } finally {
    await chat.close();
  }
});

Deno.test("serve() and connect() turn off Nagle's algorithm: back-to-back small writes do not wait for a delayed ACK", async () => {
  const noDelay = Deno.env.get("CONNAUTH_TEST_NAGLE") !== "on";
  await using server = serve(
    { port: 0, secret: KEY, log: false, noDelay },
    async (conn) => {
      // Reply only once both halves of a request are in.
      const reader = conn.readable.getReader({ mode: "byob" });
      const writer = conn.writable.getWriter();
      try {
        while (true) {
          let request = new Uint8Array(2);
          let offset = 0;
          while (offset < 2) {
            const { value, done } = await reader.read(
              request.subarray(offset),
            );
            if (done) return;
            request = new Uint8Array(value.buffer);
            offset += value.byteLength;
          }
          await writer.write(request);
        }
      } finally {
        reader.releaseLock();
        writer.releaseLock();
      }
    },
  );
  using conn = await connect({ port: portOf(server), secret: KEY, noDelay });
  const rounds = 30;
  const start = performance.now();
  for (let i = 0; i < rounds; i++) {
    await conn.write(new Uint8Array([i]));
    await conn.write(new Uint8Array([i]));
    assert.deepEqual(await readN(conn, 2), new Uint8Array([i, i]));
  }
  const elapsed = performance.now() - start;
  // With Nagle on, each round waits for a delayed ACK (about 40 ms on
  // Linux): over 1 s in all. Without it, a few ms.
  assert.ok(elapsed < 800, `${rounds} rounds took ${elapsed.toFixed(0)} ms`);
});

// The Python recipe servers the benchmark compares against.

for (const script of ["recipe_echo_server.py", "recipe_threaded_server.py"]) {
  peerTest(
    `connect() authenticates and echoes against tests/interop/${script} (Python 3.12)`,
    { label: "Python 3.12", path: findPython("3.12") },
    async (python) => {
      const child = spawn(python, [interopScript(script), "0", "5"], {
        env: { CONNAUTH_SECRET: KEY },
      });
      child.stdin.close();
      const stdout = lines(child.stdout);
      try {
        const first = await stdout.next();
        const port = Number(String(first.value).match(/^port (\d+)$/)?.[1]);
        assert.ok(port > 0, `no port line: ${first.value}`);
        await helloRoundTrip(port);
        // A wrong key: the server closes without a word.
        using wrong = await connect({ port, secret: "wrong" });
        assert.equal(await readN(wrong, 1), null);
        await helloRoundTrip(port);
      } finally {
        child.kill("SIGTERM");
        await child.status;
        for await (const _ of stdout) {
          // drain
        }
        await child.stderr.cancel();
      }
    },
  );
}

Deno.test("serve() reports a throwing hook and goes on serving", async () => {
  const errors: [unknown, ServeErrorInfo][] = [];
  await using server = echoServer({
    onConnection: () => {
      throw new Error("hook bug");
    },
    onError: (error, info) => errors.push([error, info]),
  });
  await helloRoundTrip(portOf(server));
  await helloRoundTrip(portOf(server));
  assert.deepEqual(
    errors.map(([error, info]) => [(error as Error).message, info.phase]),
    [["hook bug", "hook"], ["hook bug", "hook"]],
  );
});

Deno.test("serve() logs at most 20 lines a second and sums up the rest", async () => {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  let failures = 0;
  try {
    {
      await using server = serve(
        {
          port: 0,
          secret: KEY,
          throttle: false,
          maxPerAddress: 1000,
          onAuthFailure: () => failures++,
        },
        echo,
      );
      const port = portOf(server);
      await Promise.all(Array.from({ length: 60 }, async () => {
        using conn = await connect({ port, secret: "wrong" });
        await waitClosed(conn, 5000);
      }));
      await waitFor(() => failures === 60, 5000, "60 failures");
    }
  } finally {
    console.error = original;
  }
  const printed = lines.filter((l) => l.includes("authentication failed"));
  const suppressed = lines
    .map((l) => l.match(/(\d+) more lines suppressed/)?.[1])
    .filter((n) => n !== undefined)
    .reduce((sum, n) => sum + Number(n), 0);
  assert.equal(failures, 60); // the hook saw every one
  assert.ok(printed.length < 60, `${printed.length} lines printed`);
  assert.equal(printed.length + suppressed, 60, lines.join("\n"));
});
