// Private: serve()'s and connect()'s defaults, and serve()'s limits,
// deadlines and throttle options checked (through _options.ts) once before
// the server starts, so that a bad option throws before anything listens,
// into plain numbers the server reads without checking again. (The secret,
// `authenticate` and `challengeLength` are checked with the handshake step,
// _serve_handshake.ts.)
import {
  checkDuration,
  checkIpv6Prefix,
  checkLimit,
  checkTimeout,
} from "./_options.ts";
import type { FailureOptions } from "./_failure_table.ts";
import type { ServeOptions } from "./server.ts";

/** serve()'s and connect()'s defaults (documented on the options). */
export const DEFAULTS = {
  hostname: "127.0.0.1",
  port: 0,
  handshakeTimeout: 10_000,
  maxConnections: 10_000,
  maxHandshakes: 10_000,
  maxPerAddress: 256,
  ipv6Prefix: 64,
  gracePeriod: 5_000,
  delay: 250,
  maxDelay: 10_000,
  banAfter: Infinity,
  banFor: 60_000,
  forgetAfter: 600_000,
  maxAddresses: 10_000,
  maxWaiting: 32,
} as const;

/** serve()'s options, checked, with the defaults filled in. */
export interface ResolvedServeOptions {
  handshakeTimeout: number;
  maxConnections: number;
  maxHandshakes: number;
  maxPerAddress: number;
  ipv6Prefix: number;
  gracePeriod: number;
  /** Undefined when throttling is off. */
  throttle: FailureOptions | undefined;
  maxWaiting: number;
  log: boolean;
  noDelay: boolean;
}

/** Checks serve()'s limits, deadlines and throttle options. */
export function resolveServeOptions<T>(
  options: ServeOptions<T>,
): ResolvedServeOptions {
  const given = options.throttle ?? true;
  const throttleOption = given === true ? {} : given;
  let throttle: FailureOptions | undefined;
  let maxWaiting: number = DEFAULTS.maxWaiting;
  if (throttleOption !== false) {
    if (typeof throttleOption !== "object" || throttleOption === null) {
      throw new TypeError(
        `Cannot use throttle: expected an options object, true or false, got ${typeof throttleOption}`,
      );
    }
    throttle = {
      delay: checkDuration(
        throttleOption.delay,
        DEFAULTS.delay,
        "throttle.delay",
      ),
      maxDelay: checkDuration(
        throttleOption.maxDelay,
        DEFAULTS.maxDelay,
        "throttle.maxDelay",
      ),
      banAfter: checkLimit(
        throttleOption.banAfter,
        DEFAULTS.banAfter,
        "throttle.banAfter",
      ),
      banFor: checkDuration(
        throttleOption.banFor,
        DEFAULTS.banFor,
        "throttle.banFor",
      ),
      forgetAfter: checkDuration(
        throttleOption.forgetAfter,
        DEFAULTS.forgetAfter,
        "throttle.forgetAfter",
      ),
      maxAddresses: checkLimit(
        throttleOption.maxAddresses,
        DEFAULTS.maxAddresses,
        "throttle.maxAddresses",
      ),
    };
    maxWaiting = checkLimit(
      throttleOption.maxWaiting,
      DEFAULTS.maxWaiting,
      "throttle.maxWaiting",
    );
  }
  return {
    handshakeTimeout: checkTimeout(
      options.handshakeTimeout,
      DEFAULTS.handshakeTimeout,
      "handshakeTimeout",
    ),
    maxConnections: checkLimit(
      options.maxConnections,
      DEFAULTS.maxConnections,
      "maxConnections",
    ),
    maxHandshakes: checkLimit(
      options.maxHandshakes,
      DEFAULTS.maxHandshakes,
      "maxHandshakes",
    ),
    maxPerAddress: checkLimit(
      options.maxPerAddress,
      DEFAULTS.maxPerAddress,
      "maxPerAddress",
    ),
    ipv6Prefix: checkIpv6Prefix(options.ipv6Prefix, DEFAULTS.ipv6Prefix),
    gracePeriod: checkDuration(
      options.gracePeriod,
      DEFAULTS.gracePeriod,
      "gracePeriod",
    ),
    throttle,
    maxWaiting,
    log: options.log ?? true,
    noDelay: options.noDelay ?? true,
  };
}
