// Private: the multiprocessing listener (the class behind the
// MultiprocessingListener interface of multiprocessing.ts). Its accept loop
// (_accept.ts) hands each connection to its own handshake task; the
// authenticated ones wait in an AcceptQueue (_accept_queue.ts) for
// accept(). The public interface documents every method.
//
// Two budgets, because two different peers fill them:
//
// - Connections not yet authenticated ("pending"): at most `maxPending`.
//   Any peer can open them, so they never stop the loop: one more closes
//   the oldest pending connection of the address that holds the most
//   (serve()'s fairness rule, from _admission.ts; throttling off, as in
//   CPython). An honest client is the newest and usually the only pending
//   connection of its address, so a flood from other addresses evicts its
//   own sockets first. One timer (_deadline_sweep.ts) ends those past their
//   deadline.
// - Authenticated connections waiting for accept(): only key holders get
//   there, and the application decides how fast they leave. While
//   `maxPending` of them wait, the loop pauses (new clients wait in the
//   kernel's listen backlog): a slow application pushes back on its
//   clients. Handshakes already under way still finish and join the queue,
//   so it holds at most 2 x `maxPending`; an authenticated connection is
//   never closed to make room.
//
// Each pending connection holds a slot reserved in the queue from accept
// on, given back when it fails or is ended, or used by its push() once
// authenticated, so the queue's limit (2 x `maxPending`) is a hard bound on
// the connections the listener holds.
import { AcceptLoop } from "./_accept.ts";
import { AcceptQueue } from "./_accept_queue.ts";
import { addressKey, formatAddr, plainAddr } from "./_address.ts";
import { Admission, Slot } from "./_admission.ts";
import { closeQuietly } from "./_conn_io.ts";
import { optionalDeadline } from "./_deadline.ts";
import { DeadlineSweep } from "./_deadline_sweep.ts";
import type {
  MultiprocessingConnection,
  MultiprocessingErrorInfo,
  MultiprocessingIoOptions,
  MultiprocessingListener,
  MultiprocessingListenerOptions,
} from "./multiprocessing.ts";
import { openConnection } from "./_multiprocessing_conn.ts";
import type { Keys, ListenLimits } from "./_multiprocessing_options.ts";

type Addr = Deno.NetAddr | Deno.UnixAddr;

/**
 * Most handshakes the deadline sweep ends at once, and the window (ms)
 * before it ends more: silent sockets opened together expire together, and
 * a flood re-opens each at once (as in _server_impl.ts).
 */
const SWEEP_BATCH = 64;
const SWEEP_WINDOW = 10;
/** A deadline timer may fire this many ms early: a deadline that near is due. */
const SWEEP_SLACK = 1;

/** Starts serving `listener`: its accept loop runs until closed. */
export function createListener<A extends Addr>(
  listener: Deno.Listener<Deno.Conn, A>,
  keys: Keys,
  limits: ListenLimits,
  options: Pick<MultiprocessingListenerOptions, "onError" | "signal">,
): MultiprocessingListener<A> {
  return new Listener(listener, keys, limits, options);
}

/** A connection in its handshake, as the admission tracks it. */
class Pending extends Slot {
  /** Aborts its handshake: deadline, eviction or close. */
  readonly controller = new AbortController();
  /** Its admission entry and queue slot were given back. */
  done = false;

  constructor(
    readonly conn: Deno.Conn,
    readonly remoteAddr: Addr,
    /** The peer, for messages. */
    readonly from: string,
  ) {
    super();
  }
}

class Listener<A extends Addr> implements MultiprocessingListener<A> {
  readonly addr: A;
  #keys: Keys;
  #maxPending: number;
  #ipv6Prefix: number;
  #onError: MultiprocessingListenerOptions["onError"];
  #signal: AbortSignal | undefined;
  #onAbort = () => this.close();
  /** Pending connections: per-address counts, deadlines, the victim. */
  #admission: Admission<Pending>;
  /** The one timer of every handshake deadline. */
  #sweep: DeadlineSweep<Pending>;
  #queue: AcceptQueue<MultiprocessingConnection>;
  #loop: AcceptLoop<Deno.Conn>;
  /** Handshakes and closes still running, for asyncDispose. */
  #tasks = new Set<Promise<void>>();
  #closed = false;

