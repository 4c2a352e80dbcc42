// Private: one connection of serve() from accept to close (Connection: its
// phase, why the server ended it, its wait for a throttled address's turn,
// and, through Slot, its places in the admission's lists: one object per
// connection), and the list of connections whose task still runs
// (LiveConnections), which shutdown walks and waits to see empty.
import { Slot, type TurnOutcome } from "./_admission.ts";
import type { ServerConn } from "./server.ts";

/** Why the server ended a connection before its handshake finished. */
export type EndReason = "timeout" | "evicted" | "shutdown";

/** Where a connection's task is. */
export type Phase = "accept" | "waiting" | "handshake" | "handler";

/**
 * One accepted connection, from accept to close: the bookkeeping's slot
 * (its places in the pending lists) and the task's state, in one object.
 */
export class Connection extends Slot {
  readonly conn: ServerConn;
  remoteAddr: Deno.Addr | undefined = undefined;
  localAddr: Deno.Addr | undefined = undefined;
  phase: Phase = "accept";
  /** Set when the server ended it before its handshake finished. */
  ended: EndReason | undefined = undefined;
  /** Its socket is closed and it is no longer counted. */
  closed = false;
  /** Shutdown stopped waiting for it: report nothing more. */
  abandoned = false;
  /** Only for the authenticators that take a signal. */
  controller: AbortController | undefined = undefined;
  /** Its neighbours in {@linkcode LiveConnections}. */
  prevLive: Connection | undefined = undefined;
  nextLive: Connection | undefined = undefined;
  #wake: ((outcome: TurnOutcome | "ended") => void) | undefined = undefined;
  #outcome: TurnOutcome | "ended" | undefined = undefined;

  constructor(conn: ServerConn) {
    super();
    this.conn = conn;
  }

  override onTurn(outcome: TurnOutcome | "ended"): void {
    const wake = this.#wake;
    if (wake === undefined) {
      this.#outcome ??= outcome;
      return;
    }
    this.#wake = undefined;
    wake(outcome);
  }

  /** Waits until its throttled address's turn comes, or it is ended. */
  waitTurn(): Promise<TurnOutcome | "ended"> {
    if (this.#outcome !== undefined) return Promise.resolve(this.#outcome);
    return new Promise((resolve) => this.#wake = resolve);
  }
}

/**
 * The connections whose task runs, newest first, linked through the
 * connections themselves (no allocation per connection).
 */
export class LiveConnections {
  /** How many are on the list. */
  size = 0;
  /** The newest; follow {@linkcode Connection.nextLive} for the others. */
  first: Connection | undefined = undefined;
  #idle: (() => void) | undefined = undefined;

  /** Puts a connection whose task starts on the list. */
  add(c: Connection): void {
    this.size += 1;
    c.nextLive = this.first;
    if (this.first !== undefined) this.first.prevLive = c;
    this.first = c;
  }

  /**
   * Takes a connection whose task ended off the list (an abandoned one is
   * off already); the last one off ends {@linkcode LiveConnections.idle}.
   */
  remove(c: Connection): void {
    if (c.abandoned) return;
    const { prevLive: prev, nextLive: next } = c;
    if (prev !== undefined) prev.nextLive = next;
    else this.first = next;
    if (next !== undefined) next.prevLive = prev;
    c.prevLive = c.nextLive = undefined;
    this.size -= 1;
    if (this.size === 0) this.#wakeIdle();
  }

  /** Resolves once the list is empty (at once when it is). */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idle = resolve);
  }

  /**
   * Gives up on every connection still on the list: marks each abandoned,
   * tells `each` of it, empties the list and ends
   * {@linkcode LiveConnections.idle}.
   */
  abandonAll(each: (c: Connection) => void): void {
    for (let c = this.first; c !== undefined; c = c.nextLive) {
      c.abandoned = true;
      each(c);
    }
    this.first = undefined;
    this.size = 0;
    this.#wakeIdle();
  }

  #wakeIdle(): void {
    const idle = this.#idle;
    this.#idle = undefined;
    idle?.();
  }
}
