// Private: who may hold a connection to serve(), and which one goes when
// the server is full. Everything here is synchronous bookkeeping with an
// injectable clock, so its guarantees are tested without sleeping
// (tests/admission_test.ts); server.ts does the I/O.
//
// - Per-address counts: connections open from each address key (for
//   `maxPerAddress`) and those of them not yet authenticated ("pending").
// - The fairness rule: when the budget for pending connections is full, the
//   connection to close is the oldest pending one of the address that holds
//   the most pending connections; among addresses holding equally many, the
//   one whose oldest pending connection is oldest. A heap of the addresses
//   with pending connections answers that in O(1) and is updated in
//   O(log addresses) as counts move by one. An honest client finishes its
//   handshake in one round trip, so it is both the newest and the only
//   pending connection of its address: it is picked only once every other
//   address holds at most one pending connection, each older than its own.
// - Handshake deadlines: every pending connection is in one list in accept
//   order. The deadline is the accept time plus one constant timeout, so the
//   list is also in deadline order, and a single timer for its head serves
//   them all (no timer per connection).
// - Failure throttling (see ThrottleOptions in server.ts): failures per
//   address with a doubling pause, an optional ban, and, while an address
//   has failures on record, its handshakes one at a time in arrival order.

/** The time source and timers the bookkeeping uses; fake in tests. */
export interface Clock {
  /** Now, in milliseconds; never goes back. */
  now(): number;
  /** Calls `fn` after `ms` milliseconds; returns what clearTimer takes. */
  setTimer(fn: () => void, ms: number): unknown;
  /** Cancels a timer from {@linkcode Clock.setTimer}. */
  clearTimer(id: unknown): void;
}

/** `performance.now()` and the runtime's timers. */
export const SYSTEM_CLOCK: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** Failure throttling settings (all in ms but the counts). */
export interface FailureOptions {
  delay: number;
  maxDelay: number;
  banAfter: number;
  banFor: number;
  forgetAfter: number;
  maxAddresses: number;
}

/** What is on record for an address that failed to authenticate. */
export interface FailureRecord {
  failures: number;
  last: number;
  /** No handshake from the address starts before this time. */
  pausedUntil: number;
  bannedUntil: number;
}

/** Failures per address, bounded: least recently failing forgotten first. */
export class FailureTable {
  #records = new Map<string, FailureRecord>();
  #options: FailureOptions;

  constructor(options: FailureOptions) {
    this.#options = options;
  }

  /** Addresses on record. */
  get size(): number {
    return this.#records.size;
  }

  /** The record of `key`, or undefined once forgotten. */
  lookup(key: string, now: number): FailureRecord | undefined {
    const record = this.#records.get(key);
    if (!record) return undefined;
    if (
      now - record.last > this.#options.forgetAfter &&
      now >= record.bannedUntil && now >= record.pausedUntil
    ) {
      this.#records.delete(key);
      return undefined;
    }
    return record;
  }

  /** Counts a failure and pauses the address; returns the record and pause. */
  fail(key: string, now: number): { record: FailureRecord; delay: number } {
    const record = this.lookup(key, now) ??
      { failures: 0, last: now, pausedUntil: 0, bannedUntil: 0 };
    this.#records.delete(key);
    record.failures += 1;
    record.last = now;
    if (record.failures >= this.#options.banAfter) {
      record.bannedUntil = now + this.#options.banFor;
    }
    this.#records.set(key, record);
    while (this.#records.size > this.#options.maxAddresses) {
      const oldest = this.#records.keys().next().value as string;
      this.#records.delete(oldest);
    }
    const { delay, maxDelay } = this.#options;
    const pause = Math.min(
      delay * 2 ** Math.min(record.failures - 1, 52),
      maxDelay,
    );
    record.pausedUntil = Math.max(record.pausedUntil, now + pause);
    return { record, delay: pause };
  }
}

/**
 * How a wait for a throttled address's turn ended: its turn came
 * (`"admitted"`), the address was forgotten (`"unthrottled"`), or more than
 * `maxWaiting` waited and it was the oldest (`"dropped"`).
 */
