// Private: the deadlines of one connection served by _http1_session.ts,
// checked by one timer: silence (no byte from the client for
// `keepAliveTimeout`), the whole request, and the write of a response (a
// client that does not read). Deadlines are kept as times and the timer is
// re-armed only when it fires, so moving a deadline (on every chunk the
// client sends) costs no timer call.

import { MAX_TIMER_DELAY } from "./_options.ts";

/** The three deadlines of a served connection and their one timer. */
export class Http1Deadlines {
  // Times from performance.now(); 0: off.
  #silenceAt = 0;
  #requestAt = 0;
  #writeAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  readonly #silence: number;
  readonly #onReadLate: () => void;
  readonly #onWriteLate: () => void;

  /**
   * @param silence Milliseconds of silence allowed, and the time a client
   * has to take a response.
   * @param onReadLate Called once the silence or the request deadline has
   * passed.
   * @param onWriteLate Called once a write has taken longer than `silence`.
   */
  constructor(
    silence: number,
    onReadLate: () => void,
    onWriteLate: () => void,
  ) {
    this.#silence = silence;
    this.#onReadLate = onReadLate;
    this.#onWriteLate = onWriteLate;
  }

  /**
   * Waits on the client: it must send a byte within the silence allowed
   * (re-armed by {@linkcode heard}) and be done within `request` ms.
   */
  expect(request: number): void {
    this.#requestAt = performance.now() + request;
    this.#armSilence();
  }

  /** The client sent bytes: the silence deadline starts again, if on. */
  heard(): void {
    if (this.#silenceAt !== 0) this.#armSilence();
  }

  /** Stops waiting on the client (its request is in: the rest is ours). */
  pause(): void {
    this.#silenceAt = 0;
    this.#requestAt = 0;
  }

  /** A write starts: the client has the silence allowed to take it. */
  writing(): void {
    this.#writeAt = performance.now() + this.#silence;
    this.#schedule();
  }

  /** The write is over. */
  written(): void {
    this.#writeAt = 0;
  }

  /** Turns every deadline off for good. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #armSilence(): void {
    this.#silenceAt = performance.now() + this.#silence;
    this.#schedule();
  }

  #tick(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    const now = performance.now();
    if (this.#writeAt !== 0 && now >= this.#writeAt) {
      return this.#onWriteLate();
    }
    if (
      (this.#silenceAt !== 0 && now >= this.#silenceAt) ||
      (this.#requestAt !== 0 && now >= this.#requestAt)
    ) return this.#onReadLate();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    let next = Infinity;
    for (const at of [this.#silenceAt, this.#requestAt, this.#writeAt]) {
      if (at !== 0 && at < next) next = at;
    }
    if (next === Infinity) return;
    this.#timer = setTimeout(
      () => this.#tick(),
      Math.min(
        MAX_TIMER_DELAY,
        Math.max(0, Math.ceil(next - performance.now())),
      ),
    );
  }
}
