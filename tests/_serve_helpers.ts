// Helpers shared by the tests of serve()'s handshake and what it reports
// (key_rotation_test.ts, mixup_test.ts, served_conn_test.ts): a bounded
// wait for a condition, console.error captured, and a listener whose
// connections are only streams, as tls.ts's are.
import assert from "node:assert/strict";
import type { ServeListener, ServerConn } from "../server.ts";

/** Waits until `ready()`, checking every 10 ms for at most 5 s. */
export async function waitFor(
  ready: () => boolean,
  what: string,
): Promise<void> {
  for (let i = 0; i < 500 && !ready(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(ready(), `timed out waiting for ${what}`);
}

/** Runs `fn` with console.error captured; returns the lines. */
export async function captureStderr(
  fn: () => Promise<void>,
): Promise<string[]> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    await fn();
  } finally {
    console.error = original;
  }
  return lines;
}

/**
 * A loopback listener whose connections are only streams and addresses
 * (no read() or write()), as those of tls.ts listeners are, each with a
 * `tag` of its own (as a TLS connection has its peerIdentity).
 */
export function streamOnlyListener(): ServeListener {
  const inner = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const listener: ServeListener = {
    addr: inner.addr,
    accept: async () => {
      const conn = await inner.accept();
      return {
        remoteAddr: conn.remoteAddr,
        localAddr: conn.localAddr,
        readable: conn.readable,
        writable: conn.writable,
        close: () => conn.close(),
        tag: "stream-only",
      } as ServerConn;
    },
    close: () => inner.close(),
    async *[Symbol.asyncIterator]() {
      while (true) yield await listener.accept();
    },
  };
  return listener;
}