export type TurnOutcome = "admitted" | "unthrottled" | "dropped";

/**
 * One connection as the bookkeeping sees it. server.ts extends it, so a
 * connection costs one object: these fields are the links of the lists it
 * is in.
 */
export class Slot {
  /** Its address, from {@linkcode Admission.admit} on. */
  entry: AddressEntry | undefined = undefined;
  /** Accepted at (clock ms). */
  since = 0;
  /** Its handshake deadline (clock ms). */
  deadline = 0;
  /** Counted as pending (not yet authenticated). */
  pending = false;
  /** Waiting in its address's turn queue. */
  queued = false;
  /** Holds its throttled address's turn (its handshake runs). */
  hasTurn = false;
  /** Counted in its address's open count. */
  counted = false;
  /** @internal the pending list, in accept order */
  prevPending: Slot | undefined = undefined;
  /** @internal */
  nextPending: Slot | undefined = undefined;
  /** @internal its address's pending list, in accept order */
  prevOfAddress: Slot | undefined = undefined;
  /** @internal */
  nextOfAddress: Slot | undefined = undefined;

  /** Told when its wait for a turn ends; server.ts overrides it. */
  onTurn(_outcome: TurnOutcome): void {}
}

/** The turn-taking of a throttled address. */
interface Gate {
  busy: boolean;
  queue: Slot[];
  timer: unknown;
}

/** What is known about one address with a connection open. */
export class AddressEntry {
  readonly key: string;
  /** Connections open from it, in any state. */
  open = 0;
  /** Of those, not yet authenticated. */
  pending = 0;
  /** Its oldest pending connection. */
  head: Slot | undefined = undefined;
  /** Its newest pending connection. */
  tail: Slot | undefined = undefined;
  /** Its place in the heap of addresses with pending connections, or -1. */
  heapIndex = -1;
  /** Set while it is throttled and a handshake of its runs or waits. */
  gate: Gate | undefined = undefined;

  constructor(key: string) {
    this.key = key;
  }
}

/** What {@linkcode Admission.admit} decided for a new connection. */
export type Verdict = "start" | "wait" | "max-per-address" | "banned";

/** Options for {@linkcode Admission}. */
export interface AdmissionOptions {
  /** Most connections open from one address. */
  maxPerAddress: number;
  /** Added to the accept time to make the handshake deadline, in ms. */
  handshakeTimeout: number;
  /** Failure throttling; undefined turns it off. */
  throttle?: FailureOptions;
  /** Most connections of a throttled address waiting for their turn. */
  maxWaiting?: number;
  clock?: Clock;
}

/**
 * The bookkeeping of a server's connections: admit, track pending ones
 * with their deadlines, pick the one to evict, throttle failing addresses.
 *
 * A connection's life: {@linkcode Admission.admit} (counted open; pending
 * unless refused), then {@linkcode Admission.authenticated} or
 * {@linkcode Admission.failed} (no longer pending), and
 * {@linkcode Admission.release} when it closes, whatever happened before.
 */
export class Admission<S extends Slot = Slot> {
  /** Connections pending now (waiting for a turn or handshaking). */
  pendingCount = 0;
  /** Of those, waiting in their throttled address's queue. */
  queuedCount = 0;
  #entries = new Map<string, AddressEntry>();
  /** Addresses with pending connections, the one to evict from first. */
  #heap: AddressEntry[] = [];
  #first: Slot | undefined = undefined;
  #last: Slot | undefined = undefined;
  #maxPerAddress: number;
  #timeout: number;
  #failures: FailureTable | undefined;
  #maxWaiting: number;
  #clock: Clock;
  #closing = false;

  constructor(options: AdmissionOptions) {
    this.#maxPerAddress = options.maxPerAddress;
    this.#timeout = options.handshakeTimeout;
    this.#failures = options.throttle && new FailureTable(options.throttle);
    this.#maxWaiting = options.maxWaiting ?? Infinity;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
  }

