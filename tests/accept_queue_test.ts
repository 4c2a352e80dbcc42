// Tests for _accept_queue.ts: the hand-over between handshakes and accept().
import assert from "node:assert/strict";
import { AcceptQueue } from "../_accept_queue.ts";

function queue(limit: number) {
  const disposed: string[] = [];
  let spaces = 0;
  const q = new AcceptQueue<string>({
    limit,
    dispose: (conn) => disposed.push(conn),
    onSpace: () => spaces++,
  });
  return { q, disposed, spaces: () => spaces };
}

Deno.test("AcceptQueue hands a pushed connection to the oldest waiting take()", async () => {
  const { q } = queue(2);
  const first = q.take();
  const second = q.take();
  assert.equal(q.push("a"), true);
  assert.equal(q.push("b"), true);
  assert.equal(await first, "a");
  assert.equal(await second, "b");
  assert.equal(q.size, 0);
});

Deno.test("AcceptQueue refuses a push past its limit, counting reservations", async () => {
  const { q, spaces } = queue(2);
  assert.equal(q.reserve(), true);
  assert.equal(q.push("a"), true);
  assert.equal(q.hasRoom(), false);
  assert.equal(q.reserve(), false);
  assert.equal(q.push("b"), false, "full: the caller keeps and closes it");
  // The reserved one still gets in: its slot was taken before.
  assert.equal(q.push("r", true), true);
  assert.equal(q.queued, 2);
  assert.equal(await q.take(), "a");
  assert.equal(spaces(), 1);
  assert.equal(await q.take(), "r");
  assert.equal(q.size, 0);
  assert.equal(q.hasRoom(), true);
});

Deno.test("AcceptQueue release() gives a reservation back and reports the space", () => {
  const { q, spaces } = queue(1);
  assert.equal(q.reserve(), true);
  assert.equal(q.hasRoom(), false);
  q.release();
  assert.equal(q.hasRoom(), true);
  assert.equal(spaces(), 1);
  q.release(); // nothing reserved: no effect
  assert.equal(q.size, 0);
  assert.equal(spaces(), 1);
});

Deno.test("AcceptQueue take() with an aborted signal takes nothing", async () => {
  const { q } = queue(4);
  const controller = new AbortController();
  const waiting = q.take(controller.signal);
  controller.abort(new DOMException("stop", "AbortError"));
  await assert.rejects(waiting, { name: "AbortError" });
  q.push("a");
  assert.equal(await q.take(), "a", "the next caller gets it");
  await assert.rejects(q.take(AbortSignal.abort()), { name: "AbortError" });
});

Deno.test("AcceptQueue close() rejects waiters with BadResource and disposes of queued connections", async () => {
  const { q, disposed } = queue(4);
  q.push("a");
  q.push("b");
  q.close();
  assert.deepEqual(disposed, ["a", "b"]);
  await assert.rejects(q.take(), Deno.errors.BadResource);
  const { q: q2 } = queue(4);
  const waiting = q2.take();
  q2.close();
  await assert.rejects(waiting, {
    name: "BadResource",
    message: "Cannot accept a connection: the listener is closed",
  });
  q2.close(); // twice is fine
});

Deno.test("AcceptQueue disposes of a connection pushed after close", () => {
  const { q, disposed } = queue(1);
  assert.equal(q.reserve(), true);
  q.close();
  assert.equal(q.push("late", true), true);
  assert.deepEqual(disposed, ["late"]);
  assert.equal(q.size, 0);
  assert.equal(q.reserve(), false);
});

Deno.test("AcceptQueue keeps a connection when onSpace throws", async () => {
  const q = new AcceptQueue<string>({
    limit: 1,
    dispose: () => {},
    onSpace: () => {
      throw new Error("boom");
    },
  });
  q.push("a");
  assert.equal(await q.take(), "a");
});
