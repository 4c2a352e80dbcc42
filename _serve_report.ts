// Private: what serve() tells about its connections, and how. The four
// hooks (onConnection, onAuthFailure, onRefuse, onError), each call guarded:
// a hook that throws is reported to onError (phase "hook"), an onError that
// throws is printed to stderr, and neither reaches the server. And the
// default log to stderr (`log: true`): rate limited (_log.ts), each line
// formatted only when it is printed, naming the peer's address and the
// error, never key material.
import { formatAddr } from "./_address.ts";
import { RateLimitedLog, safeLogText } from "./_log.ts";
import type {
  AuthFailureInfo,
  ConnectionInfo,
  RefuseReason,
  ServeErrorInfo,
  ServeOptions,
} from "./server.ts";

/** The hooks of {@linkcode ServeOptions}. */
export type ServeHooks = Pick<
  ServeOptions<never>,
  "onConnection" | "onAuthFailure" | "onRefuse" | "onError"
>;

/** The addresses of a connection, as far as they are known. */
export interface Peer {
  readonly remoteAddr: Deno.Addr | undefined;
  readonly localAddr: Deno.Addr | undefined;
}

/** Failures whose log line carries the error's message (the fix). */
const MIXUPS: ReadonlySet<string> = new Set(["tls-client", "wrong-hash"]);

/**
 * What the peer did, for the socket errors that end a connection from its
 * side: not a bug, so one line without a stack.
 */
const PEER_GONE: ReadonlyArray<[new (...args: never[]) => Error, string]> = [
  [Deno.errors.ConnectionReset, "connection reset by peer"],
  [Deno.errors.BrokenPipe, "broken pipe (the peer closed its end)"],
  [Deno.errors.ConnectionAborted, "connection aborted"],
  [Deno.errors.UnexpectedEof, "the peer closed mid-message"],
  [Deno.errors.NotConnected, "not connected (the peer is gone)"],
];

/** How a peer that went away mid-transfer is told; undefined otherwise. */
export function peerGone(error: unknown): string | undefined {
  for (const [type, text] of PEER_GONE) {
    if (error instanceof type) return text;
  }
  return undefined;
}

/** `Name: message` for an error, the value itself for anything else. */
export function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/** Tells serve()'s hooks and its default log what happened. */
export class ServeReporter {
  #log: RateLimitedLog | undefined;
  #onConnection: ((info: ConnectionInfo) => void) | undefined;
  #onAuthFailure: ((info: AuthFailureInfo) => void) | undefined;
  #onRefuse: ServeHooks["onRefuse"];
  #onError: ServeHooks["onError"];

  /**
   * @param hooks The caller's hooks (a missing or null one is skipped).
   * @param log Whether to log to stderr.
   */
  constructor(hooks: ServeHooks, log: boolean) {
    this.#log = log ? new RateLimitedLog({ prefix: "connauth: " }) : undefined;
    this.#onConnection = hooks.onConnection ?? undefined;
    this.#onAuthFailure = hooks.onAuthFailure ?? undefined;
    this.#onRefuse = hooks.onRefuse ?? undefined;
    this.#onError = hooks.onError ?? undefined;
  }

  /** Whether lines are logged: skip computing details nobody prints. */
  get logging(): boolean {
    return this.#log !== undefined;
  }

  /** Logs a line about the server itself (`text` called only if printed). */
  line(text: string | (() => string)): void {
    this.#log?.line(text);
  }

  /** Prints the count of the lines the rate limit held back (shutdown). */
  flush(): void {
    this.#log?.flush();
  }

  /** An authenticated connection, before its handler: `onConnection`. */
  connected(info: ConnectionInfo): void {
    if (this.#onConnection !== undefined) this.#call(this.#onConnection, info);
  }

  /**
   * A handshake that failed with an `AuthenticationError`: a log line
   * (naming the failures on record for `key` and the pause they cost), then
   * `onAuthFailure`.
   */
  authFailed(info: AuthFailureInfo, key: string | undefined): void {
    this.#log?.line(() => {
      const { remoteAddr, error, failures, delay } = info;
      const pause = failures > 0
        ? ` (failure ${failures} from ${key}; its next handshake waits ${delay} ms)`
        : "";
      // A protocol mix-up's message says what to fix; a wrong key's says
      // nothing the reason does not.
      const what = MIXUPS.has(error.reason)
        ? `${error.reason}: ${error.message.replace(/^Cannot [^:]*: /, "")}`
        : error.reason;
      return `${
        formatAddr(remoteAddr)
      }: authentication failed (${what}); closing${pause}`;
    });
    if (this.#onAuthFailure !== undefined) {
      this.#call(this.#onAuthFailure, info);
    }
  }

  /**
   * A connection closed before its handshake: a log line when there is a
   * `detail` (called only if printed), then `onRefuse`.
   */
  refused(
    peer: Peer,
    reason: RefuseReason,
    detail?: string | (() => string),
  ): void {
    if (detail !== undefined) {
      this.#log?.line(() =>
        `${formatAddr(peer.remoteAddr)}: refused: ${
          typeof detail === "function" ? detail() : detail
        }`
      );
    }
    const hook = this.#onRefuse;
    if (hook === undefined) return;
    this.#call(hook, {
      remoteAddr: peer.remoteAddr!,
      localAddr: peer.localAddr!,
      reason,
    });
  }

  /**
   * An error that ended one connection or one accept: a log line (the
   * stack for a handler's error, unless the peer went away: a reset is one
   * line; `then` says what the server does next), then `onError`.
   */
  error(error: unknown, info: ServeErrorInfo, then?: string): void {
    this.#log?.line(() => {
      const where = info.remoteAddr ? `${formatAddr(info.remoteAddr)}: ` : "";
      const gone = peerGone(error);
      const detail = gone !== undefined
        ? gone
        : info.phase === "handler" && error instanceof Error && error.stack
        ? error.stack
        : describe(error);
      return `${where}${info.phase} failed: ${detail}${
        then ? `; ${then}` : ""
      }`;
    });
    const hook = this.#onError;
    if (hook === undefined) return;
    try {
      hook(error, info);
    } catch (thrown) {
      console.error(
        `connauth: the onError hook threw: ${safeLogText(describe(thrown))}`,
      );
    }
  }

  #call<A>(hook: (arg: A) => void, arg: A): void {
    try {
      hook(arg);
    } catch (error) {
      this.error(error, { phase: "hook" });
    }
  }
}
