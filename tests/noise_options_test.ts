// Tests for _noise_options.ts: the settings every Noise handshake is given,
// checked and copied once (the public functions' own checks are in
// tests/noise_test.ts).
import assert from "node:assert/strict";
import { DEFAULT_GRACE_PERIOD, resolveSettings } from "../_noise_options.ts";

const HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const BYTES = Uint8Array.from({ length: 32 }, (_, i) => i);

Deno.test("resolveSettings() reads a PSK from 64 hex digits in either case, around whitespace, as the same bytes", () => {
  for (const text of [HEX, HEX.toUpperCase(), ` ${HEX}\n`]) {
    assert.deepEqual(resolveSettings(text, {}).psk, BYTES);
  }
  assert.deepEqual(resolveSettings(BYTES, {}).psk, BYTES);
});

Deno.test("resolveSettings() copies the PSK and the prologue: the caller's arrays stay theirs", () => {
  const psk = BYTES.slice();
  const prologue = new Uint8Array([1, 2, 3]);
  const settings = resolveSettings(psk, { prologue });
  psk.fill(9);
  prologue.fill(9);
  assert.deepEqual(settings.psk, BYTES);
  assert.deepEqual(settings.prologue, new Uint8Array([1, 2, 3]));
  settings.psk.fill(0); // and wiping ours leaves the caller's alone
  assert.equal(psk[0], 9);
});

Deno.test("resolveSettings() encodes a text prologue as UTF-8 and defaults to an empty one", () => {
  assert.deepEqual(
    resolveSettings(HEX, { prologue: "é/1" }).prologue,
    new Uint8Array([0xc3, 0xa9, 0x2f, 0x31]),
  );
  assert.deepEqual(resolveSettings(HEX, {}).prologue, new Uint8Array(0));
});

Deno.test("resolveSettings() defaults and bounds the timeout and the grace period as _options.ts does", () => {
  const defaults = resolveSettings(HEX, {});
  assert.equal(defaults.timeout, 10_000);
  assert.equal(defaults.gracePeriod, DEFAULT_GRACE_PERIOD);
  const open = resolveSettings(HEX, { timeout: Infinity, gracePeriod: 0 });
  assert.equal(open.timeout, Infinity);
  assert.equal(open.gracePeriod, 0);
  assert.equal(
    resolveSettings(HEX, { gracePeriod: Infinity }).gracePeriod,
    Infinity,
  );
  assert.throws(() => resolveSettings(HEX, { timeout: 0 }), RangeError);
  assert.throws(() => resolveSettings(HEX, { gracePeriod: -1 }), RangeError);
});

Deno.test("resolveSettings() refuses a bad PSK or prologue without repeating the PSK", () => {
  const cases: [unknown, typeof TypeError | typeof RangeError][] = [
    [new Uint8Array(31), RangeError],
    [new Uint8Array(33), RangeError],
    ["ab".repeat(31), RangeError],
    ["zz".repeat(32), TypeError],
    [42, TypeError],
    [null, TypeError],
  ];
  for (const [psk, type] of cases) {
    assert.throws(
      () => resolveSettings(psk as string, {}),
      (error: unknown) => {
        assert.ok(error instanceof type, `${psk}: ${error}`);
        assert.ok(!(error as Error).message.includes("abab"));
        return true;
      },
    );
  }
  assert.throws(
    () => resolveSettings(HEX, { prologue: 42 as unknown as string }),
    TypeError,
  );
});
