// Tests for _hmac_sha256.ts: RFC 4231 test vectors, and agreement with
// WebCrypto on random keys and messages of every length class.
import assert from "node:assert/strict";
import { HmacSha256, sha256 } from "../_hmac_sha256.ts";

const text = (s: string) => new TextEncoder().encode(s);
const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

Deno.test("HmacSha256 matches the RFC 4231 test vectors", () => {
  const cases: [Uint8Array, Uint8Array, string][] = [
    [
      new Uint8Array(20).fill(0x0b),
      text("Hi There"),
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ],
    [
      text("Jefe"),
      text("what do ya want for nothing?"),
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ],
    [
      new Uint8Array(131).fill(0xaa),
      text("Test Using Larger Than Block-Size Key - Hash Key First"),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ],
  ];
  for (const [key, data, expected] of cases) {
    assert.equal(hex(new HmacSha256(key).sign(data)), expected);
  }
});

Deno.test("HmacSha256 and sha256() agree with WebCrypto on random keys and messages", async () => {
  // Lengths around the block and padding boundaries (55, 56, 63, 64, ...).
  const lengths = [0, 1, 16, 31, 32, 55, 56, 57, 63, 64, 65, 119, 120, 128];
  for (let i = 0; i < 300; i++) {
    const keyLength = i < 150 ? (i % 70) + 1 : 60 + i;
    const key = crypto.getRandomValues(new Uint8Array(keyLength));
    const message = crypto.getRandomValues(
      new Uint8Array(i < lengths.length ? lengths[i] : (i * 13) % 1100),
    );
    const webKey = await crypto.subtle.importKey(
      "raw",
      key,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const expected = new Uint8Array(
      await crypto.subtle.sign("HMAC", webKey, message),
    );
    const mac = new HmacSha256(key);
    assert.equal(hex(mac.sign(message)), hex(expected), `case ${i}`);
    assert.ok(mac.verify(expected, message));
    // The same object again: no state left over from the last call.
    assert.equal(hex(mac.sign(message)), hex(expected));
    assert.equal(
      hex(sha256(message)),
      hex(new Uint8Array(await crypto.subtle.digest("SHA-256", message))),
    );
  }
});

Deno.test("HmacSha256.verify() refuses a digest that differs in any byte, or in length", () => {
  const mac = new HmacSha256(text("peanut butter"));
  const challenge = crypto.getRandomValues(new Uint8Array(32));
  const digest = mac.sign(challenge);
  assert.ok(mac.verify(digest, challenge));
  for (let i = 0; i < 32; i++) {
    const wrong = digest.slice();
    wrong[i] ^= 1 << (i % 8);
    assert.equal(mac.verify(wrong, challenge), false, `byte ${i}`);
  }
  assert.equal(mac.verify(digest.subarray(0, 31), challenge), false);
  assert.equal(mac.verify(new Uint8Array(33), challenge), false);
  assert.equal(mac.verify(new Uint8Array(0), challenge), false);
  assert.equal(mac.verify(digest, challenge.subarray(1)), false);
});
