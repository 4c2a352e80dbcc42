// Tests for _tls_client_conn.ts: connectTls()'s connection over a fake
// transport. Until the server sent something, a failure is mapped by the
// refusal function; a failed write reads (the probe) to learn how the
// server closed, and what that read returned is kept for the next read.
import assert from "node:assert/strict";
import { ClientConn, type ClientTransport } from "../_tls_client_conn.ts";

const ADDR: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };

/** What a fake read does: bytes, EOF (null), an error, or never answer. */
type ReadStep = Uint8Array | null | Error | "never";

/** A transport whose reads follow `reads` and whose writes all fail. */
function fakeTransport(reads: ReadStep[], writeError?: Error) {
  const calls = { reads: 0, writes: 0, closed: false };
  const transport: ClientTransport = {
    remoteAddr: ADDR,
    localAddr: ADDR,
    read(buffer) {
      calls.reads++;
      const step = reads.shift() ?? null;
      if (step === "never") return new Promise(() => {});
      if (step instanceof Error) return Promise.reject(step);
      if (step === null) return Promise.resolve(null);
      buffer.set(step);
      return Promise.resolve(step.byteLength);
    },
    write(bytes) {
      calls.writes++;
      if (writeError) return Promise.reject(writeError);
      return Promise.resolve(bytes.byteLength);
    },
    closeWrite: () => Promise.resolve(),
    close() {
      calls.closed = true;
    },
  };
  return { transport, calls };
}

class Refused extends Error {}

/** The refusal function: maps EOF and resets, as connectTls's does. */
function refusal(error: unknown): Refused | null {
  return error instanceof Deno.errors.UnexpectedEof ||
      error instanceof Deno.errors.ConnectionReset
    ? new Refused("refused", { cause: error })
    : null;
}

function connOver(transport: ClientTransport, probeWait = 1000) {
  return new ClientConn(transport, {
    alpnProtocol: null,
    refusal,
    probeWait,
  });
}

async function write(conn: ClientConn, text: string): Promise<void> {
  const writer = conn.writable.getWriter();
  try {
    await writer.write(new TextEncoder().encode(text));
  } finally {
    writer.releaseLock();
  }
}

async function readOnce(conn: ClientConn): Promise<string | null> {
  const reader = conn.readable.getReader();
  try {
    const { value, done } = await reader.read();
    return done ? null : new TextDecoder().decode(value);
  } finally {
    reader.releaseLock();
  }
}

Deno.test("ClientConn maps a write the server refused by a bare close, learned by its probe", async () => {
  const { transport, calls } = fakeTransport(
    [new Deno.errors.UnexpectedEof("eof")],
    new Deno.errors.BrokenPipe("broken pipe"),
  );
  using conn = connOver(transport);
  await assert.rejects(write(conn, "hello"), Refused);
  assert.equal(calls.reads, 1);
  // The probe's outcome is the next read's: the same refusal.
  await assert.rejects(readOnce(conn), Refused);
  assert.equal(calls.reads, 1);
});

Deno.test("ClientConn keeps the bytes its write probe read for the next read", async () => {
  const { transport, calls } = fakeTransport(
    [new TextEncoder().encode("bye"), null],
    new Deno.errors.BrokenPipe("broken pipe"),
  );
  using conn = connOver(transport);
  // The server spoke: the write fails as itself, not as a refusal.
  await assert.rejects(write(conn, "hello"), Deno.errors.BrokenPipe);
  assert.equal(await readOnce(conn), "bye");
  assert.equal(calls.reads, 1);
  assert.equal(await readOnce(conn), null);
  assert.equal(calls.reads, 2);
});

Deno.test("ClientConn leaves a write error as it is when the probe gets no answer in time", async () => {
  const { transport } = fakeTransport(
    ["never"],
    new Deno.errors.ConnectionReset("reset"),
  );
  const conn = connOver(transport, 20);
  await assert.rejects(write(conn, "hello"), Deno.errors.ConnectionReset);
  conn.close();
});

Deno.test("ClientConn maps a read error only until the server has sent something", async () => {
  {
    const { transport } = fakeTransport([new Deno.errors.ConnectionReset("x")]);
    using conn = connOver(transport);
    await assert.rejects(readOnce(conn), Refused);
  }
  {
    const { transport } = fakeTransport([
      new TextEncoder().encode("hi"),
      new Deno.errors.ConnectionReset("x"),
    ]);
    using conn = connOver(transport);
    assert.equal(await readOnce(conn), "hi");
    await assert.rejects(readOnce(conn), Deno.errors.ConnectionReset);
  }
});

Deno.test("ClientConn ends its readable on EOF and on a closed resource, and closes once", async () => {
  for (const end of [null, new Deno.errors.BadResource("closed")]) {
    const { transport, calls } = fakeTransport([end]);
    const conn = connOver(transport);
    assert.equal(await readOnce(conn), null);
    conn.close();
    conn.close();
    assert.equal(calls.closed, true);
  }
});

Deno.test("ClientConn leaves an error that is no refusal as it is", async () => {
  const { transport } = fakeTransport(
    [],
    new Deno.errors.PermissionDenied("x"),
  );
  using conn = connOver(transport);
  await assert.rejects(write(conn, "hello"), Deno.errors.PermissionDenied);
});
