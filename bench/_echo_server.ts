/**
 * The reference echo servers that `bench/compare.ts` measures next to
 * `examples/echo_server.ts`. Each listens on 127.0.0.1, prints `port N` on
 * stdout once listening and stops on SIGTERM or SIGINT.
 *
 * | kind | what |
 * | --- | --- |
 * | `floor` | `Deno.listen`; each connection echoes with a `conn.read()` / `conn.write()` loop; no authentication. The floor cost of a connection in Deno. |
 * | `handshake-loop` | the floor plus the bare Cookbook handshake: `getRandomValues`, write 32 bytes, read 32, `crypto.subtle.verify` (HMAC-SHA-256, key imported once), then the same echo. No deadline, no limits: not for the flood scenarios. |
 * | `pipeto-floor` | the floor with a `readable.pipeTo(writable)` echo instead (for the record: slower than the floor in Deno 2.9.6). |
 * | `serve-rw` | {@linkcode serve} with the key and default limits, echoing with a `read()` / `write()` loop: `serve()` without the example's `pipeTo`. |
 * | `serve-noop` | {@linkcode serve} with an authenticator that does nothing and the same echo; driven without a handshake (`raw`): what `serve()` itself costs over `floor`. |
 *
 * The key comes from `CONNAUTH_SECRET` (kinds that authenticate).
 *
 *     CONNAUTH_SECRET=k deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_SECRET bench/_echo_server.ts KIND [PORT]
 *
 * @module
 */
import { serve } from "../server.ts";

/** The kinds this script serves, as `bench/compare.ts` names them. */
export const KINDS = [
  "floor",
  "handshake-loop",
  "pipeto-floor",
  "serve-rw",
  "serve-noop",
] as const;

const CHALLENGE_LENGTH = 32;
const DIGEST_LENGTH = 32; // HMAC-SHA-256

/** Writes all of `bytes`. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    offset += await conn.write(bytes.subarray(offset));
  }
}

/** Reads exactly `length` bytes; null when the peer closes first. */
async function readExactly(
  conn: Deno.Conn,
  length: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const buffer = new Uint8Array(length);
  let offset = 0;
  while (offset < length) {
    const count = await conn.read(buffer.subarray(offset));
    if (count === null) return null;
    offset += count;
  }
  return buffer;
}

/** Echoes until the peer closes, with the connection's own read/write. */
async function echo(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(16 * 1024);
  for (;;) {
    const count = await conn.read(buffer);
    if (count === null) return;
    await writeAll(conn, buffer.subarray(0, count));
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function requireKey(kind: string): string {
  const key = Deno.env.get("CONNAUTH_SECRET");
  if (!key) {
    console.error(`Cannot start ${kind}: set CONNAUTH_SECRET`);
    Deno.exit(2);
  }
  return key;
}

/** Accepts until the listener closes; each connection in its own task. */
async function acceptLoop(
  listener: Deno.Listener,
  handle: (conn: Deno.Conn) => Promise<void>,
): Promise<void> {
  try {
    for await (const conn of listener) {
      handle(conn).catch(() => {}).finally(() => closeQuietly(conn));
    }
  } catch {
    // listener closed
  }
}

if (import.meta.main) {
  const [kind = "", portArg = "0"] = Deno.args;
  const port = Number(portArg);
  if (!(KINDS as readonly string[]).includes(kind)) {
    console.error(
      `Cannot start "${kind}": expected one of ${KINDS.join(", ")}`,
    );
    Deno.exit(2);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`Cannot use port "${portArg}": expected 0 to 65535`);
    Deno.exit(2);
  }
  const stop = new AbortController();
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(name, () => stop.abort());
  }

  if (kind === "serve-rw" || kind === "serve-noop") {
    const key = requireKey(kind);
    const auth = kind === "serve-rw"
      ? { key }
      : { authenticate: <C>(conn: C) => Promise.resolve(conn) };
    const server = serve({
      hostname: "127.0.0.1",
      port,
      ...auth,
      signal: stop.signal,
    }, async (conn) => {
      // A TCP listener's connections are Deno.Conn: echo with read/write.
      await echo(conn as unknown as Deno.Conn);
    });
    console.log(`port ${(server.addr as Deno.NetAddr).port}`);
    await server.finished;
  } else {
    let handle: (conn: Deno.Conn) => Promise<void>;
    if (kind === "floor") {
      handle = echo;
    } else if (kind === "pipeto-floor") {
      handle = (conn) => conn.readable.pipeTo(conn.writable);
    } else {
      const hmacKey = await crypto.subtle.importKey(
        "raw",
        new TextEncoder().encode(requireKey(kind)),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["verify"],
      );
      handle = async (conn) => {
        const challenge = crypto.getRandomValues(
          new Uint8Array(CHALLENGE_LENGTH),
        );
        await writeAll(conn, challenge);
        const digest = await readExactly(conn, DIGEST_LENGTH);
        if (digest === null) return;
        if (!await crypto.subtle.verify("HMAC", hmacKey, digest, challenge)) {
          return;
        }
        await echo(conn);
      };
    }
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    stop.signal.addEventListener("abort", () => listener.close());
    console.log(`port ${listener.addr.port}`);
    await acceptLoop(listener, handle);
  }
  Deno.exit(0);
}
