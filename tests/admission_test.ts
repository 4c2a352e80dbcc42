// Tests for _admission.ts and the pieces it is built of (_indexed_heap.ts,
// _failure_table.ts, _deadline_sweep.ts): per-address accounting, the
// fairness rule that picks the pending connection to close, deadline order,
// and failure throttling, on a fake clock (no sleeping).
import assert from "node:assert/strict";
import {
  Admission,
  type AdmissionOptions,
  Slot,
  type TurnOutcome,
} from "../_admission.ts";
import type { Clock } from "../_clock.ts";
import { DeadlineSweep } from "../_deadline_sweep.ts";
import type { FailureOptions } from "../_failure_table.ts";
import { IndexedHeap } from "../_indexed_heap.ts";

/** A clock whose time moves only when told, running timers as it passes them. */
class FakeClock implements Clock {
  time = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): number {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + ms, fn });
    return id;
  }

  clearTimer(id: unknown): void {
    this.#timers.delete(id as number);
  }

  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time to `to`, running each timer due on the way, in order. */
  advanceTo(to: number): void {
    while (true) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= to && (!first || entry[1].at < first[1].at)) {
          first = entry;
        }
      }
      if (!first) break;
      this.#timers.delete(first[0]);
      this.time = Math.max(this.time, first[1].at);
      first[1].fn();
    }
    this.time = Math.max(this.time, to);
  }
}

/** A slot that remembers how its wait for a turn ended. */
class TestSlot extends Slot {
  readonly name: string;
  outcomes: TurnOutcome[] = [];
  constructor(name: string) {
    super();
    this.name = name;
  }
  override onTurn(outcome: TurnOutcome): void {
    this.outcomes.push(outcome);
  }
}

const THROTTLE: FailureOptions = {
  delay: 100,
  maxDelay: 800,
  banAfter: Infinity,
  banFor: 60_000,
  forgetAfter: 600_000,
  maxAddresses: 10_000,
};

function setup(options: Partial<AdmissionOptions> = {}) {
  const clock = new FakeClock();
  const admission = new Admission<TestSlot>({
    maxPerAddress: Infinity,
    handshakeTimeout: 10_000,
    clock,
    ...options,
  });
  let n = 0;
  const open = (key: string, at?: number) => {
    if (at !== undefined) clock.advanceTo(at);
    const slot = new TestSlot(`${key}#${n++}`);
    return { slot, verdict: admission.admit(slot, key) };
  };
  return { clock, admission, open };
}

Deno.test("Admission counts connections per address and refuses past maxPerAddress until one is released", () => {
  const { admission, open } = setup({ maxPerAddress: 2 });
  const a = open("192.0.2.1");
  const b = open("192.0.2.1");
  assert.equal(a.verdict, "start");
  assert.equal(b.verdict, "start");
  const c = open("192.0.2.1");
  assert.equal(c.verdict, "max-per-address");
  assert.deepEqual(admission.countOf("192.0.2.1"), { open: 3, pending: 2 });
  admission.release(c.slot);
  admission.release(c.slot); // twice is fine
  assert.deepEqual(admission.countOf("192.0.2.1"), { open: 2, pending: 2 });
  assert.equal(open("192.0.2.2").verdict, "start"); // another address
  admission.authenticated(a.slot);
  assert.deepEqual(admission.countOf("192.0.2.1"), { open: 2, pending: 1 });
  assert.equal(admission.pendingCount, 2);
  admission.release(a.slot);
  admission.release(b.slot);
  assert.equal(open("192.0.2.1").verdict, "start");
  assert.equal(admission.addresses, 2);
});

Deno.test("Admission.victim() is the oldest pending connection of the address holding the most", () => {
  const { admission, open } = setup();
  const a1 = open("a", 1).slot;
  const b1 = open("b", 2).slot;
  const b2 = open("b", 3).slot;
  const c1 = open("c", 4).slot;
  assert.equal(admission.victim(), b1);
  admission.release(b1);
  // a, b and c hold one each now: the oldest of all goes first.
  assert.equal(admission.victim(), a1);
  admission.release(a1);
  assert.equal(admission.victim(), b2);
  // An authenticated connection is never a victim.
  admission.authenticated(b2);
  assert.equal(admission.victim(), c1);
  admission.authenticated(c1);
  assert.equal(admission.victim(), undefined);
  assert.equal(admission.pendingCount, 0);
});

