// Private: the length header of a multiprocessing.connection message, as
// CPython's Connection._send_bytes() writes it on a socket.

/** Largest length that fits the short (4-byte) header. */
export const SHORT_LENGTH_MAX = 0x7fffffff;

/**
 * The header announcing a payload of `size` bytes: `struct.pack("!i", size)`
 * up to 0x7fffffff, else `struct.pack("!i", -1) + struct.pack("!Q", size)`.
 */
export function frameHeader(size: number): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(
      `Cannot frame the message: expected a length of 0 or more bytes, got ${size}`,
    );
  }
  if (size <= SHORT_LENGTH_MAX) {
    const head = new Uint8Array(4);
    new DataView(head.buffer).setInt32(0, size);
    return head;
  }
  const head = new Uint8Array(12);
  const view = new DataView(head.buffer);
  view.setInt32(0, -1);
  view.setBigUint64(4, BigInt(size));
  return head;
}
