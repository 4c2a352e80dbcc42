// Tests for _multiprocessing_frame.ts: the length header and FrameWire, on
// a scripted transport (no sockets): how reads are cut, what is refused
// before anything is allocated, and that concurrent writes stay whole.
import assert from "node:assert/strict";
import { frameHeader, FrameWire } from "../_multiprocessing_frame.ts";
import { ProtocolError } from "../errors.ts";

function toHex(bytes: Uint8Array): string {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * A transport that delivers `chunks` one per read (cut further to the
 * reader's buffer), then the end of stream; it records the size of every
 * read buffer and every write.
 */
class ScriptedTransport {
  readSizes: number[] = [];
  written: Uint8Array[] = [];
  closed = false;
  #chunks: Uint8Array[];
  #writeStep: number;

  /** `writeStep`: the most bytes one write() takes (partial writes). */
  constructor(chunks: Uint8Array[], writeStep = Infinity) {
    this.#chunks = chunks.map((chunk) => chunk.slice());
    this.#writeStep = writeStep;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    this.readSizes.push(buffer.byteLength);
    const chunk = this.#chunks.shift();
    if (chunk === undefined) return Promise.resolve(null);
    const count = Math.min(chunk.byteLength, buffer.byteLength);
    buffer.set(chunk.subarray(0, count));
    if (count < chunk.byteLength) this.#chunks.unshift(chunk.subarray(count));
    return Promise.resolve(count);
  }

  async write(data: Uint8Array): Promise<number> {
    await Promise.resolve(); // let other writers try to interleave
    const count = Math.min(data.byteLength, this.#writeStep);
    this.written.push(data.slice(0, count));
    return count;
  }

  close(): void {
    this.closed = true;
  }

  /** Every byte written, in order. */
  get output(): Uint8Array {
    const total = this.written.reduce((n, part) => n + part.byteLength, 0);
    const out = new Uint8Array(total);
    let offset = 0;
    for (const part of this.written) {
      out.set(part, offset);
      offset += part.byteLength;
    }
    return out;
  }
}

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.byteLength);
  out.set(frameHeader(payload.byteLength));
  out.set(payload, 4);
  return out;
}

const tooLarge = (size: number | bigint) =>
  new ProtocolError(`too large: ${size}`, "too-large");

Deno.test("frameHeader() writes CPython's 4-byte and -1 + 8-byte length headers", () => {
  // Expected bytes from CPython 3.12: struct.pack("!i", n) up to 0x7fffffff,
  // else struct.pack("!i", -1) + struct.pack("!Q", n).
  const cases: [number, string][] = [
    [0, "00000000"],
    [5, "00000005"],
    [0x7fffffff, "7fffffff"],
    [2 ** 31, "ffffffff" + "0000000080000000"],
    [2 ** 40 + 5, "ffffffff" + "0000010000000005"],
    [Number.MAX_SAFE_INTEGER, "ffffffff" + "001fffffffffffff"],
  ];
  for (const [size, expected] of cases) {
    assert.equal(toHex(frameHeader(size)), expected, `size ${size}`);
  }
  for (const bad of [-1, 1.5, NaN, 2 ** 53]) {
    assert.throws(() => frameHeader(bad), RangeError);
  }
});

Deno.test("FrameWire.readFrame() joins a frame delivered one byte at a time, and returns null at a clean end", async () => {
  const bytes = frame(new Uint8Array([1, 2, 3, 4, 5]));
  const transport = new ScriptedTransport(
    Array.from(bytes, (byte) => new Uint8Array([byte])),
  );
  const wire = new FrameWire(transport, 16);
  assert.deepEqual(
    await wire.readFrame(100, "the message", tooLarge),
    new Uint8Array([1, 2, 3, 4, 5]),
  );
  assert.equal(await wire.readFrame(100, "the message", tooLarge), null);
});

Deno.test("FrameWire.readFrame() reads ahead into its buffer, and a message larger than the buffer straight into the message", async () => {
  const small = [frame(new Uint8Array([7])), frame(new Uint8Array([8, 9]))];
  const big = new Uint8Array(100).fill(42);
  // Both small frames and the big frame's header arrive in one read.
  const transport = new ScriptedTransport([
    new Uint8Array([...small[0], ...small[1], ...frameHeader(100)]),
    big,
  ]);
  const wire = new FrameWire(transport, 32);
  assert.deepEqual(
    await wire.readFrame(1000, "m", tooLarge),
    new Uint8Array([7]),
  );
  assert.deepEqual(
    await wire.readFrame(1000, "m", tooLarge),
    new Uint8Array([8, 9]),
  );
  assert.deepEqual(await wire.readFrame(1000, "m", tooLarge), big);
  // One read of the buffer's size, then one of the whole message's.
  assert.deepEqual(transport.readSizes, [32, 100]);
});

Deno.test("FrameWire.readFrame() refuses a length over its maximum before reading or allocating it", async () => {
  const cases: [string, Uint8Array, bigint | number][] = [
    ["a short header", frameHeader(1001), 1001],
    ["a long header", frameHeader(2 ** 40), 2n ** 40n],
    [
      "a long header over 2^53",
      new Uint8Array([0xff, 0xff, 0xff, 0xff, ...new Uint8Array(8).fill(0xff)]),
      2n ** 64n - 1n,
    ],
  ];
  for (const [label, header, size] of cases) {
    const transport = new ScriptedTransport([header]);
    const wire = new FrameWire(transport, 64);
    await assert.rejects(
      wire.readFrame(1000, "m", tooLarge),
      { message: `too large: ${size}` },
      label,
    );
    // Nothing but the header was asked for.
    assert.equal(transport.readSizes.length, 1, label);
  }
  // With no limit, a length no array can hold is the peer's error too.
  const wire = new FrameWire(new ScriptedTransport([frameHeader(2 ** 52)]), 64);
  await assert.rejects(
    wire.readFrame(Infinity, "the message", tooLarge),
    (error: unknown) =>
      error instanceof ProtocolError && error.reason === "too-large" &&
      /4503599627370496 bytes, more than this process can allocate/.test(
        error.message,
      ),
  );
});

Deno.test("FrameWire.readFrame() refuses a negative length and a frame cut short", async () => {
  await assert.rejects(
    new FrameWire(new ScriptedTransport([new Uint8Array([0x80, 0, 0, 0])]), 16)
      .readFrame(100, "the message", tooLarge),
    (error: unknown) =>
      error instanceof ProtocolError && error.reason === "malformed" &&
      /negative length -2147483648/.test(error.message),
  );
  const cut: [Uint8Array, RegExp][] = [
    [new Uint8Array([0, 0]), /the length of the message: .* after 2 of 4/],
    [new Uint8Array([0, 0, 0, 9, 1, 2]), /the message: .* after 2 of 9/],
    [new Uint8Array([0xff, 0xff, 0xff, 0xff, 0]), /after 1 of 8 bytes/],
  ];
  for (const [bytes, pattern] of cut) {
    await assert.rejects(
      new FrameWire(new ScriptedTransport([bytes]), 16)
        .readFrame(100, "the message", tooLarge),
      (error: unknown) =>
        error instanceof ProtocolError && error.reason === "closed" &&
        pattern.test(error.message),
    );
  }
});

Deno.test("FrameWire.enlarge() keeps the bytes read ahead", async () => {
  const transport = new ScriptedTransport([
    new Uint8Array([
      ...frame(new Uint8Array([1])),
      ...frame(new Uint8Array([2, 3])),
    ]),
    frame(new Uint8Array(50).fill(4)),
  ]);
  const wire = new FrameWire(transport, 16);
  assert.deepEqual(
    await wire.readFrame(100, "m", tooLarge),
    new Uint8Array([1]),
  );
  wire.enlarge(256);
  wire.enlarge(8); // never shrinks
  assert.deepEqual(
    await wire.readFrame(100, "m", tooLarge),
    new Uint8Array([2, 3]),
  );
  assert.deepEqual(
    await wire.readFrame(100, "m", tooLarge),
    new Uint8Array(50).fill(4),
  );
  assert.deepEqual(transport.readSizes, [16, 256]);
});

Deno.test("FrameWire.writeFrame() keeps concurrent frames whole and in order over partial writes", async () => {
  const transport = new ScriptedTransport([], 3);
  const wire = new FrameWire(transport, 16);
  const messages = [
    new Uint8Array(10).fill(1),
    new Uint8Array(0),
    new Uint8Array(20_000).fill(3), // over 16 KiB: header and payload apart
  ];
  await Promise.all(messages.map((message) => wire.writeFrame(message)));
  assert.deepEqual(
    transport.output,
    new Uint8Array([...messages.flatMap((m) => [...frame(m)])]),
  );
  wire.close();
  assert.ok(transport.closed);
  await assert.rejects(
    wire.writeFrame(new Uint8Array(1)),
    Deno.errors.BadResource,
  );
  await wire.settled();
});
