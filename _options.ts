// Private: the checks every public function runs on its options, one
// wording per kind of value, the same meaning everywhere:
//
// - a timeout is a number of milliseconds above 0; `Infinity` means no
//   deadline (a signal still ends the wait);
// - a duration (a grace period, a delay) is 0 or more milliseconds;
//   `Infinity` allowed;
// - a limit (a count or a size in bytes) is a whole number of at least 1;
//   `Infinity` means no limit;
// - a port is a whole number from 0 (listen: pick a free one) or 1
//   (connect) to 65535.
//
// Each returns the checked value, or `fallback` when the option is unset,
// and throws a TypeError for a value of the wrong type and a RangeError for
// one out of range: "Cannot use <option>: expected <what>, got <value>".

/** Describes a bad value for a message: its type, or the number itself. */
function got(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  return typeof value;
}

function checkNumber(value: unknown, what: string, expected: string): number {
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(
      `Cannot use ${what}: expected ${expected}, got ${got(value)}`,
    );
  }
  return value;
}

/**
 * Checks a timeout option: milliseconds above 0, `Infinity` for none.
 * Returns `fallback` when `value` is `undefined`.
 */
export function checkTimeout(
  value: number | undefined,
  fallback: number,
  what: string,
): number {
  if (value === undefined) return fallback;
  const expected = "a number of milliseconds above 0 (or Infinity for none)";
  const timeout = checkNumber(value, what, expected);
  if (timeout <= 0) {
    throw new RangeError(
      `Cannot use ${what}: expected ${expected}, got ${timeout}`,
    );
  }
  return timeout;
}

/**
 * Checks a duration option (a grace period, a delay): 0 or more
 * milliseconds, `Infinity` allowed. Returns `fallback` when `value` is
 * `undefined`.
 */
export function checkDuration(
  value: number | undefined,
  fallback: number,
  what: string,
): number {
  if (value === undefined) return fallback;
  const expected = "a number of milliseconds, 0 or more (or Infinity)";
  const duration = checkNumber(value, what, expected);
  if (duration < 0) {
    throw new RangeError(
      `Cannot use ${what}: expected ${expected}, got ${duration}`,
    );
  }
  return duration;
}

/**
 * Checks a limit option (a count, a size in bytes): a whole number of at
 * least 1, `Infinity` for no limit. Returns `fallback` when `value` is
 * `undefined`.
 */
export function checkLimit(
  value: number | undefined,
  fallback: number,
  what: string,
): number {
  if (value === undefined) return fallback;
  const expected = "a whole number of at least 1 (or Infinity for no limit)";
  const limit = checkNumber(value, what, expected);
  if (limit < 1 || (Number.isFinite(limit) && !Number.isInteger(limit))) {
    throw new RangeError(
      `Cannot use ${what}: expected ${expected}, got ${limit}`,
    );
  }
  return limit;
}

/**
 * Checks a port option: a whole number from 0 (`listen: true`, a free port
 * is picked) or 1 to 65535. Returns `fallback` when `value` is `undefined`.
 */
export function checkPort(
  value: number | undefined,
  fallback: number | undefined,
  what: string,
  listen: boolean,
): number {
  const low = listen ? 0 : 1;
  const expected = `a port number from ${low} to 65535`;
  if (value === undefined) {
    if (fallback !== undefined) return fallback;
    throw new TypeError(
      `Cannot use ${what}: expected ${expected}, got undefined`,
    );
  }
  const port = checkNumber(value, what, expected);
  if (!Number.isInteger(port) || port < low || port > 65535) {
    throw new RangeError(
      `Cannot use ${what}: expected ${expected}, got ${port}`,
    );
  }
  return port;
}

/**
 * Checks an `ipv6Prefix` option: a whole number of bits from 1 to 128;
 * `fallback` when it is not set.
 */
export function checkIpv6Prefix(
  value: number | undefined,
  fallback: number,
): number {
  const prefix = value ?? fallback;
  if (typeof prefix !== "number") {
    throw new TypeError(
      `Cannot use ipv6Prefix: expected a number of bits, got ${typeof prefix}`,
    );
  }
  if (!Number.isInteger(prefix) || prefix < 1 || prefix > 128) {
    throw new RangeError(
      `Cannot use ipv6Prefix: expected a whole number of bits from 1 to 128, got ${prefix}`,
    );
  }
  return prefix;
}
