// Private: the bounded reading of an HTTP body for xmlrpc.ts's handler (a
// request) and client (a response, or the start of an error page): never
// more than a limit buffered, stopped by a signal.

import { ProtocolError } from "./errors.ts";
import { raceSignal } from "./_deadline.ts";

/** A body over its limit (the handler answers HTTP 413). */
export class TooLarge extends ProtocolError {}

/** Most bytes of an HTTP error's body the client reads for its message. */
export const ERROR_BODY_LIMIT = 4096;

/**
 * Reads a body, refusing before buffering more than `max` bytes; with
 * `truncate`, keeps the first `max` bytes of a longer body instead and
 * cancels the rest. Stops with the signal's reason when `signal` aborts.
 */
export async function readBody(
  message: Request | Response,
  max: number,
  what: string,
  truncate = false,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    new TooLarge(
      `Cannot read ${what}: it is ${size} bytes, over the ${max}-byte limit (maxBodySize)`,
      "too-large",
    );
  const body = message.body;
  const contentLength = message.headers.get("content-length");
  const declared = contentLength === null ? NaN : Number(contentLength);
  if (declared > max && !truncate) {
    await body?.cancel().catch(() => {});
    throw tooLarge(contentLength!);
  }
  if (body === null) return new Uint8Array(0);
  if (/^[0-9]+$/.test(contentLength ?? "") && declared <= max) {
    // A declared length within the limit: the HTTP layer (hyper, node)
    // enforces the framing, so the body cannot run past it. Read it whole,
    // which is much faster than chunk by chunk; still check, for a
    // hand-made Request whose header does not match its body.
    const bytes = await raceSignal(message.bytes(), signal);
    if (bytes.byteLength > max) {
      if (truncate) return bytes.subarray(0, max);
      throw tooLarge(String(bytes.byteLength));
    }
    return bytes;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  const onAbort = () => reader.cancel(signal!.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const { value, done } = await raceSignal(reader.read(), signal);
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        await reader.cancel().catch(() => {});
        if (!truncate) throw tooLarge(`more than ${max}`);
        chunks.push(value.subarray(0, value.byteLength - (size - max)));
        size = max;
        break;
      }
      chunks.push(value);
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  chunks.reduce((offset, chunk) => {
    out.set(chunk, offset);
    return offset + chunk.byteLength;
  }, 0);
  return out;
}