  /** The clock this bookkeeping runs on. */
  get clock(): Clock {
    return this.#clock;
  }

  /** Addresses with a connection open. */
  get addresses(): number {
    return this.#entries.size;
  }

  /** Addresses with failures on record (0 when throttling is off). */
  get throttled(): number {
    return this.#failures?.size ?? 0;
  }

  /** The open and pending counts of `key` (tests, logs). */
  countOf(key: string): { open: number; pending: number } {
    const entry = this.#entries.get(key);
    return { open: entry?.open ?? 0, pending: entry?.pending ?? 0 };
  }

  /** The failure record of `key`, if it has one. */
  recordOf(key: string): FailureRecord | undefined {
    return this.#failures?.lookup(key, this.#clock.now());
  }

  /**
   * Counts a new connection from `key` and decides: `"max-per-address"` or
   * `"banned"` (refuse it: it is counted open until
   * {@linkcode Admission.release}, and not pending); `"start"` (pending; its
   * handshake may start now) or `"wait"` (pending, queued for its throttled
   * address's turn: {@linkcode Slot.onTurn} tells when the wait ends).
   */
  admit(slot: S, key: string): Verdict {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = new AddressEntry(key);
      this.#entries.set(key, entry);
    }
    const now = this.#clock.now();
    slot.entry = entry;
    slot.since = now;
    slot.deadline = now + this.#timeout;
    slot.counted = true;
    entry.open += 1;
    if (entry.open > this.#maxPerAddress) return "max-per-address";
    let verdict: Verdict = "start";
    if (this.#failures !== undefined && this.#failures.size > 0) {
      const record = this.#failures.lookup(key, now);
      if (record !== undefined) {
        if (record.bannedUntil > now) return "banned";
        // The address has failed before: its handshakes take turns.
        const gate = entry.gate ??= {
          busy: false,
          queue: [],
          timer: undefined,
        };
        if (
          !gate.busy && gate.queue.length === 0 && record.pausedUntil <= now
        ) {
          gate.busy = true;
          slot.hasTurn = true;
        } else {
          verdict = "wait";
        }
      }
    }
    this.#addPending(slot, entry);
    if (verdict === "wait") {
      const gate = entry.gate!;
      if (gate.queue.length >= this.#maxWaiting) {
        const dropped = gate.queue.shift()!;
        dropped.queued = false;
        this.queuedCount -= 1;
        dropped.onTurn("dropped");
      }
      slot.queued = true;
      this.queuedCount += 1;
      gate.queue.push(slot);
      this.#nextTurn(entry);
    }
    return verdict;
  }

  /** The pending connection to close when the budget is full. */
  victim(): S | undefined {
    return this.#heap[0]?.head as S | undefined;
  }

  /** The pending connection with the earliest deadline. */
  firstPending(): S | undefined {
    return this.#first as S | undefined;
  }

  /** A pending connection authenticated: it is no longer pending. */
  authenticated(slot: S): void {
    this.#removePending(slot);
    this.#endTurn(slot);
  }

  /**
   * A pending connection failed to authenticate (an AuthenticationError):
   * the failure is counted and its address paused before its turn passes
   * on. Returns the failures on record and the pause (0, 0 when throttling
   * is off).
   */
  failed(slot: S): { failures: number; delay: number } {
    let failures = 0;
    let delay = 0;
    if (this.#failures !== undefined && slot.entry !== undefined) {
      const counted = this.#failures.fail(slot.entry.key, this.#clock.now());
      failures = counted.record.failures;
      delay = counted.delay;
    }
    this.#removePending(slot);
    this.#endTurn(slot);
    return { failures, delay };
  }

  /**
   * A connection closed, in whatever state: no longer pending, queued,
   * holding a turn, nor counted open. Safe to call twice.
   */
  release(slot: S): void {
    this.#removePending(slot);
    this.#endTurn(slot);
    const entry = slot.entry;
    if (entry === undefined || !slot.counted) return;
    slot.counted = false;
    entry.open -= 1;
    if (entry.open === 0 && entry.gate === undefined) {
      this.#entries.delete(entry.key);
    }
  }

