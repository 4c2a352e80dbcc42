// The log of the HMAC example servers (echo_server.ts, upper_server.ts):
// one line per event, in one format for both, rate limited so that a flood
// of clients cannot flood the terminal. Lines name the peer's address and
// what happened, never key material:
//
//     accept 127.0.0.1:50000 (#1)
//     reject 127.0.0.1:50001: authentication failed (wrong-key): <message>; its next handshake waits 500 ms
//     refuse 127.0.0.1:50002: throttled
//     error 127.0.0.1:50003: handler: the client hung up (ConnectionReset)
import type { ServeOptions } from "../server.ts";

/** An address for a log line: `127.0.0.1:5000`, `[::1]:5000`, `unix:/path`. */
export function formatAddr(addr: Deno.Addr | undefined): string {
  if (addr === undefined) return "unknown";
  if ("hostname" in addr) {
    const host = addr.hostname.includes(":")
      ? `[${addr.hostname}]`
      : addr.hostname;
    return `${host}:${addr.port}`;
  }
  return "path" in addr ? `${addr.transport}:${addr.path}` : addr.transport;
}

/** What {@linkcode rateLimitedLog} returns. */
export interface RateLimitedLog {
  /** Prints a line, or counts it when over the rate; `text` runs only if printed. */
  line(text: () => string): void;
  /** Prints how many lines were held back, if any (call before exiting). */
  flush(): void;
}

/**
 * A stderr log that prints at most `perSecond` lines a second, as the
 * library's own default log of serve() does: a flood of clients cannot
 * flood the terminal, nor cost the server a formatted write per
 * connection. The lines held back are counted in one line.
 */
export function rateLimitedLog(perSecond = 20): RateLimitedLog {
  let second = -Infinity;
  let printed = 0;
  let held = 0;
  const flush = () => {
    if (held === 0) return;
    console.error(`${held} more lines suppressed (over ${perSecond} a second)`);
    held = 0;
  };
  return {
    line(text) {
      const now = Date.now();
      if (now - second >= 1000) {
        flush();
        second = now;
        printed = 0;
      }
      if (printed < perSecond) {
        printed += 1;
        console.error(text());
      } else {
        held += 1;
      }
    },
    flush,
  };
}

/** A peer's error as a short cause: a hang-up is not a stack trace. */
function cause(error: unknown): string {
  if (
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe
  ) {
    return `the client hung up (${error.name})`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * serve()'s hooks writing the shared log lines (in place of the library's
 * default log), and `flush` for shutdown. Errors after `stopping` aborts
 * that are only the shutdown itself (an AbortError) are not logged.
 */
export function serverLog(stopping: AbortSignal): {
  hooks: Pick<
    ServeOptions<never>,
    "log" | "onConnection" | "onAuthFailure" | "onRefuse" | "onError"
  >;
  flush(): void;
} {
  const log = rateLimitedLog();
  return {
    hooks: {
      log: false,
      // (A function is formatted only when its line is printed.)
      onConnection: ({ remoteAddr, id }) =>
        log.line(() => `accept ${formatAddr(remoteAddr)} (#${id})`),
      onAuthFailure: ({ remoteAddr, error, delay }) =>
        log.line(() =>
          `reject ${
            formatAddr(remoteAddr)
          }: authentication failed (${error.reason}): ${error.message}${
            delay ? `; its next handshake waits ${delay} ms` : ""
          }`
        ),
      onRefuse: ({ remoteAddr, reason }) =>
        log.line(() => `refuse ${formatAddr(remoteAddr)}: ${reason}`),
      onError: (error, { phase, remoteAddr }) => {
        if (stopping.aborted && (error as Error)?.name === "AbortError") {
          return;
        }
        log.line(() =>
          phase === "handshake"
            ? `reject ${formatAddr(remoteAddr)}: handshake failed: ${
              cause(error)
            }`
            : `error ${formatAddr(remoteAddr)}: ${phase}: ${cause(error)}`
        );
      },
    },
    flush: () => log.flush(),
  };
}
