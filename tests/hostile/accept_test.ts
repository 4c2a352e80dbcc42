// Hostile peers against the accept loops (_accept.ts) of serve(),
// serveHttps() and listenMultiprocessing(): clients that reset their
// connection before it was accepted, a process out of file descriptors,
// one address holding every connection.
import assert from "node:assert/strict";
import {
  AcceptLoop,
  type AcceptSource,
  classifyAcceptError,
} from "../../_accept.ts";
import { generateCertificates } from "../../certs.ts";
import { serveHttps } from "../../https.ts";
import {
  connectMultiprocessing,
  listenMultiprocessing,
} from "../../multiprocessing.ts";
import { connect, serve, type ServeErrorInfo } from "../../server.ts";
import {
  findPython,
  interopScript,
  lines,
  peerTest,
  within,
} from "../_helpers.ts";

const KEY = "peanut butter";
/** How many clients connect and reset before the good one. */
const BURST = 300;
/**
 * How long the good client may take once the burst is queued. The old loops
 * took 20 s and more (or never answered); a healthy one takes a few ms.
 */
const SERVED_WITHIN = 1000;

const python = { label: "python3", path: findPython("3") };

/**
 * Connects `count` clients to `port` and resets each (SO_LINGER 0) before
 * the server can accept any: the Python peer runs synchronously, so this
 * process's event loop (and the server's accept loop in it) is blocked
 * until every reset connection waits in the listen backlog.
 */