  /** Stops giving turns (shutdown): waiting connections wait for release. */
  close(): void {
    this.#closing = true;
    for (const entry of this.#entries.values()) {
      const gate = entry.gate;
      if (gate?.timer !== undefined) this.#clock.clearTimer(gate.timer);
      if (gate) gate.timer = undefined;
    }
  }

  #addPending(slot: Slot, entry: AddressEntry): void {
    slot.pending = true;
    this.pendingCount += 1;
    slot.prevPending = this.#last;
    slot.nextPending = undefined;
    if (this.#last) this.#last.nextPending = slot;
    else this.#first = slot;
    this.#last = slot;
    slot.prevOfAddress = entry.tail;
    slot.nextOfAddress = undefined;
    if (entry.tail) entry.tail.nextOfAddress = slot;
    else entry.head = slot;
    entry.tail = slot;
    entry.pending += 1;
    if (entry.heapIndex < 0) {
      entry.heapIndex = this.#heap.length;
      this.#heap.push(entry);
    }
    this.#siftUp(entry.heapIndex);
  }

  #removePending(slot: Slot): void {
    if (slot.queued) {
      slot.queued = false;
      this.queuedCount -= 1;
      const gate = slot.entry?.gate;
      if (gate) {
        const index = gate.queue.indexOf(slot);
        if (index >= 0) gate.queue.splice(index, 1);
        this.#nextTurn(slot.entry!);
      }
    }
    if (!slot.pending) return;
    slot.pending = false;
    this.pendingCount -= 1;
    const { prevPending: prev, nextPending: next } = slot;
    if (prev) prev.nextPending = next;
    else this.#first = next;
    if (next) next.prevPending = prev;
    else this.#last = prev;
    slot.prevPending = slot.nextPending = undefined;
    const entry = slot.entry!;
    const before = slot.prevOfAddress;
    const after = slot.nextOfAddress;
    if (before) before.nextOfAddress = after;
    else entry.head = after;
    if (after) after.prevOfAddress = before;
    else entry.tail = before;
    slot.prevOfAddress = slot.nextOfAddress = undefined;
    entry.pending -= 1;
    if (entry.pending === 0) this.#heapRemove(entry);
    else this.#siftDown(entry.heapIndex);
  }

  // The heap: an address ranks first when it holds more pending
  // connections, or as many and its oldest is older.

  #before(a: AddressEntry, b: AddressEntry): boolean {
    return a.pending > b.pending ||
      (a.pending === b.pending && a.head!.since < b.head!.since);
  }

  #siftUp(index: number): void {
    const heap = this.#heap;
    const entry = heap[index];
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex];
      if (!this.#before(entry, parent)) break;
      heap[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    heap[index] = entry;
    entry.heapIndex = index;
  }

  #siftDown(index: number): void {
    const heap = this.#heap;
    const length = heap.length;
    const entry = heap[index];
    while (true) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && this.#before(heap[right], heap[left])
        ? right
        : left;
      if (!this.#before(heap[child], entry)) break;
      heap[index] = heap[child];
      heap[index].heapIndex = index;
      index = child;
    }
    heap[index] = entry;
    entry.heapIndex = index;
  }

  #heapRemove(entry: AddressEntry): void {
    const heap = this.#heap;
    const index = entry.heapIndex;
    entry.heapIndex = -1;
    const last = heap.pop()!;
    if (last === entry) return;
    heap[index] = last;
    last.heapIndex = index;
    this.#siftUp(index);
    this.#siftDown(last.heapIndex);
  }

  // Turns of throttled addresses.

  #endTurn(slot: Slot): void {
    if (!slot.hasTurn) return;
    slot.hasTurn = false;
    const entry = slot.entry!;
    if (entry.gate) entry.gate.busy = false;
    this.#nextTurn(entry);
  }

  /**
   * Gives a throttled address's turn to its oldest waiting connection, once
   * no handshake of its runs and its pause is over; lets them all go when
   * the address has been forgotten; drops the gate when nothing waits.
   */
  #nextTurn(entry: AddressEntry): void {
    const gate = entry.gate;
    if (gate === undefined || gate.busy) return;
    if (gate.queue.length === 0) {
      if (gate.timer !== undefined) this.#clock.clearTimer(gate.timer);
      entry.gate = undefined;
      if (entry.open === 0) this.#entries.delete(entry.key);
      return;
    }
    if (this.#closing || gate.timer !== undefined) return;
    const now = this.#clock.now();
    const record = this.#failures?.lookup(entry.key, now);
    if (record === undefined) {
      entry.gate = undefined;
      for (const slot of gate.queue.splice(0)) {
        slot.queued = false;
        this.queuedCount -= 1;
        slot.onTurn("unthrottled");
      }
      return;
    }
    if (record.pausedUntil > now) {
      gate.timer = this.#clock.setTimer(() => {
        gate.timer = undefined;
        if (entry.gate === gate) this.#nextTurn(entry);
      }, record.pausedUntil - now);
      return;
    }
    gate.busy = true;
    const slot = gate.queue.shift()!;
    slot.queued = false;
    this.queuedCount -= 1;
    slot.hasTurn = true;
    slot.onTurn("admitted");
  }
}

