// Private: the race of listenTls()'s `authorize` hook against its deadline
// (`authorizeTimeout`), the client going away (or the listener closing) and
// the client sending more than `readBufferLimit` meanwhile. Exactly one of
// them ends the wait: the hook's answer delivers or refuses the client,
// the others refuse it (or, for a disconnect, just end), and the hook's
// signal aborts with why. A throw in any step closes this one client
// (`fault`), never the listener.
import type { ListenTlsOptions, PeerIdentity, TlsFailure } from "./tls.ts";
import { describe, errorText } from "./_tls_diagnosis.ts";

/** The `authorize` hook of listenTls()'s options. */
export type AuthorizeHook = NonNullable<ListenTlsOptions["authorize"]>;

/** Who is asked about, and the limits of the wait. */
export interface AuthorizeRequest {
  readonly identity: PeerIdentity | null;
  readonly remoteAddr: Deno.NetAddr;
  /** Milliseconds the hook has; Infinity for no deadline. */
  readonly timeout: number;
  /** For the `"too-large"` message. */
  readonly readBufferLimit: number;
}

/** How the wait ends; each is called at most once, after `settled`. */
export interface AuthorizeEnds {
  /** The wait is over, whichever way (give back the queue slot). */
  settled(): void;
  /** The hook said yes. */
  accept(): void;
  /** The client is refused; close it and report. */
  refuse(reason: TlsFailure, message: string): void;
  /** A step threw; close the client and report `error`. */
  fault(error: unknown): void;
}

/** What the listener tells a running wait. */
export interface AuthorizeWait {
  /** The client disconnected, or the listener closed. */
  disconnected(): void;
  /** The client sent more than `readBufferLimit` bytes meanwhile. */
  overflowed(): void;
}

/** Asks `hook` about one client; see the file's head. */
export function authorizeClient(
  hook: AuthorizeHook,
  request: AuthorizeRequest,
  ends: AuthorizeEnds,
): AuthorizeWait {
  const { identity, remoteAddr, timeout, readBufferLimit } = request;
  const who = describe(identity);
  const controller = new AbortController();
  let settled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Ends the wait exactly once; aborts the hook's signal with `reason`
  // (unless the hook answered).
  const settle = (reason?: unknown): boolean => {
    if (settled) return false;
    settled = true;
    clearTimeout(timer);
    ends.settled();
    if (reason !== undefined) controller.abort(reason);
    return true;
  };
  // Runs a step of the wait; a throw closes this client only.
  const guard = (fn: () => void) => {
    try {
      fn();
    } catch (error) {
      settle(error);
      ends.fault(error);
    }
  };
  if (Number.isFinite(timeout)) {
    timer = setTimeout(() =>
      guard(() => {
        const aborted = new DOMException(
          `Cannot authorize: timed out after ${timeout} ms`,
          "TimeoutError",
        );
        if (!settle(aborted)) return;
        ends.refuse(
          "authorize-timeout",
          `${who} was refused: the authorize hook did not answer within ${timeout} ms; make it answer sooner (it gets an AbortSignal) or raise \`authorizeTimeout\``,
        );
      }), timeout);
  }
  let verdict: Promise<boolean>;
  try {
    verdict = Promise.resolve(hook(identity, remoteAddr, controller.signal));
  } catch (error) {
    verdict = Promise.reject(error);
  }
  verdict.then((ok) =>
    guard(() => {
      if (!settle()) return;
      if (ok === true) return ends.accept();
      ends.refuse("not-allowed", `${who} was refused by the authorize hook`);
    }), (error) =>
    guard(() => {
      if (!settle()) return;
      ends.refuse(
        "not-allowed",
        `${who} was refused: the authorize hook threw: ${errorText(error)}`,
      );
    }));
  return {
    disconnected: () =>
      guard(() => {
        settle(
          new DOMException(
            "Cannot authorize the client: it disconnected (or the listener closed) before the hook answered",
            "AbortError",
          ),
        );
      }),
    overflowed: () =>
      guard(() => {
        const message =
          `${who} sent more than ${readBufferLimit} bytes while the authorize hook ran; it was closed (raise \`readBufferLimit\` if clients may send that much before the hook answers)`;
        const aborted = new DOMException(
          `Cannot authorize: ${message}`,
          "AbortError",
        );
        if (settle(aborted)) ends.refuse("too-large", message);
      }),
  };
}
