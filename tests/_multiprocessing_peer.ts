// A Deno multiprocessing peer for tests/multiprocessing_test.ts, run as its
// own process so it can be given --allow-net=unix:<path> for one Unix socket
// (Deno scopes Unix sockets by exact path, and the test task only allows
// 127.0.0.1 and localhost). Mirrors tests/interop/mp_peer.py: every event is
// one JSON line on stdout.
//
//   {"event": "listening", "path": "/tmp/x/mp.sock"}   (listener only)
//   {"event": "authenticated", "peerDigest": "sha256"}
//   {"event": "handshake-error", "name": "...", "reason": "..."} (listener)
//   {"event": "error", "name": "...", "reason": "...", "message": "..."}
//   {"event": "done", ...}
//
// Usage:
//   deno run --allow-net=unix:P --allow-read=P --allow-write=P
//     tests/_multiprocessing_peer.ts listener|client --path P
//     --authkey-hex HEX --session echo|roundtrip [--sizes 0,1048576]
//     [--accept N]
//
// Sessions:
//   echo       echo every message until the peer closes
//   roundtrip  send one patterned message per --sizes entry, check each
//              echo, then close
// A listener serves --accept connections (default 1) one after the other,
// reporting the handshake failures in between.
import { parseArgs } from "node:util";
import {
  connectMultiprocessing,
  listenMultiprocessing,
  type MultiprocessingConnection,
} from "../multiprocessing.ts";

function report(event: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ event, ...fields }));
}

function describe(error: unknown): Record<string, unknown> {
  const { name, message, reason } = error as {
    name?: string;
    message?: string;
    reason?: string;
  };
  return { name, reason, message };
}

/** The same bytes as pattern() in mp_peer.py and the test. */
function pattern(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = ((i % 256) * 7 + size) % 256;
  return out;
}

async function session(
  conn: MultiprocessingConnection,
  name: string,
  sizes: number[],
): Promise<void> {
  if (name === "echo") {
    let echoed = 0;
    for await (const message of conn) {
      await conn.sendBytes(message, { timeout: 10_000 });
      echoed++;
    }
    report("done", { echoed });
  } else if (name === "roundtrip") {
    for (const size of sizes) {
      const sent = pattern(size);
      await conn.sendBytes(sent, { timeout: 10_000 });
      const echo = await conn.recvBytes({ timeout: 10_000 });
      if (echo === null || echo.length !== size) {
        throw new Error(`bad echo for ${size} bytes: ${echo?.length}`);
      }
      for (let i = 0; i < size; i++) {
        if (echo[i] !== sent[i]) throw new Error(`echo differs at ${i}`);
      }
    }
    report("done", { checked: sizes.length });
  } else {
    throw new Error(`unknown session ${name}`);
  }
}

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    path: { type: "string" },
    "authkey-hex": { type: "string" },
    session: { type: "string", default: "echo" },
    sizes: { type: "string", default: "" },
    accept: { type: "string", default: "1" },
  },
});
const path = values.path!;
const authkey = new Uint8Array(
  (values["authkey-hex"]!.match(/../g) ?? []).map((h) => parseInt(h, 16)),
);
const sizes = values.sizes!.split(",").filter(Boolean).map(Number);

try {
  if (positionals[0] === "listener") {
    await using listener = await listenMultiprocessing({
      path,
      authkey,
      onError: (error, info) => {
        if (info.phase === "handshake") {
          report("handshake-error", describe(error));
        }
      },
    });
    report("listening", { path: listener.addr.path });
    for (let served = 0; served < Number(values.accept); served++) {
      await using conn = await listener.accept({ timeout: 20_000 });
      report("authenticated", { peerDigest: conn.peerDigest });
      await session(conn, values.session!, sizes);
    }
  } else {
    await using conn = await connectMultiprocessing({ path, authkey });
    report("authenticated", { peerDigest: conn.peerDigest });
    await session(conn, values.session!, sizes);
  }
} catch (error) {
  report("error", describe(error));
}
