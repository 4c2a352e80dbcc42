// _http1_deadlines.ts: the silence, request and write deadlines of one
// served connection. Lower bounds only: a loaded machine may fire a timer
// late, never early.
import assert from "node:assert/strict";
import { Http1Deadlines } from "../_http1_deadlines.ts";
import { within } from "./_helpers.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Deadlines whose callbacks resolve promises, with the time each fired. */
function watched(silence: number) {
  const start = performance.now();
  const read = Promise.withResolvers<number>();
  const write = Promise.withResolvers<number>();
  const deadlines = new Http1Deadlines(
    silence,
    () => read.resolve(performance.now() - start),
    () => write.resolve(performance.now() - start),
  );
  return { deadlines, read: read.promise, write: write.promise };
}

Deno.test("Http1Deadlines calls onReadLate after the silence, which heard() starts again", async () => {
  const { deadlines, read } = watched(150);
  deadlines.expect(60_000);
  for (let i = 0; i < 4; i++) {
    await sleep(50);
    deadlines.heard();
  }
  const ms = await within(read, 5000, "the silence deadline");
  deadlines.stop();
  // Four sounds 50 ms apart, then 150 ms of silence.
  assert.ok(ms >= 340, `fired after ${ms} ms`);
});

Deno.test("Http1Deadlines calls onReadLate at the request deadline, however often heard()", async () => {
  const { deadlines, read } = watched(150);
  deadlines.expect(300);
  let fired = false;
  read.then(() => fired = true);
  for (let i = 0; i < 100 && !fired; i++) {
    await sleep(20);
    deadlines.heard();
  }
  const ms = await within(read, 5000, "the request deadline");
  deadlines.stop();
  assert.ok(ms >= 295, `fired after ${ms} ms`);
});

Deno.test("Http1Deadlines.pause() turns the read deadlines off; heard() leaves them off", async () => {
  const { deadlines, read } = watched(50);
  deadlines.expect(50);
  deadlines.pause();
  deadlines.heard();
  let fired = false;
  read.then(() => fired = true);
  await sleep(200);
  assert.equal(fired, false);
  deadlines.expect(50); // and on again
  await within(read, 5000, "the deadline after pause()");
  deadlines.stop();
});

Deno.test("Http1Deadlines calls onWriteLate when a write takes longer than the silence", async () => {
  const { deadlines, read, write } = watched(100);
  let readLate = false;
  read.then(() => readLate = true);
  deadlines.writing();
  deadlines.written(); // a write that finished in time
  await sleep(150);
  deadlines.writing();
  const ms = await within(write, 5000, "the write deadline");
  deadlines.stop();
  assert.ok(ms >= 245, `fired after ${ms} ms`);
  assert.equal(readLate, false);
});

Deno.test("Http1Deadlines.stop() ends every deadline; Infinity sets none", async () => {
  const stopped = watched(20);
  stopped.deadlines.expect(20);
  stopped.deadlines.writing();
  stopped.deadlines.stop();
  const none = watched(Infinity);
  none.deadlines.expect(Infinity);
  none.deadlines.writing();
  let fired = 0;
  for (const { read, write } of [stopped, none]) {
    read.then(() => fired++);
    write.then(() => fired++);
  }
  await sleep(100);
  assert.equal(fired, 0);
  // No timer is left behind (the test's sanitizer would say so).
});

Deno.test("Http1Deadlines sets one timer for a deadline past the longest timer delay", async () => {
  // A delay over 2^31 - 1 ms fires at once; re-armed on every tick, it
  // would spin the CPU until the deadline.
  const real = globalThis.setTimeout;
  let timers = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    timers++;
    return real(...args);
  }) as typeof setTimeout;
  const { deadlines } = watched(3e9);
  try {
    deadlines.expect(3e9);
    await new Promise((resolve) => real(resolve, 100));
  } finally {
    globalThis.setTimeout = real;
    deadlines.stop();
  }
  assert.equal(timers, 1);
});
