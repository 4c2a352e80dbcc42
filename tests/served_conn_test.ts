// Tests for what serve()'s handler and hooks are given (issue 14): a
// connection with read()/write() like connect()'s, on serve()'s own
// listener and on a stream-only one (_served_conn.ts); one log line for a
// client that resets mid-transfer; addresses that print as plain objects.
import assert from "node:assert/strict";
import {
  type AuthenticatedConn,
  connect,
  type ConnectionInfo,
  serve,
} from "../server.ts";
import { ServeReporter } from "../_serve_report.ts";
import { withReadWrite } from "../_served_conn.ts";
import {
  connectMultiprocessing,
  listenMultiprocessing,
} from "../multiprocessing.ts";
import { captureStderr, streamOnlyListener } from "./_serve_helpers.ts";
import { connectTls, listenTls, type TlsServerConn } from "../tls.ts";
import { ServerConn as TlsServerConnClass } from "../_tls_server_conn.ts";
import { generateCertificates } from "../certs.ts";
import { clientAuthenticate } from "../handshake.ts";

const KEY = "peanut butter";

/** What both a Deno.TcpConn and an AuthenticatedConn have. */
interface Io {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
}

/** Writes one line. The same code on both ends. */
async function sendLine(conn: Io, text: string): Promise<void> {
  const data = new TextEncoder().encode(`${text}\n`);
  for (let n = 0; n < data.length;) n += await conn.write(data.subarray(n));
}

