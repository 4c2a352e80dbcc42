// Tests for _serve_options.ts: serve()'s defaults and option checks.
import assert from "node:assert/strict";
import { DEFAULTS, resolveServeOptions } from "../_serve_options.ts";
import { checkLimit } from "../_options.ts";
import { checkSecret } from "../_hmac_key.ts";
import { HmacKey } from "../handshake.ts";

Deno.test("resolveServeOptions() fills in the documented defaults", () => {
  const resolved = resolveServeOptions({ secret: "k" });
  assert.deepEqual(resolved, {
    handshakeTimeout: 10_000,
    maxConnections: 10_000,
    maxHandshakes: 10_000,
    maxPerAddress: 256,
    ipv6Prefix: 64,
    gracePeriod: 5_000,
    throttle: {
      delay: 250,
      maxDelay: 10_000,
      banAfter: Infinity,
      banFor: 60_000,
      forgetAfter: 600_000,
      maxAddresses: 10_000,
    },
    maxWaiting: 32,
    log: true,
    noDelay: true,
  });
  assert.equal(DEFAULTS.maxHandshakes, DEFAULTS.maxConnections);
  // throttle: true is the documented default, spelled out.
  assert.deepEqual(
    resolveServeOptions({ secret: "k", throttle: true }),
    resolved,
  );
});

Deno.test("resolveServeOptions() takes given values, throttle: false and Infinity limits", () => {
  const resolved = resolveServeOptions({
    secret: "k",
    maxHandshakes: 64,
    maxConnections: Infinity,
    throttle: false,
    log: false,
    noDelay: false,
    handshakeTimeout: Infinity,
  });
  assert.equal(resolved.maxHandshakes, 64);
  assert.equal(resolved.maxConnections, Infinity);
  assert.equal(resolved.throttle, undefined);
  assert.equal(resolved.handshakeTimeout, Infinity);
  assert.equal(resolved.log, false);
  assert.equal(resolved.noDelay, false);
  assert.equal(
    resolveServeOptions({ throttle: { maxWaiting: 2 } }).maxWaiting,
    2,
  );
});

Deno.test("resolveServeOptions() refuses bad limits, deadlines and throttle options with clear errors", () => {
  const cases: [Record<string, unknown>, ErrorConstructor, RegExp][] = [
    [{ maxHandshakes: 0 }, RangeError, /maxHandshakes: expected a whole/],
    [{ maxConnections: 1.5 }, RangeError, /maxConnections/],
    [
      { maxPerAddress: "8" },
      TypeError,
      /maxPerAddress: expected a whole number .*, got "8"/,
    ],
    [{ handshakeTimeout: 0 }, RangeError, /handshakeTimeout/],
    [{ gracePeriod: -1 }, RangeError, /gracePeriod/],
    [{ ipv6Prefix: 129 }, RangeError, /ipv6Prefix/],
    [{ throttle: "on" }, TypeError, /throttle: expected an options object/],
    [{ throttle: { delay: -1 } }, RangeError, /throttle\.delay/],
    [{ throttle: { banAfter: 0 } }, RangeError, /throttle\.banAfter/],
    [{ throttle: { maxWaiting: NaN } }, TypeError, /throttle\.maxWaiting/],
  ];
  for (const [options, type, message] of cases) {
    assert.throws(
      () => resolveServeOptions(options),
      (error: unknown) => error instanceof type && message.test(String(error)),
      JSON.stringify(options),
    );
  }
});

Deno.test("checkLimit() and checkSecret() accept what serve() accepts", async () => {
  assert.equal(checkLimit(undefined, 7, "x"), 7);
  assert.equal(checkLimit(Infinity, 7, "x"), Infinity);
  assert.throws(() => checkLimit(-Infinity, 7, "x"), RangeError);
  checkSecret("k");
  checkSecret(new Uint8Array([1]));
  checkSecret(await HmacKey.import("k"));
  assert.throws(() => checkSecret(""), /it is empty/);
  assert.throws(() => checkSecret(new Uint8Array(0)), /it is empty/);
  assert.throws(() => checkSecret(42), /expected a string, Uint8Array/);
  assert.throws(() => checkSecret(null), /got null/);
});
