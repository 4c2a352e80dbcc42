// Private: the time source and timers of the server's bookkeeping
// (_admission.ts, _deadline_sweep.ts), injectable so that their tests run
// on a fake clock instead of sleeping.

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