Deno.test("Admission under a flood of 8 addresses x 32 silent connections and maxHandshakes 64 never picks a good client", () => {
  const { admission, clock, open } = setup();
  const maxHandshakes = 64;
  let evicted = 0;
  let goodServed = 0;
  /** Admits one connection, then closes victims while over the budget. */
  const arrive = (key: string): TestSlot => {
    const { slot } = open(key);
    while (admission.pendingCount > maxHandshakes) {
      const victim = admission.victim()!;
      assert.ok(!victim.name.startsWith("good"), `picked ${victim.name}`);
      admission.release(victim);
      evicted++;
    }
    return slot;
  };
  // Round-robin silent sockets, re-opened as soon as they are closed: an
  // attacker holding 8 x 32 against a budget of 64.
  for (let round = 0; round < 32; round++) {
    for (let a = 0; a < 8; a++) arrive(`127.0.1.${a + 1}`);
    clock.advanceTo(clock.time + 1);
  }
  for (let i = 0; i < 1000; i++) {
    // A good client arrives; a few flood reconnects land during its round
    // trip, then it authenticates.
    const good = arrive("127.0.0.1");
    Object.assign(good, { name: `good ${i}` });
    for (let k = 0; k < 5; k++) arrive(`127.0.1.${(i + k) % 8 + 1}`);
    clock.advanceTo(clock.time + 1);
    assert.ok(good.pending, "the good client was closed");
    admission.authenticated(good);
    admission.release(good);
    goodServed++;
  }
  assert.equal(goodServed, 1000);
  assert.ok(evicted > 5000, `${evicted} evictions`);
  // The flood holds the budget (less the good client's place), spread
  // evenly: 7 or 8 per address.
  assert.equal(admission.pendingCount, maxHandshakes - 1);
  for (let a = 0; a < 8; a++) {
    const { pending } = admission.countOf(`127.0.1.${a + 1}`);
    assert.ok(pending === 7 || pending === 8, `${pending} pending`);
  }
});

Deno.test("Admission keeps pending connections in deadline order (accept time + handshakeTimeout)", () => {
  const { admission, open } = setup({ handshakeTimeout: 500 });
  const a = open("a", 10).slot;
  const b = open("b", 20).slot;
  const c = open("a", 30).slot;
  assert.equal(admission.firstPending(), a);
  assert.deepEqual([a.deadline, b.deadline, c.deadline], [510, 520, 530]);
  admission.authenticated(a);
  assert.equal(admission.firstPending(), b);
  admission.release(b);
  assert.equal(admission.firstPending(), c);
  admission.release(c);
  assert.equal(admission.firstPending(), undefined);
});

Deno.test("Admission throttles an address after a failure: one handshake at a time, none during its pause", () => {
  const { admission, clock, open } = setup({ throttle: THROTTLE });
  const first = open("x", 0);
  assert.equal(first.verdict, "start"); // no record yet: never delayed
  assert.deepEqual(admission.failed(first.slot), { failures: 1, delay: 100 });
  admission.release(first.slot);
  const second = open("x", 10);
  const third = open("x", 20);
  assert.equal(second.verdict, "wait");
  assert.equal(third.verdict, "wait");
  assert.equal(admission.pendingCount, 2); // waiting ones count as pending
  assert.equal(admission.queuedCount, 2);
  clock.advanceTo(99);
  assert.deepEqual(second.slot.outcomes, []);
  clock.advanceTo(100);
  assert.deepEqual(second.slot.outcomes, ["admitted"]);
  assert.ok(second.slot.hasTurn);
  assert.equal(admission.queuedCount, 1);
  assert.deepEqual(third.slot.outcomes, []); // one at a time
  // A success passes the turn on at once, and adds no pause.
  admission.authenticated(second.slot);
  assert.deepEqual(third.slot.outcomes, ["admitted"]);
  // A second failure (at 100 ms) doubles the pause: to 300 ms.
  assert.deepEqual(admission.failed(third.slot), { failures: 2, delay: 200 });
  admission.release(third.slot);
  const fourth = open("x", 150);
  assert.equal(fourth.verdict, "wait");
  clock.advanceTo(299);
  assert.deepEqual(fourth.slot.outcomes, []);
  clock.advanceTo(300);
  assert.deepEqual(fourth.slot.outcomes, ["admitted"]);
  // Another address is not slowed at all.
  assert.equal(open("y", 300).verdict, "start");
});