/** Reads one line (at most 1000 bytes); null at the end of the stream. */
async function receiveLine(conn: Io): Promise<string | null> {
  const bytes: number[] = [];
  const chunk = new Uint8Array(1);
  while (bytes.length < 1000) {
    if ((await conn.read(chunk)) === null) return null;
    if (chunk[0] === 10) break;
    bytes.push(chunk[0]);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The server side of a tiny protocol, in the same terms as the client's. */
async function greet(conn: Io): Promise<void> {
  for (let line; (line = await receiveLine(conn)) !== null;) {
    await sendLine(conn, `hello, ${line}`);
  }
}

for (const kind of ["serve()'s own listener", "a stream-only listener"]) {
  Deno.test(`serve() gives the handler read() and write() like connect()'s, on ${kind}`, async () => {
    const tags: unknown[] = [];
    await using server = serve(
      {
        port: 0,
        secret: KEY,
        log: false,
        listener: kind === "a stream-only listener"
          ? streamOnlyListener()
          : undefined,
      },
      async (conn: AuthenticatedConn) => {
        tags.push((conn as unknown as { tag?: string }).tag);
        assert.equal(typeof conn.read, "function");
        assert.ok("write" in conn);
        await greet(conn);
      },
    );
    const { port } = server.addr as Deno.NetAddr;
    using conn = await connect({ port, secret: KEY, timeout: 5000 });
    for (const name of ["alice", "bob"]) {
      await sendLine(conn, name);
      assert.equal(await receiveLine(conn), `hello, ${name}`);
    }
    conn.closeWrite();
    assert.equal(await receiveLine(conn), null);
    assert.deepEqual(
      tags,
      [kind === "a stream-only listener" ? "stream-only" : undefined],
    );
  });
}

Deno.test("withReadWrite() leaves a Deno.Conn as it is, and reads a stream-only one in pieces and to its end", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({ port: listener.addr.port });
  using conn = await listener.accept();
  assert.equal(withReadWrite(conn), conn);
  const view = withReadWrite({
    remoteAddr: conn.remoteAddr,
    localAddr: conn.localAddr,
    readable: conn.readable,
    writable: conn.writable,
    close: () => conn.close(),
  });
  await client.write(new TextEncoder().encode("abcdef"));
  const buffer = new Uint8Array(4);
  let text = "";
  while (text.length < 6) {
    const count = await view.read(buffer);
    assert.ok(count !== null && count <= 4);
    text += new TextDecoder().decode(buffer.subarray(0, count));
  }
  assert.equal(text, "abcdef");
  assert.equal(await view.read(new Uint8Array(0)), 0);
  assert.equal(await view.write(new TextEncoder().encode("xyz")), 3);
  const echoed = new Uint8Array(3);
  assert.equal(await client.read(echoed), 3);
  assert.equal(new TextDecoder().decode(echoed), "xyz");
  client.closeWrite();
  assert.equal(await view.read(buffer), null);
});

/**
 * A stream-only connection of its own class, as a tls.ts connection is:
 * #private state behind a method, a getter and a setter, and a dispose.
 */
class PrivateConn {
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  readonly writable: WritableStream<Uint8Array>;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  #conn: Deno.Conn;
  #closes = 0;
  #label = "";

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.readable = conn.readable;
    this.writable = conn.writable;
    this.remoteAddr = conn.remoteAddr as Deno.NetAddr;
    this.localAddr = conn.localAddr as Deno.NetAddr;
  }

  get closes(): number {
    return this.#closes;
  }

  get label(): string {
    return this.#label;
  }

  set label(value: string) {
    this.#label = value;
  }

  close(): void {
    if (this.#closes++ === 0) this.#conn.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

Deno.test("withReadWrite() keeps a stream-only connection's class, methods, getters, setters and dispose working", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({ port: listener.addr.port });
  const target = new PrivateConn(await listener.accept());
  const conn = withReadWrite(target) as unknown as PrivateConn & Io;
  assert.ok(conn instanceof PrivateConn);
  assert.equal(conn.constructor, PrivateConn);
  // A setter reaches the connection's #private state.
  conn.label = "alice";
  assert.equal(conn.label, "alice");
  assert.equal(target.label, "alice");
  // One bound method, the same each time (no allocation per call).
  assert.equal(conn.close, conn.close);
  assert.equal(conn[Symbol.dispose], conn[Symbol.dispose]);
  assert.equal(conn.read, conn.read);
  await client.write(new TextEncoder().encode("x\n"));
  assert.equal(await receiveLine(conn), "x");
  {
    using _disposed = conn;
  }
  assert.equal(target.closes, 1);
  const { close } = conn;
  close();
  assert.equal(target.closes, 2);
  assert.equal(await client.read(new Uint8Array(1)), null);
});

Deno.test("withReadWrite() reads keep one reader, let go of it when the handler takes readable, and may overlap; so may writes", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({ port: listener.addr.port });
  using target = await listener.accept();
  const conn = withReadWrite({
    remoteAddr: target.remoteAddr,
    localAddr: target.localAddr,
    readable: target.readable,
    writable: target.writable,
    close: () => target.close(),
  });
  const encoder = new TextEncoder();
  await client.write(encoder.encode("a"));
  assert.equal(await conn.read(new Uint8Array(8)), 1);
  // The reader is kept between reads; asking for readable lets go of it.
  assert.equal(target.readable.locked, true);
  const readable = conn.readable;
  assert.equal(readable.locked, false);
  const reader = readable.getReader();
  await client.write(encoder.encode("b"));
  assert.deepEqual((await reader.read()).value, encoder.encode("b"));
  reader.releaseLock();
  // Two reads at once, as a Deno.Conn allows: each gets its own bytes.
  const first = new Uint8Array(1);
  const second = new Uint8Array(1);
  const reads = Promise.all([conn.read(first), conn.read(second)]);
  await client.write(encoder.encode("c"));
  await new Promise((resolve) => setTimeout(resolve, 20));
  await client.write(encoder.encode("d"));
  assert.deepEqual(await reads, [1, 1]);
  assert.equal(
    new TextDecoder().decode(new Uint8Array([...first, ...second])),
    "cd",
  );
  // Writes at once, as a Deno.Conn allows: all go out, in order; then
  // writable is free again.
  const words = Array.from({ length: 20 }, (_, i) => `${i},`);
  const written = await Promise.all(
    words.map((word) => conn.write(encoder.encode(word))),
  );
  assert.deepEqual(written, words.map((word) => word.length));
  assert.equal(conn.writable.locked, false);
  const expected = words.join("");
  const received = new Uint8Array(expected.length);
  for (let got = 0; got < received.length;) {
    got += (await client.read(received.subarray(got))) ?? received.length;
  }
  assert.equal(new TextDecoder().decode(received), expected);
  // A read under way keeps its reader: readable stays locked meanwhile.
  const pending = conn.read(new Uint8Array(1));
  assert.equal(conn.readable.locked, true);
  client.closeWrite();
  assert.equal(await pending, null);
});

Deno.test("serve() over listenTls() gives the handler read() and write() on the TLS connection itself: its class, peer identity, close and the end of the stream", async () => {
  const set = await generateCertificates({ clients: ["alice"] });
  const seen: unknown[] = [];
  const done = Promise.withResolvers<void>();
  await using server = serve(
    {
      listener: await listenTls({
        cert: set.server.cert,
        key: set.server.key,
        clientCa: set.ca.cert,
      }),
      secret: KEY,
      log: false,
    },
    async (conn: AuthenticatedConn) => {
      try {
        const tls = conn as AuthenticatedConn & TlsServerConn;
        seen.push(conn instanceof TlsServerConnClass, tls.peerIdentity?.cn);
        await greet(conn);
        // The client closed: read() said so (null), then close() runs once.
        assert.equal(await conn.read(new Uint8Array(1)), null);
        tls.close();
        tls.close();
      } finally {
        done.resolve();
      }
    },
  );
  const { port } = server.addr as Deno.NetAddr;
  {
    using conn = await connectTls({
      hostname: "localhost",
      port,
      caCerts: [set.ca.cert],
      cert: set.clients.alice.cert,
      key: set.clients.alice.key,
    });
    await clientAuthenticate(conn, KEY);
    const writer = conn.writable.getWriter();
    const reader = conn.readable.getReader();
    let text = "";
    for (const name of ["alice", "bob"]) {
      await writer.write(new TextEncoder().encode(`${name}\n`));
      while (!text.includes(`hello, ${name}\n`)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    }
    assert.equal(text, "hello, alice\nhello, bob\n");
    await writer.close();
    assert.equal((await reader.read()).done, true);
  }
  await done.promise;
  assert.deepEqual(seen, [true, "alice"]);
});

Deno.test("serve()'s default log shows a client that resets mid-transfer in one line, with no stack", async () => {
  const errors: unknown[] = [];
  const log = await captureStderr(async () => {
    await using server = serve(
      { port: 0, secret: KEY, onError: (error) => errors.push(error) },
      async (conn) => {
        // Sends until the client's reset stops it (bounded: 16 MiB).
        const chunk = new Uint8Array(64 * 1024);
        for (let i = 0; i < 256; i++) {
          for (let n = 0; n < chunk.length;) {
            n += await conn.write(chunk.subarray(n));
          }
        }
      },
    );
    const { port } = server.addr as Deno.NetAddr;
    const conn = await connect({ port, secret: KEY, timeout: 5000 });
    // Unread bytes in our receive buffer: closing now sends a reset.
    await new Promise((resolve) => setTimeout(resolve, 100));
    conn.close();
    for (let i = 0; i < 500 && errors.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });
  assert.equal(errors.length, 1);
  assert.ok(
    errors[0] instanceof Deno.errors.ConnectionReset ||
      errors[0] instanceof Deno.errors.BrokenPipe,
    String(errors[0]),
  );
  const lines = log.filter((line) => line.includes("handler failed"));
  assert.equal(lines.length, 1, log.join("\n"));
  assert.match(
    lines[0],
    /^connauth: 127\.0\.0\.1:\d+: handler failed: (connection reset by peer|broken pipe \(the peer closed its end\))$/,
  );
});

Deno.test("ServeReporter logs a peer's reset in one line and a handler's bug with its stack", async () => {
  const remoteAddr: Deno.NetAddr = {
    transport: "tcp",
    hostname: "192.0.2.7",
    port: 5000,
  };
  const lines = await captureStderr(() => {
    const reporter = new ServeReporter({}, true);
    reporter.error(
      new Deno.errors.ConnectionReset(
        "Connection reset by peer (os error 104)",
      ),
      { phase: "handler", remoteAddr },
    );
    reporter.error(new TypeError("a bug"), { phase: "handler", remoteAddr });
    return Promise.resolve();
  });
  assert.equal(
    lines[0],
    "connauth: 192.0.2.7:5000: handler failed: connection reset by peer",
  );
  assert.match(lines[1], /handler failed: TypeError: a bug\n\s+at /);
});

/** Whether `value` prints as a plain object. */
function printsPlain(value: unknown): boolean {
  const text = Deno.inspect(value);
  return text.startsWith("{") && !text.includes("null prototype");
}

Deno.test("serve() and its hooks give addresses that print as plain objects", async () => {
  const infos: ConnectionInfo[] = [];
  await using server = serve(
    {
      port: 0,
      secret: KEY,
      log: false,
      onConnection: (info) => infos.push(info),
    },
    (conn) => conn.close(),
  );
  assert.ok(printsPlain(server.addr), Deno.inspect(server.addr));
  const { port } = server.addr as Deno.NetAddr;
  assert.equal(
    Deno.inspect(server.addr),
    Deno.inspect({ hostname: "127.0.0.1", port, transport: "tcp" }),
  );
  using _conn = await connect({ port, secret: KEY, timeout: 5000 });
  for (let i = 0; i < 500 && infos.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(
    printsPlain(infos[0].remoteAddr),
    Deno.inspect(infos[0].remoteAddr),
  );
  assert.ok(printsPlain(infos[0].localAddr));
});

Deno.test("listenMultiprocessing() and its connections give addresses that print as plain objects", async () => {
  await using listener = await listenMultiprocessing({ authkey: KEY });
  assert.ok(printsPlain(listener.addr), Deno.inspect(listener.addr));
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: KEY,
  });
  await using conn = await listener.accept();
  for (const addr of [client.localAddr, client.remoteAddr, conn.remoteAddr]) {
    assert.ok(printsPlain(addr), Deno.inspect(addr));
  }
});
