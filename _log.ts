// Private: the rate-limited stderr logger of connauth's servers (serve(),
// and the TLS listener's default error report), so that a flood of bad
// clients cannot flood the log.
//
// At most `perSecond` lines are printed in each window of one second (the
// window opens with the first line after the previous one closed); the rest
// are counted, and the count is printed as one summary line before the next
// line of a later window, or by flush() (at shutdown). The hooks of each
// server see every event either way: this is only the default log.

/**
 * Control characters, other than a line feed, and the bidirectional
 * overrides and isolates that could make a log line say what it does not.
 */
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Makes `text` safe to print as one log entry, whatever a peer put in it
 * (an error message may quote peer data): control characters and bidi
 * overrides become `\xNN`/`\uNNNN` escapes, and every line after the first
 * starts with white space (a stack's `    at` lines already do), so no line
 * of it can pass for an entry of its own.
 */
export function safeLogText(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  }).replace(/\n(?![ \t])/g, "\n  ");
}

/** Most lines a {@linkcode RateLimitedLog} prints a second by default. */
export const LOG_LINES_PER_SECOND = 20;

/** Options for {@linkcode RateLimitedLog}. */
export interface RateLimitedLogOptions {
  /** Put before every line, e.g. `"connauth: "`. */
  prefix: string;
  /** Most lines printed in one second. */
  perSecond?: number;
  /** The clock, in milliseconds (tests). */
  now?: () => number;
  /** Where lines go (tests); `console.error` by default, looked up per line. */
  write?: (line: string) => void;
}

/** A logger that prints at most `perSecond` lines a second and sums up the rest. */
export class RateLimitedLog {
  #prefix: string;
  #perSecond: number;
  #now: () => number;
  #write: (line: string) => void;
  #windowStart = -Infinity;
  #count = 0;
  #suppressed = 0;

  constructor(options: RateLimitedLogOptions) {
    this.#prefix = options.prefix;
    this.#perSecond = options.perSecond ?? LOG_LINES_PER_SECOND;
    this.#now = options.now ?? Date.now;
    // Looked up on every line, so that a test that replaces console.error
    // sees the lines.
    this.#write = options.write ?? ((line) => console.error(line));
  }

  /** Lines counted but not printed since the last summary. */
  get suppressed(): number {
    return this.#suppressed;
  }

  /**
   * Prints `text` (after the prefix), or counts it when over the rate. A
   * function is called only when the line is printed: a flood then costs a
   * counter, not the formatting.
   */
  line(text: string | (() => string)): void {
    const now = this.#now();
    if (now - this.#windowStart >= 1000) {
      this.flush();
      this.#windowStart = now;
      this.#count = 0;
    }
    if (this.#count < this.#perSecond) {
      this.#count += 1;
      this.#write(
        `${this.#prefix}${
          safeLogText(typeof text === "function" ? text() : text)
        }`,
      );
    } else {
      this.#suppressed += 1;
    }
  }

  /** Prints the summary of the lines suppressed so far, if any. */
  flush(): void {
    if (this.#suppressed === 0) return;
    const count = this.#suppressed;
    this.#suppressed = 0;
    this.#write(
      `${this.#prefix}${count} more lines suppressed (over ${this.#perSecond} a second); use the hooks to see every event`,
    );
  }
}
