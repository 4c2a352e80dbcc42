// Private: HMAC-SHA-256 (RFC 2104 over FIPS 180-4 SHA-256), synchronous,
// for serve()'s hot path.
//
// crypto.subtle.verify costs about as much as the rest of a handshake put
// together (a WebIDL conversion, a key lookup and an op per call), and
// node:crypto's Hmac no less. A handshake MACs one short challenge under
// one key, so this keeps the SHA-256 states after the key's inner and outer
// pad blocks (computed once, at import) and hashes only the challenge and
// the inner digest per call: two or three compressions of 64 bytes.
//
// Constant time: the compression uses only 32-bit additions, rotations and
// bitwise operations (no table lookup or branch depends on the key or the
// data), and verify() compares every byte of equal-length digests before it
// answers. The states are as secret as the key: they are never exposed, and
// the raw key is not kept.

/** SHA-256 round constants (FIPS 180-4, 4.2.2). */
const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

/** SHA-256 initial hash value (FIPS 180-4, 5.3.3). */
const IV = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

/** Compresses one 64-byte block of `bytes` at `offset` into `state`. */
function compress(
  state: Int32Array,
  w: Int32Array,
  bytes: Uint8Array,
  offset: number,
): void {
  for (let t = 0; t < 16; t++) {
    const i = offset + 4 * t;
    w[t] = (bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) |
      bytes[i + 3];
  }
  for (let t = 16; t < 64; t++) {
    const x = w[t - 15];
    const y = w[t - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^
      (y >>> 10);
    w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
  }
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  let e = state[4];
  let f = state[5];
  let g = state[6];
  let h = state[7];
  for (let t = 0; t < 64; t++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^
      ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + S1 + ch + K[t] + w[t]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^
      ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

/**
 * Hashes `message` on top of `start` (the state after `prefixBlocks` blocks
 * of 64 bytes already hashed) and writes the 32-byte digest to `out`.
 */
function finish(
  start: Int32Array,
  prefixBlocks: number,
  message: Uint8Array,
  scratch: Scratch,
  out: Uint8Array,
): void {
  const state = scratch.state;
  state.set(start);
  const length = message.length;
  let offset = 0;
  for (; offset + 64 <= length; offset += 64) {
    compress(state, scratch.w, message, offset);
  }
  // The last block(s): the rest of the message, 0x80, zeros, and the bit
  // length of everything hashed, big-endian in the last 8 bytes.
  const tail = scratch.tail;
  tail.fill(0);
  const rest = length - offset;
  tail.set(message.subarray(offset), 0);
  tail[rest] = 0x80;
  const blocks = rest + 9 > 64 ? 2 : 1;
  const bits = (prefixBlocks * 64 + length) * 8;
  const end = blocks * 64;
  // At most 2^53 bits: the high word from a division, the low from `>>> 0`.
  const high = Math.floor(bits / 0x1_0000_0000);
  tail[end - 8] = high >>> 24;
  tail[end - 7] = high >>> 16;
  tail[end - 6] = high >>> 8;
  tail[end - 5] = high;
  tail[end - 4] = bits >>> 24;
  tail[end - 3] = bits >>> 16;
  tail[end - 2] = bits >>> 8;
  tail[end - 1] = bits;
  compress(state, scratch.w, tail, 0);
  if (blocks === 2) compress(state, scratch.w, tail, 64);
  for (let i = 0; i < 8; i++) {
    const word = state[i];
    out[4 * i] = word >>> 24;
    out[4 * i + 1] = word >>> 16;
    out[4 * i + 2] = word >>> 8;
    out[4 * i + 3] = word;
  }
}

interface Scratch {
  state: Int32Array;
  w: Int32Array;
  tail: Uint8Array;
}

function scratch(): Scratch {
  return {
    state: new Int32Array(8),
    w: new Int32Array(64),
    tail: new Uint8Array(128),
  };
}

/** SHA-256 of `message` (for long keys, and tests). */
export function sha256(message: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(32);
  finish(IV, 0, message, scratch(), out);
  return out;
}

/** HMAC-SHA-256 under one key, its pads hashed once. */
export class HmacSha256 {
  #inner = new Int32Array(8);
  #outer = new Int32Array(8);
  #scratch = scratch();
  #digest = new Uint8Array(32);
  #check = new Uint8Array(32);

  /**
   * Hashes the key's pad blocks. `key` is not kept (the caller may zero
   * it); a key longer than 64 bytes is hashed first (RFC 2104).
   */
  constructor(key: Uint8Array) {
    const block = new Uint8Array(64);
    block.set(key.length > 64 ? sha256(key) : key);
    const w = this.#scratch.w;
    for (let i = 0; i < 64; i++) block[i] ^= 0x36;
    this.#inner.set(IV);
    compress(this.#inner, w, block, 0);
    for (let i = 0; i < 64; i++) block[i] ^= 0x36 ^ 0x5c;
    this.#outer.set(IV);
    compress(this.#outer, w, block, 0);
    block.fill(0);
    w.fill(0);
  }

  /** The MAC of `message`, in a fresh array. */
  sign(message: Uint8Array): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(32);
    this.#mac(message, out);
    return out;
  }

  /**
   * Whether `digest` is the MAC of `message`: every byte compared whatever
   * the others are (constant time for a digest of the right length).
   */
  verify(digest: Uint8Array, message: Uint8Array): boolean {
    if (digest.length !== 32) return false;
    const check = this.#check;
    this.#mac(message, check);
    let difference = 0;
    for (let i = 0; i < 32; i++) difference |= check[i] ^ digest[i];
    check.fill(0);
    return difference === 0;
  }

  #mac(message: Uint8Array, out: Uint8Array): void {
    const inner = this.#digest;
    finish(this.#inner, 1, message, this.#scratch, inner);
    finish(this.#outer, 1, inner, this.#scratch, out);
    inner.fill(0);
  }
}
