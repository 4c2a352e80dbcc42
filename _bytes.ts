// Private: small byte-array helpers (UTF-8, copies into ArrayBuffer-backed
// arrays for WebCrypto, concatenation).

const encoder = new TextEncoder();

/** UTF-8 encodes a string into an ArrayBuffer-backed array. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text) as Uint8Array<ArrayBuffer>;
}

/** Copies any byte view into a fresh ArrayBuffer-backed Uint8Array. */
export function copyBytes(data: ArrayBufferView): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(data.byteLength);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return out;
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let total = 0;
  for (const part of parts) total += part.byteLength;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
