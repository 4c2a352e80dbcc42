/**
 * The Deno echo servers that `bench/compare.ts` measures:
 *
 * - `ours`: {@linkcode serve} with the Cookbook handshake (HMAC-SHA-256, the
 *   key from `CONNAUTH_KEY`), default limits except `maxPerAddress`, which is
 *   raised because every benchmark client comes from 127.0.0.1.
 * - `ours-noop`: the same {@linkcode serve} with an authenticator that does
 *   nothing: what `serve()` itself costs over `raw`, without the handshake.
 * - `raw`: a plain `Deno.listen` echo server with no authentication: the
 *   floor cost of a connection.
 *
 * Prints `port N` on stdout once listening; stops on SIGTERM or SIGINT.
 *
 *     CONNAUTH_KEY=k deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_KEY bench/_echo_server.ts ours|ours-noop|raw [PORT]
 *
 * @module
 */
import { serve, type ServerConn } from "../server.ts";

const [kind = "ours", portArg = "0"] = Deno.args;
const port = Number(portArg);
const stop = new AbortController();
for (const name of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(name, () => stop.abort());
}

if (kind === "ours" || kind === "ours-noop") {
  const key = Deno.env.get("CONNAUTH_KEY");
  if (!key) throw new Error("Cannot start: set CONNAUTH_KEY");
  const auth = kind === "ours"
    ? { key }
    : { authenticate: (conn: ServerConn) => Promise.resolve(conn) };
  const server = serve({
    hostname: "127.0.0.1",
    port,
    ...auth,
    maxPerAddress: Infinity,
    signal: stop.signal,
  }, async (conn, info) => {
    await conn.readable.pipeTo(conn.writable, { signal: info.signal });
  });
  console.log(`port ${(server.addr as Deno.NetAddr).port}`);
  await server.finished;
} else if (kind === "raw") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  stop.signal.addEventListener("abort", () => listener.close());
  console.log(`port ${listener.addr.port}`);
  try {
    for await (const conn of listener) {
      conn.readable.pipeTo(conn.writable).catch(() => {});
    }
  } catch {
    // listener closed
  }
} else {
  throw new Error(
    `Cannot start "${kind}": expected "ours", "ours-noop" or "raw"`,
  );
}
Deno.exit(0);