/** Options for {@linkcode DeadlineSweep}. */
export interface DeadlineSweepOptions<S extends Slot> {
  /** Whose pending connections it watches. */
  admission: Admission<S>;
  /** Ends one connection past its deadline (it must stop being pending). */
  expire(slot: S): void;
  /** Most connections ended in one window. */
  batch: number;
  /** The window, in ms. */
  window: number;
  /** A timer may fire this many ms early: a deadline that near is due. */
  slack?: number;
}

/**
 * One timer for every handshake deadline: armed for the earliest, it ends
 * the connections past theirs, at most `batch` in any window of `window`
 * ms (the rest wait for the next window), and re-arms itself for the next
 * deadline. Pending connections are in deadline order
 * ({@linkcode Admission.firstPending}), so each run looks only at those it
 * ends and one more.
 */
export class DeadlineSweep<S extends Slot> {
  #admission: Admission<S>;
  #expire: (slot: S) => void;
  #batch: number;
  #window: number;
  #slack: number;
  #clock: Clock;
  #timer: unknown = undefined;
  #windowStart = -Infinity;
  #ended = 0;
  #stopped = false;

  constructor(options: DeadlineSweepOptions<S>) {
    this.#admission = options.admission;
    this.#expire = options.expire;
    this.#batch = options.batch;
    this.#window = options.window;
    this.#slack = options.slack ?? 0;
    this.#clock = options.admission.clock;
  }

  /** Whether the timer is armed. */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Arms the timer for `deadline` unless it is armed (call after admit). */
  watch(deadline: number): void {
    if (this.#timer !== undefined || this.#stopped) return;
    if (!Number.isFinite(deadline)) return;
    this.#timer = this.#clock.setTimer(
      this.#run,
      Math.max(0, deadline - this.#clock.now()),
    );
  }

  /** Cancels the timer for good (shutdown). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  #run = (): void => {
    this.#timer = undefined;
    const clockNow = this.#clock.now();
    if (clockNow - this.#windowStart >= this.#window) {
      this.#windowStart = clockNow;
      this.#ended = 0;
    }
    const now = clockNow + this.#slack;
    let slot = this.#admission.firstPending();
    while (slot !== undefined && slot.deadline <= now) {
      if (this.#ended >= this.#batch) {
        // More are due: the next batch when this window ends.
        this.watch(this.#windowStart + this.#window);
        return;
      }
      this.#ended += 1;
      this.#expire(slot);
      // expire() releases it; never loop on one that stayed.
      if (this.#admission.firstPending() === slot) {
        this.#admission.release(slot);
      }
      slot = this.#admission.firstPending();
    }
    if (slot !== undefined) this.watch(slot.deadline);
  };
}
