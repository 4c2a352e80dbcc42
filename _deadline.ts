// Private: deadlines and cancellation for every wait on a peer: a timer and
// a caller's signal combined into one signal, and a race of a promise
// against a signal.
import { checkTimeout } from "./_options.ts";

/** Default deadline, in milliseconds, for any wait on a peer. */
export const DEFAULT_TIMEOUT = 10_000;

/** A combined deadline + caller signal, with its timer cleared by dispose. */
export interface Deadline extends Disposable {
  /** Aborts on timeout (reason: TimeoutError) or when the caller's aborts. */
  readonly signal: AbortSignal;
}

/**
 * Creates a signal that aborts after `timeout` ms with a `TimeoutError`
 * naming `action`, or when `signal` aborts (with its reason). Dispose it to
 * clear the timer (so test sanitizers see no leaked timer).
 */
export function deadline(
  timeout: number,
  signal: AbortSignal | undefined,
  action: string,
): Deadline {
  timeout = checkTimeout(timeout, timeout, "timeout");
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => controller.abort(signal!.reason);
  if (signal?.aborted) {
    controller.abort(signal.reason);
  } else {
    signal?.addEventListener("abort", onAbort, { once: true });
    if (Number.isFinite(timeout)) {
      timer = setTimeout(() => {
        controller.abort(
          new DOMException(
            `Cannot ${action}: timed out after ${timeout} ms waiting for the peer`,
            "TimeoutError",
          ),
        );
      }, timeout);
    }
  }
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    },
  };
}

/**
 * A {@linkcode deadline} for a call that by default waits as long as its
 * connection lives: `undefined` when `timeout` is `Infinity` and there is no
 * `signal`, so the call skips the race (`raceSignal(p, undefined)` is `p`).
 */
export function optionalDeadline(
  timeout: number,
  signal: AbortSignal | undefined,
  action: string,
): Deadline | undefined {
  timeout = checkTimeout(timeout, timeout, "timeout");
  if (timeout === Infinity && !signal) return undefined;
  return deadline(timeout, signal, action);
}

/** Runs `fn` until it settles or `signal` aborts; rejects with the reason. */
export function raceSignal<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