Deno.test("Admission bounds guesses to one per pause per address whatever the concurrency", () => {
  const { admission, clock, open } = setup({ throttle: THROTTLE });
  const failures: number[] = [];
  // 50 connections from one address at once, each guessing wrong as soon
  // as it gets to handshake, and re-opened as soon as it is closed.
  const attempt = (): void => {
    const { slot, verdict } = open("x");
    const guess = () => {
      failures.push(clock.time);
      admission.failed(slot);
      admission.release(slot);
      queueMicrotask(attempt);
    };
    if (verdict === "start") guess();
    else {
      slot.onTurn = (outcome) => {
        if (outcome === "admitted" || outcome === "unthrottled") guess();
        else {
          admission.release(slot);
          queueMicrotask(attempt);
        }
      };
    }
  };
  const run = async (until: number) => {
    while (clock.time < until) {
      for (let i = 0; i < 5; i++) await Promise.resolve(); // re-opens
      clock.advanceTo(clock.time + 10);
    }
  };
  return (async () => {
    for (let i = 0; i < 50; i++) attempt();
    await run(20_000);
    // The first guess, then one per pause: 100, 200, 400, then 800 ms.
    const expected = 1 + 3 + Math.floor((20_000 - 700) / 800) + 1;
    assert.ok(
      failures.length <= expected,
      `${failures.length} guesses in 20 s (bound ${expected})`,
    );
    assert.ok(failures.length >= expected - 2, `${failures.length} guesses`);
    for (let i = 4; i < failures.length; i++) {
      assert.ok(failures[i] - failures[i - 1] >= 800, `gap at ${i}`);
    }
    // The other 49 wait their turn, none lost.
    assert.equal(admission.pendingCount, 50);
    admission.close();
    assert.equal(clock.pending, 0);
  })();
});

Deno.test("Admission drops the oldest waiting connection past maxWaiting", () => {
  const { admission, open } = setup({ throttle: THROTTLE, maxWaiting: 2 });
  const bad = open("x", 0).slot;
  admission.failed(bad);
  admission.release(bad);
  const a = open("x", 1).slot;
  const b = open("x", 2).slot;
  assert.deepEqual([a.outcomes, b.outcomes], [[], []]);
  const c = open("x", 3);
  assert.equal(c.verdict, "wait");
  assert.deepEqual(a.outcomes, ["dropped"]);
  assert.equal(a.queued, false);
  assert.equal(admission.queuedCount, 2);
  admission.release(a);
  // Releasing a queued connection (its deadline, or an eviction) takes it
  // out of the queue.
  admission.release(b);
  assert.equal(admission.pendingCount, 1);
  assert.equal(admission.queuedCount, 1);
  assert.equal(admission.victim(), c.slot);
});

Deno.test("Admission bans an address after banAfter failures for banFor, then forgets it after forgetAfter", () => {
  const { admission, open } = setup({
    throttle: {
      ...THROTTLE,
      delay: 0,
      banAfter: 2,
      banFor: 1000,
      forgetAfter: 5000,
    },
  });
  for (let i = 0; i < 2; i++) {
    const slot = open("x").slot;
    admission.failed(slot);
    admission.release(slot);
  }
  const banned = open("x", 10);
  assert.equal(banned.verdict, "banned");
  assert.equal(banned.slot.pending, false);
  admission.release(banned.slot);
  assert.equal(admission.recordOf("x")?.failures, 2);
  // After the ban: throttled (one at a time) but served.
  assert.equal(open("x", 1000).verdict, "start");
  assert.equal(open("x", 1001).verdict, "wait");
  // Long after the last failure, the address is forgotten: waiting
  // connections all go, and new ones start at once.
  const { admission: fresh, clock: clock2, open: open2 } = setup({
    throttle: { ...THROTTLE, forgetAfter: 5000 },
  });
  const s = open2("y", 0).slot;
  fresh.failed(s);
  fresh.release(s);
  clock2.advanceTo(6000);
  assert.equal(open2("y").verdict, "start");
  assert.equal(fresh.throttled, 0);
});

