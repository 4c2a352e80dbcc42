// Hostile peers against the accept loops (_accept.ts) of serve(),
// serveHttps() and listenMultiprocessing(): clients that reset their
// connection before it was accepted, a process out of file descriptors,
// one address holding every connection.
import assert from "node:assert/strict";
import net from "node:net";
import {
  AcceptLoop,
  type AcceptSource,
  addressKey,
  classifyAcceptError,
} from "../../_accept.ts";
import { generateCertificates } from "../../certs.ts";
import { serveHttps } from "../../https.ts";
import {
  connectMultiprocessing,
  listenMultiprocessing,
} from "../../multiprocessing.ts";
import { connect, serve, type ServeErrorInfo } from "../../server.ts";
import { findPython, interopScript, peerTest, within } from "../_helpers.ts";

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
      key: KEY,
      log: false,
      onError: (error, info) => errors.push({ error, info }),
    }, async (conn) => {
      await conn.readable.pipeTo(conn.writable);
    });
    const port = (server.addr as Deno.NetAddr).port;
    try {
      resetBurst(pythonPath, port);
      const good = (async () => {
        using conn = await connect({ port, key: KEY, timeout: 30_000 });
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
