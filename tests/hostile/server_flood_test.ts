// Hostile peers against serve(): silent sockets from many addresses, held
// and re-opened as soon as the server closes them (tests/interop/
// silent_flood.py binds each to its own 127.0.1.x source). The server must
// keep accepting and close the flood's connections, never a good client's
// and never an authenticated one.
import assert from "node:assert/strict";
import {
  connect,
  type RefuseInfo,
  serve,
  type ServeOptions,
  type Server,
} from "../../server.ts";
import { findPython, interopScript, lines, peerTest } from "../_helpers.ts";

const KEY = "peanut butter";
const HELLO = new TextEncoder().encode("Hello World");
/**
 * How long a good client may wait for its echo. The old server stopped
 * accepting while the flood filled its budget, so a good client waited
 * for a silent socket's deadline (10 s here): far longer than this.
 */
const SERVED_WITHIN = 3000;
/** Good clients, one after another, while the flood lasts. */
const PROBES = 10;

const python = { label: "python3", path: findPython("3") };

interface FloodReport {
  ready?: boolean;
  done?: boolean;
  held: number;
  opened: number;
  closed: number;
  errors?: number;
}

/**
 * Runs silent_flood.py against `port` with `addresses` x `perAddress`
 * sockets (for at most 60 s) until `body` returns, then stops it (its
 * standard input closes) and returns its last report.
 */
async function withFlood(
  pythonPath: string,
  port: number,
  addresses: number,
  perAddress: number,
  body: (ready: FloodReport) => Promise<void>,
): Promise<FloodReport> {
  const child = new Deno.Command(pythonPath, {
    args: [
      interopScript("silent_flood.py"),
      "127.0.0.1",
      String(port),
      String(addresses),
      String(perAddress),
      "60",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(90_000),
  }).spawn();
  const stdout = lines(child.stdout);
  const stderr = new Response(child.stderr).text();
  let last: FloodReport | undefined;
  try {
    const first = await stdout.next();
    if (first.done) throw new Error(`the flood did not start: ${await stderr}`);
    const ready = JSON.parse(first.value) as FloodReport;
    assert.equal(ready.ready, true);
    await body(ready);
  } finally {
    await child.stdin.close().catch(() => {});
    for await (const line of stdout) last = JSON.parse(line);
    await child.status;
  }
  if (!last?.done) throw new Error(`the flood did not finish: ${await stderr}`);
  return last!;
}

/** Connects, authenticates, echoes Hello World; the time it took, in ms. */
async function probe(port: number): Promise<number> {
  const start = performance.now();
  using conn = await connect({ port, secret: KEY, timeout: SERVED_WITHIN });
  await conn.write(HELLO);
  const reply = new Uint8Array(HELLO.length);
  let offset = 0;
  while (offset < reply.length) {
    const n = await conn.read(reply.subarray(offset));
    assert.notEqual(n, null, "the server closed the good client");
    offset += n!;
  }
  assert.deepEqual(reply, HELLO);
  return performance.now() - start;
}

function echoServer(
  options: Partial<ServeOptions>,
  refused: RefuseInfo[],
): Server {
  return serve({
    port: 0,
    secret: KEY,
    log: false,
    onRefuse: (info) => refused.push(info),
    ...options,
  }, async (conn) => {
    const tcp = conn as Deno.TcpConn; // serve()'s own listener's
    const buffer = new Uint8Array(1024);
    for (let n; (n = await tcp.read(buffer)) !== null;) {
      for (let offset = 0; offset < n;) {
        offset += await tcp.write(buffer.subarray(offset, n));
      }
    }
  });
}

/** Samples the server's unauthenticated connections until stopped. */
function sampler(server: Server) {
  let running = true;
  let max = 0;
  const done = (async () => {
    while (running) {
      max = Math.max(max, server.stats.handshaking + server.stats.waiting);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    async stop(): Promise<number> {
      running = false;
      await done;
      return max;
    },
  };
}

function assertEvictedOnlyTheFlood(refused: RefuseInfo[]): void {
  assert.ok(refused.length > 0, "nothing was evicted: nothing was tested");
  for (const info of refused) {
    assert.equal(info.reason, "evicted");
    assert.match(
      (info.remoteAddr as Deno.NetAddr).hostname,
      /^127\.0\.1\.\d+$/,
      "a good client was closed",
    );
  }
}

peerTest(
  `serve() with maxHandshakes 64 serves a good client within ${SERVED_WITHIN} ms, ${PROBES} times over, while 8 addresses x 32 silent sockets are held and re-opened`,
  python,
  async (pythonPath) => {
    const refused: RefuseInfo[] = [];
    const server = echoServer({ maxHandshakes: 64 }, refused);
    const port = (server.addr as Deno.NetAddr).port;
    const latencies: number[] = [];
    let maxPending = 0;
    try {
      const report = await withFlood(pythonPath, port, 8, 32, async () => {
        const sampling = sampler(server);
        try {
          for (let i = 0; i < PROBES; i++) latencies.push(await probe(port));
        } finally {
          maxPending = await sampling.stop();
        }
      });
      // The flood was really there: the server closed its sockets, and it
      // re-opened them.
      assert.ok(
        report.closed > 0 && report.opened > 256,
        JSON.stringify(report),
      );
    } finally {
      await server.shutdown();
    }
    assert.equal(latencies.length, PROBES, `latencies ${latencies}`);
    assert.equal(server.stats.authenticated, PROBES);
    assert.ok(maxPending <= 64, `${maxPending} unauthenticated at once`);
    assert.equal(server.stats.evicted, refused.length);
    assertEvictedOnlyTheFlood(refused);
  },
);

peerTest(
  "serve() at maxConnections closes the flood's silent sockets, never an authenticated connection, and serves a good client",
  python,
  async (pythonPath) => {
    const refused: RefuseInfo[] = [];
    const server = echoServer({ maxConnections: 64 }, refused);
    const port = (server.addr as Deno.NetAddr).port;
    // Eight authenticated connections held through the flood.
    const held = await Promise.all(
      Array.from({ length: 8 }, () => connect({ port, secret: KEY })),
    );
    let served = 0;
    let maxOpen = 0;
    try {
      await withFlood(pythonPath, port, 8, 32, async () => {
        for (let i = 0; i < PROBES; i++) {
          await probe(port);
          served++;
          maxOpen = Math.max(maxOpen, server.stats.open);
        }
        for (const conn of held) {
          await conn.write(HELLO);
          const reply = new Uint8Array(HELLO.length);
          let offset = 0;
          while (offset < reply.length) {
            const n = await conn.read(reply.subarray(offset));
            assert.notEqual(n, null, "an authenticated connection was closed");
            offset += n!;
          }
          assert.deepEqual(reply, HELLO);
        }
      });
    } finally {
      for (const conn of held) conn.close();
      await server.shutdown();
    }
    assert.equal(served, PROBES);
    assert.ok(maxOpen <= 64, `${maxOpen} open`);
    assertEvictedOnlyTheFlood(refused);
  },
);