  constructor(
    listener: Deno.Listener<Deno.Conn, A>,
    keys: Keys,
    limits: ListenLimits,
    options: Pick<MultiprocessingListenerOptions, "onError" | "signal">,
  ) {
    this.addr = plainAddr(listener.addr);
    this.#keys = keys;
    this.#maxPending = limits.maxPending;
    this.#ipv6Prefix = limits.ipv6Prefix;
    this.#onError = options.onError;
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#admission = new Admission<Pending>({
      // One address may hold the whole budget: what it holds beyond its
      // share is what the fairness rule closes first.
      maxPerAddress: Infinity,
      handshakeTimeout: keys.timeout,
    });
    this.#sweep = new DeadlineSweep<Pending>({
      admission: this.#admission,
      expire: (slot) => this.#end(slot, this.#timedOut(slot)),
      batch: SWEEP_BATCH,
      window: SWEEP_WINDOW,
      slack: SWEEP_SLACK,
    });
    this.#queue = new AcceptQueue({
      // maxPending waiting for accept() plus maxPending handshakes.
      limit: 2 * limits.maxPending,
      dispose: (conn) => this.#track(conn[Symbol.asyncDispose]()),
      onSpace: () => this.#loop.wake(),
    });
    // Skips a connection reset before accept at once, backs off when the
    // process is out of file descriptors, ends when the listener closes.
    this.#loop = new AcceptLoop<Deno.Conn>({
      listener,
      // Pauses only for authenticated connections the application has not
      // taken, never for pending ones (those are evicted instead).
      ready: () => !this.#queue.closed && this.#queue.queued < this.#maxPending,
      onConnection: (conn) => this.#take(conn),
      onError: (error) => this.#report(error, { phase: "accept" }),
    });
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    const done = () => this.#tasks.delete(task);
    task.then(done, done);
  }

  #report(error: unknown, info: MultiprocessingErrorInfo): void {
    if (this.#closed) return;
    try {
      this.#onError?.(error, info);
    } catch {
      // a failing hook must not stop the listener
    }
  }

  /** Takes one accepted connection (synchronously, from the accept loop). */
  #take(conn: Deno.Conn): void {
    const remoteAddr = plainAddr(conn.remoteAddr as Addr);
    const key = addressKey(remoteAddr, this.#ipv6Prefix);
    // Fails only once closed: the loop pauses before the queue is full.
    if (!this.#queue.reserve()) {
      closeQuietly(conn);
      return;
    }
    // A Unix socket's clients have no address of their own: name ours.
    const from = remoteAddr.transport === "unix"
      ? `unix:${(this.addr as Deno.UnixAddr).path}`
      : formatAddr(remoteAddr);
    const slot = new Pending(conn, remoteAddr, from);
    this.#admission.admit(slot, key);
    this.#sweep.watch(slot.deadline);
    while (this.#admission.pendingCount > this.#maxPending) {
      const victim = this.#admission.victim();
      if (victim === undefined) break;
      this.#end(victim, this.#evicted(victim));
    }
    this.#track(this.#authenticate(slot));
  }

  /** Gives back a pending connection's admission entry and queue slot. */
  #release(slot: Pending): void {
    if (slot.done) return;
    slot.done = true;
    this.#admission.release(slot);
    this.#queue.release();
  }

  /**
   * Ends a pending connection: its budget is free at once, and its
   * handshake rejects with `reason` (closing the socket), which its task
   * reports.
   */
  #end(slot: Pending, reason: DOMException): void {
    if (slot.done) return;
    this.#release(slot);
    slot.controller.abort(reason);
  }

  #evicted(slot: Pending): DOMException {
    const { key, pending } = slot.entry!;
    const age = Math.round(this.#admission.clock.now() - slot.since);
    return new DOMException(
      `Cannot authenticate the client at ${slot.from}: evicted to make room for others (maxPending ${this.#maxPending}) after ${age} ms, the oldest of the ${pending} unauthenticated connections from ${key}, the most of any address`,
      "AbortError",
    );
  }

  #timedOut(slot: Pending): DOMException {
    return new DOMException(
      `Cannot authenticate the client at ${slot.from}: timed out after ${this.#keys.timeout} ms waiting for the peer`,
      "TimeoutError",
    );
  }

  async #authenticate(slot: Pending): Promise<void> {
    const signal = slot.controller.signal;
    let authenticated: MultiprocessingConnection;
    try {
      // Evicted before it started (the newest is rarely the victim).
      signal.throwIfAborted();
      authenticated = await openConnection(
        slot.conn,
        "listener",
        this.#keys,
        signal,
      );
    } catch (error) {
      this.#release(slot);
      closeQuietly(slot.conn);
      this.#report(error, { phase: "handshake", remoteAddr: slot.remoteAddr });
      return;
    }
    if (slot.done) {
      // Ended just as it authenticated: the end was decided first.
      this.#report(signal.reason, {
        phase: "handshake",
        remoteAddr: slot.remoteAddr,
      });
      await authenticated[Symbol.asyncDispose]();
      return;
    }
    slot.done = true;
    this.#admission.release(slot);
    // Keeps its queue slot while queued; disposed of when the queue closes.
    this.#queue.push(authenticated, true);
  }

  async accept(
    options: MultiprocessingIoOptions = {},
  ): Promise<MultiprocessingConnection> {
    using limit = optionalDeadline(
      options.timeout ?? Infinity,
      options.signal,
      "accept a connection",
    );
    return await this.#queue.take(limit?.signal);
  }

  [Symbol.asyncIterator](): AsyncIterator<MultiprocessingConnection> {
    return {
      next: async (): Promise<IteratorResult<MultiprocessingConnection>> => {
        try {
          return { done: false, value: await this.#queue.take() };
        } catch (error) {
          if (this.#queue.closed) return { done: true, value: undefined };
          throw error;
        }
      },
      return: (): Promise<IteratorResult<MultiprocessingConnection>> =>
        Promise.resolve({ done: true, value: undefined }),
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#loop.stop();
    this.#sweep.stop();
    const reason = new DOMException(
      "Cannot authenticate the client: the listener was closed",
      "AbortError",
    );
    for (
      let slot = this.#admission.firstPending();
      slot !== undefined;
      slot = this.#admission.firstPending()
    ) {
      this.#end(slot, reason);
    }
    this.#queue.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#loop.done;
    // A handshake that ends now hands its connection to the closed queue,
    // which closes it: a new task.
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}
