// Private: the checks every public function runs on its options, one
// wording per kind of value, the same meaning everywhere:
//
// - a timeout is a number of milliseconds above 0; `Infinity` means no
//   deadline (a signal still ends the wait);
// - a duration (a grace period, a delay) is 0 or more milliseconds;
//   `Infinity` allowed;
// - a limit (a count or a size in bytes) is a whole number of at least 1;
//   `Infinity` means no limit;
// - a whole number within bounds (a challenge length in bytes, an IPv6
//   prefix in bits), and a port, one of those: from 0 (listen: pick a free
//   one) or 1 (connect) to 65535;
// - an options object (not null, not a primitive).
//
// Each number check returns the checked value, or `fallback` when the
// option is unset, and throws a TypeError for a value of the wrong type and
// a RangeError for one out of range: "Cannot use <option>: expected <what>,
// got <value>".

/** Describes a bad value for a message: its type, or the number itself. */
function got(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  return typeof value;
}

/**
 * The shape of every number check: `fallback` when `value` is unset (a
 * TypeError when there is none), a TypeError unless `value` is a number, a
 * RangeError unless `valid` holds.
 */
function checkNumber(
  value: number | undefined,
  fallback: number | undefined,
  what: string,
  expected: string,
  valid: (value: number) => boolean,
): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(
      `Cannot use ${what}: expected ${expected}, got ${got(value)}`,
    );
  }
  if (!valid(value)) {
    throw new RangeError(
      `Cannot use ${what}: expected ${expected}, got ${value}`,
    );
  }
  return value;
}

/** A check of one kind of number option; see the module comment. */
export type NumberCheck = (
  value: number | undefined,
  fallback: number,
  what: string,
) => number;

/**
 * The longest delay a timer honours, in milliseconds (2^31 - 1, about 24.8
 * days): `setTimeout` fires a longer one at once. A timeout or duration
 * above it is taken as `Infinity` (no deadline), never as "now".
 */
export const MAX_TIMER_DELAY = 2 ** 31 - 1;

/** A time check: like a number check, with delays past a timer's as none. */
function timeKind(
  expected: string,
  valid: (value: number) => boolean,
): NumberCheck {
  return (value, fallback, what) => {
    const ms = checkNumber(value, fallback, what, expected, valid);
    return ms > MAX_TIMER_DELAY ? Infinity : ms;
  };
}

/** A check for the numbers `valid` accepts, described as `expected`. */
function numberKind(
  expected: string,
  valid: (value: number) => boolean,
): NumberCheck {
  return (value, fallback, what) =>
    checkNumber(value, fallback, what, expected, valid);
}

/**
 * Checks a timeout option: milliseconds above 0, `Infinity` (or anything
 * above {@linkcode MAX_TIMER_DELAY}) for none. Returns `fallback` when
 * `value` is `undefined`.
 */
export const checkTimeout: NumberCheck = timeKind(
  "a number of milliseconds above 0 (or Infinity for none)",
  (value) => value > 0,
);

/**
 * Checks a duration option (a grace period, a delay): 0 or more
 * milliseconds, `Infinity` (or anything above {@linkcode MAX_TIMER_DELAY})
 * for "for ever". Returns `fallback` when `value` is `undefined`.
 */
export const checkDuration: NumberCheck = timeKind(
  "a number of milliseconds, 0 or more (or Infinity)",
  (value) => value >= 0,
);

/**
 * Checks a limit option (a count, a size in bytes): a whole number of at
 * least 1, `Infinity` for no limit. Returns `fallback` when `value` is
 * `undefined`.
 */
export const checkLimit: NumberCheck = numberKind(
  "a whole number of at least 1 (or Infinity for no limit)",
  (value) => value >= 1 && (value === Infinity || Number.isInteger(value)),
);

/**
 * Checks a whole number from `min` to `max` (both included), described in
 * messages as `noun` ("a whole number of bytes"). Returns `fallback` when
 * `value` is `undefined`; with no fallback the option is required.
 */
export function checkInteger(
  value: number | undefined,
  fallback: number | undefined,
  what: string,
  [min, max]: readonly [number, number],
  noun = "a whole number",
): number {
  return checkNumber(
    value,
    fallback,
    what,
    `${noun} from ${min} to ${max}`,
    (n) => Number.isInteger(n) && n >= min && n <= max,
  );
}

/**
 * Checks a port option: a whole number from 0 (`listen: true`, a free port
 * is picked) or 1 to 65535. Returns `fallback` when `value` is `undefined`;
 * with no fallback the port is required.
 */
export function checkPort(
  value: number | undefined,
  fallback: number | undefined,
  what: string,
  listen: boolean,
): number {
  return checkInteger(
    value,
    fallback,
    what,
    [listen ? 0 : 1, 65535],
    "a port number",
  );
}

/**
 * Checks an `ipv6Prefix` option: a whole number of bits from 1 to 128;
 * `fallback` when it is not set.
 */
export function checkIpv6Prefix(
  value: number | undefined,
  fallback: number,
): number {
  return checkInteger(
    value,
    fallback,
    "ipv6Prefix",
    [1, 128],
    "a whole number of bits",
  );
}

/**
 * Checks that a function's options are an object, before any of them is
 * read: `Cannot <action>: expected an options object, got null`.
 */
export function checkOptionsObject(options: unknown, action: string): void {
  if (typeof options === "object" && options !== null) return;
  throw new TypeError(
    `Cannot ${action}: expected an options object, got ${got(options)}`,
  );
}

/** What a list of keys for rotation is called in its errors. */
export interface KeyListNames {
  /** The list: `"secrets"`. */
  plural: string;
  /** One item: `"shared secret"`. */
  one: string;
  /** The key in use: `"key"`. */
  current: string;
}

/**
 * Checks the length of a list of keys given for rotation (a server's
 * secrets, a listener's authkeys): not empty, at most `max`.
 */
export function checkKeyCount(
  length: number,
  max: number,
  names: KeyListNames,
): void {
  if (length === 0) {
    throw new TypeError(
      `Cannot use the ${names.plural}: the list is empty; give at least one ${names.one}`,
    );
  }
  if (length > max) {
    throw new RangeError(
      `Cannot use the ${names.plural}: ${length} given, at most ${max}; keep the current ${names.current} and the ones clients still use`,
    );
  }
}
