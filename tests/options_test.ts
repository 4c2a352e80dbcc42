// Tests for _options.ts: one meaning and one wording per kind of option.
import assert from "node:assert/strict";
import {
  checkDuration,
  checkInteger,
  checkIpv6Prefix,
  checkLimit,
  checkOptionsObject,
  checkPort,
  checkTimeout,
  MAX_TIMER_DELAY,
} from "../_options.ts";
import { deadline } from "../_deadline.ts";

Deno.test("checkTimeout() takes milliseconds above 0 or Infinity, and the fallback when unset", () => {
  assert.equal(checkTimeout(undefined, 10_000, "timeout"), 10_000);
  assert.equal(checkTimeout(1, 10_000, "timeout"), 1);
  assert.equal(checkTimeout(0.5, 10_000, "timeout"), 0.5);
  assert.equal(checkTimeout(Infinity, 10_000, "timeout"), Infinity);
  assert.throws(() => checkTimeout(0, 1, "handshakeTimeout"), {
    name: "RangeError",
    message:
      "Cannot use handshakeTimeout: expected a number of milliseconds above 0 (or Infinity for none), got 0",
  });
  assert.throws(() => checkTimeout(-1, 1, "timeout"), RangeError);
  assert.throws(() => checkTimeout(NaN, 1, "timeout"), {
    name: "TypeError",
    message:
      "Cannot use timeout: expected a number of milliseconds above 0 (or Infinity for none), got NaN",
  });
  assert.throws(
    () => checkTimeout("5" as unknown as number, 1, "timeout"),
    { name: "TypeError", message: /got "5"$/ },
  );
});

Deno.test("checkDuration() takes 0 or more milliseconds, Infinity included", () => {
  assert.equal(checkDuration(undefined, 5000, "gracePeriod"), 5000);
  assert.equal(checkDuration(0, 5000, "gracePeriod"), 0);
  assert.equal(checkDuration(Infinity, 5000, "gracePeriod"), Infinity);
  assert.throws(() => checkDuration(-1, 5000, "gracePeriod"), {
    name: "RangeError",
    message:
      "Cannot use gracePeriod: expected a number of milliseconds, 0 or more (or Infinity), got -1",
  });
  assert.throws(
    () => checkDuration(null as unknown as number, 1, "gracePeriod"),
    { name: "TypeError", message: /got null$/ },
  );
});

Deno.test("checkLimit() takes whole numbers of at least 1 or Infinity", () => {
  assert.equal(checkLimit(undefined, 64, "maxPerAddress"), 64);
  assert.equal(checkLimit(1, 64, "maxPerAddress"), 1);
  assert.equal(checkLimit(Infinity, 64, "maxPerAddress"), Infinity);
  for (const bad of [0, -1, 1.5, -Infinity]) {
    assert.throws(() => checkLimit(bad, 64, "maxPerAddress"), {
      name: "RangeError",
      message:
        `Cannot use maxPerAddress: expected a whole number of at least 1 (or Infinity for no limit), got ${bad}`,
    });
  }
  assert.throws(
    () => checkLimit("9" as unknown as number, 64, "maxPerAddress"),
    TypeError,
  );
});

Deno.test("checkPort() takes 0 to 65535 for listening and 1 to 65535 for connecting", () => {
  assert.equal(checkPort(undefined, 0, "port", true), 0);
  assert.equal(checkPort(0, 8000, "port", true), 0);
  assert.equal(checkPort(65535, undefined, "port", false), 65535);
  assert.throws(() => checkPort(0, undefined, "port", false), {
    name: "RangeError",
    message: "Cannot use port: expected a port number from 1 to 65535, got 0",
  });
  assert.throws(() => checkPort(65536, 0, "port", true), {
    name: "RangeError",
    message:
      "Cannot use port: expected a port number from 0 to 65535, got 65536",
  });
  assert.throws(() => checkPort(80.5, 0, "port", true), RangeError);
  assert.throws(() => checkPort(undefined, undefined, "port", false), {
    name: "TypeError",
    message:
      "Cannot use port: expected a port number from 1 to 65535, got undefined",
  });
});