function resetBurst(pythonPath: string, port: number, count = BURST): void {
  const output = new Deno.Command(pythonPath, {
    args: [
      interopScript("reset_burst.py"),
      "127.0.0.1",
      String(port),
      String(count),
    ],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  assert.ok(
    output.success,
    `reset_burst.py failed: ${stdout} ${
      new TextDecoder().decode(output.stderr)
    }`,
  );
  assert.equal(stdout, `reset ${count}`);
}

/**
 * Gives `attempt` (a good client) `SERVED_WITHIN` ms to succeed. When it
 * does not, `cleanup` runs (it must make a stalled attempt settle) and the
 * attempt is awaited before the error is thrown, so that no op leaks from a
 * failing test.
 */
async function servedWithin<T>(
  attempt: Promise<T>,
  what: string,
  cleanup: () => void | Promise<void>,
): Promise<T> {
  try {
    return await within(attempt, SERVED_WITHIN, what);
  } catch (error) {
    await cleanup();
    await attempt.catch(() => {});
    throw error;
  }
}

function isNotConnected(error: unknown): boolean {
  return error instanceof Deno.errors.NotConnected;
}

peerTest(
  `serve() serves a good client within ${SERVED_WITHIN} ms of ${BURST} connections reset before accept`,
  python,
  async (pythonPath) => {
    const errors: { error: unknown; info: ServeErrorInfo }[] = [];
    const server = serve({
      port: 0,
      secret: KEY,
      log: false,
      onError: (error, info) => errors.push({ error, info }),
    }, async (conn) => {
      await conn.readable.pipeTo(conn.writable);
    });
    const port = (server.addr as Deno.NetAddr).port;
    try {
      resetBurst(pythonPath, port);
      const good = (async () => {
        using conn = await connect({ port, secret: KEY, timeout: 30_000 });
        await conn.write(new TextEncoder().encode("ping"));
        const reply = new Uint8Array(4);
        assert.equal(await conn.read(reply), 4);
        return new TextDecoder().decode(reply);
      })();
      assert.equal(
        await servedWithin(
          good,
          "an authenticated echo after the burst",
          () => void server.shutdown(),
        ),
        "ping",
      );
    } finally {
      await server.shutdown();
    }
    // Every reset connection was one skipped accept, reported as such.
    const skipped = errors.filter(({ error, info }) =>
      info.phase === "accept" && isNotConnected(error)
    );
    assert.ok(skipped.length > 0, "no accept failed: nothing was tested");
    assert.ok(skipped.length <= BURST);
    assert.equal(server.stats.authenticated, 1);
  },
);

peerTest(
  `serveHttps() on a Deno.listen() listener serves a request within ${SERVED_WITHIN} ms of ${BURST} connections reset before accept`,
  python,
  async (pythonPath) => {
    const errors: unknown[] = [];
    const server = await serveHttps({
      listener: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
      onError: (error) => errors.push(error),
    }, () => new Response("ok"));
    const abort = new AbortController();
    try {
      resetBurst(pythonPath, server.addr.port);
      const good = fetch(`http://127.0.0.1:${server.addr.port}/`, {
        signal: abort.signal,
      }).then((response) => response.text());
      assert.equal(
        await servedWithin(good, "an HTTP request after the burst", () => {
          abort.abort();
          return server.shutdown();
        }),
        "ok",
      );
      // And the next one: the loop did not stop after the burst.
      const again = await fetch(`http://127.0.0.1:${server.addr.port}/`);
      assert.equal(await again.text(), "ok");
    } finally {
      await server.shutdown();
    }
    assert.ok(
      errors.some(isNotConnected),
      "no accept failed: nothing was tested",
    );
  },
);

peerTest(
  `serveHttps() with TLS serves a request within ${SERVED_WITHIN} ms of ${BURST} connections reset before accept`,
  python,
  async (pythonPath) => {
    const set = await generateCertificates({ clients: [] });
    const server = await serveHttps({
      cert: set.server.cert,
      key: set.server.key,
    }, () => new Response("ok"));
    using client = Deno.createHttpClient({ caCerts: [set.ca.cert] });
    const abort = new AbortController();
    try {
      resetBurst(pythonPath, server.addr.port);
      const good = fetch(`https://localhost:${server.addr.port}/`, {
        client,
        signal: abort.signal,
      }).then((response) => response.text());
      assert.equal(
        await servedWithin(good, "an HTTPS request after the burst", () => {
          abort.abort();
          return server.shutdown();
        }),
        "ok",
      );
    } finally {
      await server.shutdown();
    }
  },
);

peerTest(
  `listenMultiprocessing() authenticates a client within ${SERVED_WITHIN} ms of ${BURST} connections reset before accept`,
  python,
  async (pythonPath) => {
    const abort = new AbortController();
    const listener = await listenMultiprocessing({ authkey: KEY });
    try {
      resetBurst(pythonPath, listener.addr.port);
      const good = (async () => {
        const [client, server] = await Promise.all([
          connectMultiprocessing({
            port: listener.addr.port,
            authkey: KEY,
            timeout: 30_000,
            signal: abort.signal,
          }),
          listener.accept({ signal: abort.signal }),
        ]);
        await using _client = client;
        await using _server = server;
        await client.sendText("ping");
        return await server.recvText();
      })();
      assert.equal(
        await servedWithin(good, "an authenticated message", () => {
          abort.abort();
          listener.close();
        }),
        "ping",
      );
    } finally {
      await listener[Symbol.asyncDispose]();
    }
  },
);

// ---------------------------------------------------------------------------
// The loop itself (_accept.ts), on a scripted listener.

class FakeConn {
  closed = false;
  close(): void {
    this.closed = true;
  }
}

/**
 * A listener whose accepts follow a script: a connection, an error, or a
 * promise of either. Past the script an accept waits until close().
 */
class ScriptedListener implements AcceptSource<FakeConn> {
  accepts = 0;
  closed = false;
  #script: (FakeConn | Error | Promise<FakeConn>)[];
  #waiting: ((error: Error) => void)[] = [];
  #watchers: { count: number; resolve: () => void }[] = [];

  constructor(script: (FakeConn | Error | Promise<FakeConn>)[]) {
    this.#script = script;
  }

  accept(): Promise<FakeConn> {
    this.accepts++;
    for (const watcher of this.#watchers) {
      if (this.accepts >= watcher.count) watcher.resolve();
    }
    if (this.closed) {
      return Promise.reject(new Deno.errors.BadResource("closed"));
    }
    const next = this.#script.shift();
    if (next === undefined) {
      return new Promise((_, reject) => this.#waiting.push(reject));
    }
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  }

  close(): void {
    this.closed = true;
    for (const reject of this.#waiting.splice(0)) {
      reject(new Deno.errors.BadResource("closed"));
    }
  }

  /** Resolves once accept() has been called `count` times. */
  accepted(count: number): Promise<void> {
    if (this.accepts >= count) return Promise.resolve();
    return new Promise((resolve) => this.#watchers.push({ count, resolve }));
  }
}

/** The errors Deno 2.9.6 throws from accept(), as they really are. */
function emfile(): Error {
  return Object.assign(new Error("Too many open files (os error 24)"), {
    code: "EMFILE",
  });
}

function enfile(): Error {
  return Object.assign(
    new Error("Too many open files in system (os error 23)"),
    { code: "ENFILE" },
  );
}

function notConnected(): Error {
  return Object.assign(
    new Deno.errors.NotConnected(
      "Transport endpoint is not connected (os error 107)",
    ),
    { code: "ENOTCONN" },
  );
}

Deno.test("classifyAcceptError() tells a closed listener, one failed connection and exhaustion apart", () => {
  assert.equal(classifyAcceptError(new Deno.errors.BadResource()), "closed");
  assert.equal(classifyAcceptError(new Deno.errors.Interrupted()), "closed");
  for (
    const error of [
      notConnected(),
      new Deno.errors.NotConnected(),
      new Deno.errors.ConnectionAborted(),
      new Deno.errors.ConnectionReset(),
      new Deno.errors.ConnectionRefused(),
      new Deno.errors.TimedOut(),
      new Deno.errors.NetworkUnreachable(),
      Object.assign(new Error("Protocol error"), { code: "EPROTO" }),
      Object.assign(new Error("Host is down"), { code: "EHOSTDOWN" }),
    ]
  ) {
    assert.equal(classifyAcceptError(error), "connection", String(error));
  }
  for (
    const error of [
      emfile(),
      enfile(),
      Object.assign(new Error("No buffer space available"), {
        code: "ENOBUFS",
      }),
      new Error("something new"),
      "not even an error",
      null,
    ]
  ) {
    assert.equal(classifyAcceptError(error), "exhausted", String(error));
  }
});

Deno.test("AcceptLoop skips a connection that failed before accept without waiting", async () => {
  const good = new FakeConn();
  const listener = new ScriptedListener([
    ...Array.from(
      { length: 1000 },
      (_, i) =>
        i % 3 === 0
          ? notConnected()
          : i % 3 === 1
          ? new Deno.errors.ConnectionAborted()
          : new Deno.errors.ConnectionReset(),
    ),
    good,
  ]);
  const taken: FakeConn[] = [];
  const retries: number[] = [];
  const loop = new AcceptLoop({
    listener,
    onConnection: (conn) => taken.push(conn),
    onError: (_error, retryIn) => retries.push(retryIn),
  });
  await listener.accepted(1002);
  assert.deepEqual(taken, [good]);
  assert.equal(retries.length, 1000);
  assert.ok(retries.every((retryIn) => retryIn === 0), "a failure waited");
  loop.stop();
  await loop.done;
  assert.ok(listener.closed);
});

Deno.test("AcceptLoop backs off on exhaustion, doubling to its limit, and starts over after a success or quiet time", async () => {
  const listener = new ScriptedListener([
    emfile(),
    emfile(),
    enfile(),
    emfile(),
    emfile(),
    new FakeConn(), // a success: the next exhaustion starts over
    emfile(),
    emfile(),
    // 700 ms without a failure (reset is 500 ms): starts over too.
    new Promise((_, reject) => setTimeout(() => reject(emfile()), 700)),
    notConnected(), // one connection's failure: no wait, no doubling
    emfile(),
  ]);
  const retries: number[] = [];
  const loop = new AcceptLoop({
    listener,
    onConnection: () => {},
    onError: (_error, retryIn) => retries.push(retryIn),
    backoff: { min: 1, max: 8, reset: 500 },
  });
  await listener.accepted(12);
  assert.deepEqual(retries, [1, 2, 4, 8, 8, 1, 2, 1, 0, 2]);
  loop.stop();
  await loop.done;
});

Deno.test("AcceptLoop.stop() ends a back-off at once; wake() does not end it", async () => {
  const listener = new ScriptedListener([emfile(), new FakeConn()]);
  const taken: FakeConn[] = [];
  const loop = new AcceptLoop({
    listener,
    onConnection: (conn) => taken.push(conn),
    backoff: { min: 60_000, max: 60_000, reset: 60_000 },
  });
  await listener.accepted(1);
  loop.wake();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(listener.accepts, 1, "wake() ended the back-off");
  loop.stop();
  // Settles now, not in a minute (the test's sanitizers see no timer left).
  await within(loop.done, 5000, "the stopped loop");
  assert.deepEqual(taken, []);
  assert.ok(listener.closed);
});

Deno.test("AcceptLoop pauses while ready() is false and resumes on wake()", async () => {
  const conns = [new FakeConn(), new FakeConn(), new FakeConn()];
  const listener = new ScriptedListener([...conns]);
  const taken: FakeConn[] = [];
  let open = 0;
  const loop = new AcceptLoop({
    listener,
    ready: () => open < 2,
    onConnection: (conn) => {
      open++;
      taken.push(conn);
    },
  });
  await listener.accepted(2);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(listener.accepts, 2, "accepted past the limit");
  assert.deepEqual(taken, conns.slice(0, 2));
  loop.wake(); // still at the limit: asks again, stays paused
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(listener.accepts, 2);
  open--;
  loop.wake();
  await listener.accepted(3);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(taken, conns);
  assert.equal(listener.accepts, 3, "accepted past the limit");
  loop.stop(); // ends the pause
  await loop.done;
});

Deno.test("AcceptLoop stops when its signal aborts or its listener closes, and closes a connection accepted after stop()", async () => {
  const controller = new AbortController();
  const first = new ScriptedListener([]);
  const bySignal = new AcceptLoop({
    listener: first,
    onConnection: () => {},
    signal: controller.signal,
  });
  await first.accepted(1);
  controller.abort();
  await bySignal.done;
  assert.ok(first.closed && bySignal.stopped);

  const second = new ScriptedListener([]);
  const byClose = new AcceptLoop({ listener: second, onConnection: () => {} });
  await second.accepted(1);
  second.close();
  await byClose.done;
  assert.ok(byClose.stopped);

  const late = new FakeConn();
  let deliver!: (conn: FakeConn) => void;
  const third = new ScriptedListener([
    new Promise<FakeConn>((resolve) => deliver = resolve),
  ]);
  const taken: FakeConn[] = [];
  const loop = new AcceptLoop({
    listener: third,
    onConnection: (conn) => taken.push(conn),
  });
  await third.accepted(1);
  loop.stop();
  deliver(late);
  await loop.done;
  assert.deepEqual(taken, []);
  assert.ok(late.closed);

  const aborted = new AcceptLoop({
    listener: new ScriptedListener([new FakeConn()]),
    onConnection: () => assert.fail("accepted with an aborted signal"),
    signal: AbortSignal.abort(),
  });
  await aborted.done;
});

Deno.test("AcceptLoop closes a connection whose onConnection threw, reports it and goes on", async () => {
  const bad = new FakeConn();
  const good = new FakeConn();
  const listener = new ScriptedListener([bad, good]);
  const taken: FakeConn[] = [];
  const errors: unknown[] = [];
  const loop = new AcceptLoop({
    listener,
    onConnection: (conn) => {
      if (conn === bad) throw new Error("boom");
      taken.push(conn);
    },
    onError: (error) => {
      errors.push(error);
      throw new Error("a throwing hook is ignored");
    },
  });
  await listener.accepted(3);
  assert.ok(bad.closed);
  assert.deepEqual(taken, [good]);
  assert.match(String(errors[0]), /boom/);
  loop.stop();
  await loop.done;
});

// ---------------------------------------------------------------------------
// serveHttps(): one address cannot hold every connection.

/**
 * One HTTPS GET from `source` (a loopback address other than 127.0.0.1) by
 * the Python peer: Deno's clients cannot choose their source address.
 */
async function getFrom(
  pythonPath: string,
  source: string,
  port: number,
  caCert: string,
): Promise<string> {
  const caFile = await Deno.makeTempFile({ suffix: ".pem" });
  try {
    await Deno.writeTextFile(caFile, caCert);
    const output = await new Deno.Command(pythonPath, {
      args: [interopScript("https_get.py"), source, String(port), caFile],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    return new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr);
  } finally {
    await Deno.remove(caFile);
  }
}

/** A kept-alive TLS connection from 127.0.0.1 and a way to GET over it. */
async function holder(port: number, ca: string) {
  const conn = await Deno.connectTls({
    hostname: "localhost",
    port,
    caCerts: [ca],
  });
  const buffer = new Uint8Array(4096);
  return {
    conn,
    /** The response head, or "" when the server closed the connection. */
    async get(): Promise<string> {
      try {
        await conn.write(
          new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        const n = await within(conn.read(buffer), 5000, "a response");
        return n === null
          ? ""
          : new TextDecoder().decode(buffer.subarray(0, n));
      } catch {
        return "";
      }
    },
  };
}

peerTest(
  "serveHttps() closes a connection over maxPerAddress (64 by default) and still serves other addresses",
  python,
  async (pythonPath) => {
    const set = await generateCertificates({ clients: [] });
    const errors: string[] = [];
    await using server = await serveHttps({
      cert: set.server.cert,
      key: set.server.key,
      onError: (error) => errors.push(String(error)),
    }, (_request, info) => new Response(`hello ${info.remoteAddr.hostname}`));
    const port = server.addr.port;
    const held: Awaited<ReturnType<typeof holder>>[] = [];
    try {
      for (let i = 0; i < 64; i++) {
        const client = await holder(port, set.ca.cert);
        held.push(client);
        // A whole exchange: the server has surely counted this one.
        assert.match(await client.get(), /^HTTP\/1.1 200/, `connection ${i}`);
      }
      const extra = await holder(port, set.ca.cert);
      held.push(extra);
      assert.equal(await extra.get(), "", "the 65th connection was served");
      assert.match(
        errors.join("\n"),
        /RangeError: Cannot accept the connection: 64 from 127\.0\.0\.1 are open \(maxPerAddress\)/,
      );
      // Another address is served meanwhile.
      assert.match(
        await getFrom(pythonPath, "127.0.1.5", port, set.ca.cert),
        /^HTTP\/1.1 200[^]*hello 127\.0\.1\.5$/,
      );
      // Held connections are still served, and a closed one frees its slot.
      assert.match(await held[0].get(), /^HTTP\/1.1 200/);
      held.shift()!.conn.close();
      let served = false;
      for (let i = 0; i < 50 && !served; i++) {
        const again = await holder(port, set.ca.cert);
        held.push(again);
        served = /^HTTP\/1.1 200/.test(await again.get());
        if (!served) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(served, "a closed connection did not free its address's slot");
    } finally {
      for (const { conn } of held) conn.close();
    }
  },
);

// ---------------------------------------------------------------------------
// A real process out of file descriptors.

Deno.test("serve() backs off while the process is out of file descriptors (EMFILE) and serves again once they are freed", async () => {
  // The server runs in a child limited to 64 descriptors (bash's ulimit),
  // printing each failed accept (as Deno really throws it) on stdout and
  // its log, with the back-off it chose, on stderr.
  const code = `
    import { serve } from ${
    JSON.stringify(new URL("../../server.ts", import.meta.url).href)
  };
    const server = serve({
      port: 0,
      secret: ${JSON.stringify(KEY)},
      handshakeTimeout: 60_000,
      onError: (error, info) => {
        if (info.phase !== "accept") return;
        console.log(JSON.stringify({ code: error.code, message: error.message }));
      },
    }, async (conn) => {
      await conn.write(new TextEncoder().encode("ok"));
    });
    console.log(JSON.stringify({ port: server.addr.port }));
    setTimeout(() => Deno.exit(0), 60_000);
  `;
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      'ulimit -n 64 && exec "$0" eval --ext=ts "$1"',
      Deno.execPath(),
      code,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const stdout = lines(child.stdout);
  const stderrText = new Response(child.stderr).text();
  const held: Deno.Conn[] = [];
  try {
    const first = await within(stdout.next(), 20_000, "the child's port");
    const { port } = JSON.parse(first.value ?? "{}");
    assert.ok(port > 0, `no port from the child: ${first.value}`);
    // More than the child has descriptors for: the rest wait in its backlog.
    for (let i = 0; i < 80; i++) {
      held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    const failures: { code: string; message: string }[] = [];
    while (failures.length < 6) {
      const next = await within(stdout.next(), 10_000, "an EMFILE report");
      if (next.done) break;
      failures.push(JSON.parse(next.value));
    }
    assert.equal(failures.length, 6);
    for (const failure of failures) {
      assert.equal(failure.code, "EMFILE");
      assert.match(failure.message, /Too many open files/);
    }
    for (const conn of held.splice(0)) conn.close();
    // Once descriptors are free again the back-off ends by itself.
    using good = await connect({ port, secret: KEY, timeout: 10_000 });
    const reply = new Uint8Array(2);
    assert.equal(await good.read(reply), 2);
    assert.equal(new TextDecoder().decode(reply), "ok");
  } finally {
    for (const conn of held) conn.close();
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await child.status;
    for await (const _ of stdout) {
      // drain
    }
  }
  const log = await stderrText;
  const delays = [...log.matchAll(/retrying in (\d+) ms/g)].map((match) =>
    Number(match[1])
  );
  assert.deepEqual(delays.slice(0, 6), [5, 10, 20, 40, 80, 160], log);
  assert.ok(delays.every((delay) => delay <= 1000), log);
});
