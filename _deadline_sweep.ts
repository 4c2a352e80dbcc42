// Private: one timer for every handshake deadline of serve(). Pending
// connections are kept in accept order by the admission (_admission.ts), and
// every deadline is the accept time plus one constant timeout, so that order
// is also deadline order: one timer armed for the earliest deadline ends the
// connections past theirs, paced so that a flood's sockets, opened together,
// are not all closed (and re-opened) at once.
import type { Admission, Slot } from "./_admission.ts";
import type { Clock } from "./_clock.ts";

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
