// Tests for _noise_frames.ts: FrameIO over a duplex stream pair and over a
// Deno.Conn-like object (no sockets): the 2-byte length framing, the end of
// the stream, a frame cut short, and the refusal of a locked stream.
import assert from "node:assert/strict";
import { FrameIO } from "../_noise_frames.ts";
import { ProtocolError } from "../errors.ts";
import { duplexPair } from "./_helpers.ts";

/** A Deno.Conn-like end that reads `input` in `step`-byte pieces. */
function connLike(input: Uint8Array, step: number) {
  let offset = 0;
  const written: number[] = [];
  return {
    written,
    halfClosed: false,
    closed: false,
    // A Deno.Conn's streams would close the socket at the end of the stream.
    get readable(): never {
      throw new Error("FrameIO used the readable of a Deno.Conn");
    },
    get writable(): never {
      throw new Error("FrameIO used the writable of a Deno.Conn");
    },
    read(buffer: Uint8Array): Promise<number | null> {
      if (offset >= input.byteLength) return Promise.resolve(null);
      const count = Math.min(
        step,
        buffer.byteLength,
        input.byteLength - offset,
      );
      buffer.set(input.subarray(offset, offset + count));
      offset += count;
      return Promise.resolve(count);
    },
    write(data: Uint8Array): Promise<number> {
      written.push(...data);
      return Promise.resolve(data.byteLength);
    },
    closeWrite(): Promise<void> {
      this.halfClosed = true;
      return Promise.resolve();
    },
    close(): void {
      this.closed = true;
    },
  };
}

Deno.test("FrameIO writes and reads length-prefixed frames over a duplex stream pair", async () => {
  const [a, b] = duplexPair();
  const writer = new FrameIO(a, 8);
  const reader = new FrameIO(b, 8);
  const big = new Uint8Array(40_000).map((_, i) => i % 251);
  const writing = (async () => {
    await writer.writeFrame(new Uint8Array([1, 2, 3]));
    await writer.writeFrame(new Uint8Array(0));
    await writer.writeFrame(big);
    await writer.closeWrite();
  })();
  assert.equal(await reader.readLength("a frame"), 3);
  assert.deepEqual(
    (await reader.readBody(3, "a frame")).slice(),
    new Uint8Array([1, 2, 3]),
  );
  assert.equal(await reader.readLength("a frame"), 0);
  assert.equal(await reader.readLength("a frame"), 40_000);
  assert.deepEqual((await reader.readBody(40_000, "a frame")).slice(), big);
  assert.equal(await reader.readLength("a frame"), null);
  await writing;
  writer.close();
  reader.close();
});

Deno.test("FrameIO reads a Deno.Conn-like end with its own read(), a few bytes at a time", async () => {
  const conn = connLike(new Uint8Array([0, 2, 9, 8, 0, 5, 1]), 1);
  const io = new FrameIO(conn, 4);
  assert.equal(await io.readLength("a frame"), 2);
  assert.deepEqual(
    (await io.readBody(2, "a frame")).slice(),
    new Uint8Array([9, 8]),
  );
  assert.equal(await io.readLength("a frame"), 5);
  await assert.rejects(
    io.readBody(5, "Noise message 1"),
    (error: unknown) =>
      error instanceof ProtocolError && error.reason === "closed" &&
      /Noise message 1: .* after 1 of 5 bytes/.test(error.message),
  );
  await io.writeFrame(new Uint8Array([7]));
  assert.deepEqual(conn.written, [0, 1, 7]);
  await io.closeWrite();
  assert.ok(conn.halfClosed);
  io.close();
  assert.ok(conn.closed && io.closed);
});

Deno.test("FrameIO refuses a stream whose writable is locked, and leaves its readable free", () => {
  const [a] = duplexPair();
  const held = a.writable.getWriter();
  assert.throws(
    () => new FrameIO(a, 8),
    (error: unknown) =>
      error instanceof TypeError &&
      /writable stream is locked/.test(error.message),
  );
  assert.equal(a.readable.locked, false);
  held.releaseLock();
});
