// Private: who may hold a connection to serve(), and which one goes when
// the server is full. Everything here is synchronous bookkeeping with an
// injectable clock (_clock.ts), so its guarantees are tested without
// sleeping (tests/admission_test.ts); _server_impl.ts does the I/O.
//
// - Per-address counts: connections open from each address key (for
//   `maxPerAddress`) and those of them not yet authenticated ("pending").
// - The fairness rule: when the budget for pending connections is full, the
//   connection to close is the oldest pending one of the address that holds
//   the most pending connections; among addresses holding equally many, the
//   one whose oldest pending connection is oldest. A heap of the addresses
//   with pending connections (_indexed_heap.ts) answers that in O(1) and is
//   updated in O(log addresses) as counts move by one. An honest client
//   finishes its handshake in one round trip, so it is both the newest and
//   the only pending connection of its address: it is picked only once
//   every other address holds at most one pending connection, each older
//   than its own.
// - Handshake deadlines: every pending connection is in one list in accept
//   order. The deadline is the accept time plus one constant timeout, so the
//   list is also in deadline order, and a single timer for its head serves
//   them all (_deadline_sweep.ts).
// - Failure throttling (see ThrottleOptions in server.ts): the failures on
//   record (_failure_table.ts) and, while an address has some, its
//   handshakes one at a time in arrival order (its "turns").
//
// The counts, the two pending lists, the heap and the turns stay in this one
// file (and class) because every change of a connection's state moves
// several of them at once, and they must agree.
import { type Clock, SYSTEM_CLOCK } from "./_clock.ts";
import {
  type FailureOptions,
  type FailureRecord,
  FailureTable,
} from "./_failure_table.ts";
import { IndexedHeap } from "./_indexed_heap.ts";

/**
 * How a wait for a throttled address's turn ended: its turn came
 * (`"admitted"`), the address was forgotten (`"unthrottled"`), or more than
 * `maxWaiting` waited and it was the oldest (`"dropped"`).
 */
export type TurnOutcome = "admitted" | "unthrottled" | "dropped";

/**
 * One connection as the bookkeeping sees it. _serve_connection.ts extends
 * it, so a connection costs one object: these fields are the links of the
 * lists it is in.
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

  /** Told when its wait for a turn ends (_serve_connection.ts overrides it). */
  onTurn(_outcome: TurnOutcome): void {}
}

/** The turn-taking of a throttled address. */
interface Gate {
  busy: boolean;
  queue: Slot[];
  timer: unknown;
}

/**
 * The heap's order of addresses: `a` goes first when it holds more pending
 * connections, or as many and its oldest is older.
 */
function ranksBefore(a: AddressEntry, b: AddressEntry): boolean {
  return a.pending > b.pending ||
    (a.pending === b.pending && a.head!.since < b.head!.since);
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
  #heap = new IndexedHeap<AddressEntry>(ranksBefore);
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
    return this.#heap.top()?.head as S | undefined;
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
    this.#heap.raise(entry);
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
    if (entry.pending === 0) this.#heap.remove(entry);
    else this.#heap.lower(entry);
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
