// Helpers of the TLS examples (tls_echo_server.ts, tls_echo_client.ts),
// written here so that the examples use only connauth's public modules.

/** An address as `127.0.0.1:18443` or `[::1]:18443`. */
export function showAddr(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/** Writes all of `bytes`, or rejects when `signal` aborts first. */
export async function send(
  writable: WritableStream<Uint8Array>,
  bytes: Uint8Array,
  signal: AbortSignal,
): Promise<void> {
  const writer = writable.getWriter();
  try {
    await abortable(writer.write(bytes), signal);
  } finally {
    writer.releaseLock();
  }
}

/**
 * Reads exactly `length` bytes; null when the peer closes first. Rejects
 * when `signal` aborts first.
 */
export async function receive(
  readable: ReadableStream<Uint8Array>,
  length: number,
  signal: AbortSignal,
): Promise<Uint8Array | null> {
  const reader = readable.getReader();
  const out = new Uint8Array(length);
  let filled = 0;
  try {
    while (filled < length) {
      const { value, done } = await abortable(reader.read(), signal);
      if (done) return null;
      const take = Math.min(value.byteLength, length - filled);
      out.set(value.subarray(0, take), filled);
      filled += take;
    }
    return out;
  } finally {
    reader.releaseLock();
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}