Deno.test("checkIpv6Prefix() takes 1 to 128 bits", () => {
  assert.equal(checkIpv6Prefix(undefined, 64), 64);
  assert.equal(checkIpv6Prefix(128, 64), 128);
  assert.throws(() => checkIpv6Prefix(0, 64), RangeError);
  assert.throws(() => checkIpv6Prefix(129, 64), {
    name: "RangeError",
    message:
      "Cannot use ipv6Prefix: expected a whole number of bits from 1 to 128, got 129",
  });
  assert.throws(() => checkIpv6Prefix(64.5, 64), RangeError);
  assert.throws(
    () => checkIpv6Prefix("64" as unknown as number, 64),
    TypeError,
  );
  assert.throws(
    () => checkIpv6Prefix(null as unknown as number, 64),
    { name: "TypeError", message: /got null$/ },
  );
});

Deno.test("checkInteger() takes whole numbers within its bounds, and the fallback when unset", () => {
  const bounds = [16, 1024] as const;
  const noun = "a whole number of bytes";
  assert.equal(checkInteger(undefined, 32, "challengeLength", bounds), 32);
  assert.equal(checkInteger(16, 32, "challengeLength", bounds), 16);
  assert.equal(checkInteger(1024, 32, "challengeLength", bounds), 1024);
  for (const bad of [15, 1025, 31.5, Infinity, -Infinity]) {
    assert.throws(
      () => checkInteger(bad, 32, "challengeLength", bounds, noun),
      {
        name: "RangeError",
        message:
          `Cannot use challengeLength: expected a whole number of bytes from 16 to 1024, got ${bad}`,
      },
    );
  }
  assert.throws(
    () => checkInteger(NaN, 32, "challengeLength", bounds),
    {
      name: "TypeError",
      message:
        "Cannot use challengeLength: expected a whole number from 16 to 1024, got NaN",
    },
  );
  assert.throws(
    () =>
      checkInteger("32" as unknown as number, 32, "challengeLength", bounds),
    { name: "TypeError", message: /got "32"$/ },
  );
  assert.throws(
    () => checkInteger(undefined, undefined, "width", [1, 2]),
    {
      name: "TypeError",
      message: /expected a whole number from 1 to 2, got undefined$/,
    },
  );
});

Deno.test("checkOptionsObject() takes objects and names what cannot be done otherwise", () => {
  checkOptionsObject({}, "serve");
  checkOptionsObject([], "serve");
  assert.throws(() => checkOptionsObject(null, "serve"), {
    name: "TypeError",
    message: "Cannot serve: expected an options object, got null",
  });
  assert.throws(() => checkOptionsObject(undefined, "connect"), {
    name: "TypeError",
    message: "Cannot connect: expected an options object, got undefined",
  });
  assert.throws(() => checkOptionsObject(8080, "connect"), {
    name: "TypeError",
    message: "Cannot connect: expected an options object, got 8080",
  });
});

Deno.test("checkTimeout() and checkDuration() take a delay past a timer's longest as no deadline", () => {
  assert.equal(checkTimeout(MAX_TIMER_DELAY, 1, "timeout"), MAX_TIMER_DELAY);
  assert.equal(checkTimeout(MAX_TIMER_DELAY + 1, 1, "timeout"), Infinity);
  assert.equal(checkTimeout(1e12, 1, "timeout"), Infinity);
  assert.equal(checkDuration(2 ** 40, 1, "gracePeriod"), Infinity);
  assert.equal(
    checkDuration(MAX_TIMER_DELAY, 1, "gracePeriod"),
    MAX_TIMER_DELAY,
  );
});

Deno.test("deadline() with a timeout past a timer's longest never fires", async () => {
  using limit = deadline(2 ** 32, undefined, "wait");
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(limit.signal.aborted, false);
});