Deno.test("DeadlineSweep ends each pending connection at its deadline with one timer, and re-arms for the next", () => {
  const { admission, clock, open } = setup({ handshakeTimeout: 1000 });
  const expired: [string, number][] = [];
  const sweep = new DeadlineSweep<TestSlot>({
    admission,
    expire: (slot) => {
      expired.push([slot.name, clock.time]);
      admission.release(slot);
    },
    batch: 64,
    window: 10,
    slack: 1,
  });
  const a = open("a", 0).slot;
  sweep.watch(a.deadline);
  const b = open("b", 300).slot;
  sweep.watch(b.deadline); // already armed: no second timer
  assert.equal(clock.pending, 1);
  const c = open("c", 600).slot;
  sweep.watch(c.deadline);
  admission.authenticated(b); // authenticated in time: never expired
  clock.advanceTo(998);
  assert.deepEqual(expired, []);
  clock.advanceTo(5000);
  assert.deepEqual(expired, [["a#0", 1000], ["c#2", 1600]]);
  assert.equal(sweep.armed, false);
  assert.equal(clock.pending, 0);
  // stop() cancels the timer for good.
  const d = open("d", 6000).slot;
  sweep.watch(d.deadline);
  sweep.stop();
  sweep.watch(d.deadline);
  assert.equal(clock.pending, 0);
});

Deno.test("DeadlineSweep ends at most batch connections in any window, the rest in the next ones", () => {
  const { admission, clock, open } = setup({ handshakeTimeout: 1000 });
  const expiredAt: number[] = [];
  const sweep = new DeadlineSweep<TestSlot>({
    admission,
    expire: (slot) => {
      expiredAt.push(clock.time);
      admission.release(slot);
    },
    batch: 64,
    window: 10,
  });
  for (let i = 0; i < 200; i++) sweep.watch(open(`s${i}`, 0).slot.deadline);
  clock.advanceTo(2000);
  const counts = new Map<number, number>();
  for (const at of expiredAt) counts.set(at, (counts.get(at) ?? 0) + 1);
  assert.deepEqual([...counts], [[1000, 64], [1010, 64], [1020, 64], [
    1030,
    8,
  ]]);
  assert.equal(admission.pendingCount, 0);
});

Deno.test("DeadlineSweep releases a connection that expire() left pending instead of looping on it", () => {
  const { admission, clock, open } = setup({ handshakeTimeout: 10 });
  let calls = 0;
  const sweep = new DeadlineSweep<TestSlot>({
    admission,
    expire: () => calls++, // a bug: does not release
    batch: 64,
    window: 10,
  });
  sweep.watch(open("a", 0).slot.deadline);
  open("b", 0);
  clock.advanceTo(100);
  assert.equal(calls, 2);
  assert.equal(admission.pendingCount, 0);
});

Deno.test("IndexedHeap keeps the first-ranking item on top as items rise, sink and leave", () => {
  type Item = { name: string; rank: number; heapIndex: number };
  const heap = new IndexedHeap<Item>((a, b) => a.rank > b.rank);
  const items: Item[] = [3, 1, 4, 1, 5, 9, 2, 6].map((rank, i) => ({
    name: `i${i}`,
    rank,
    heapIndex: -1,
  }));
  for (const item of items) heap.raise(item);
  assert.equal(heap.size, 8);
  assert.equal(heap.top()?.rank, 9);
  // Each item knows where it is.
  for (const item of items) assert.ok(item.heapIndex >= 0);

  // The top sinks below the others: the next best comes up.
  const top = heap.top()!;
  top.rank = 0;
  heap.lower(top);
  assert.equal(heap.top()?.rank, 6);
  // One from the bottom rises past everyone.
  items[1].rank = 10;
  heap.raise(items[1]);
  assert.equal(heap.top(), items[1]);
  // Raising an item already at its place changes nothing.
  heap.raise(items[1]);
  assert.equal(heap.size, 8);

  // Removing items from anywhere keeps the order; drained in rank order.
  heap.remove(items[0]);
  assert.equal(items[0].heapIndex, -1);
  const drained: number[] = [];
  while (heap.size > 0) {
    const first = heap.top()!;
    drained.push(first.rank);
    heap.remove(first);
  }
  assert.deepEqual(drained, [10, 6, 5, 4, 2, 1, 0]);
  assert.equal(heap.top(), undefined);
});
