// deno bench: HMAC sign/verify and full Cookbook handshakes, so later changes
// can be compared. Run with `deno task bench bench/handshake_bench.ts`.
import {
  clientAuthenticate,
  type HashName,
  HmacKey,
  serverAuthenticate,
} from "../handshake.ts";
import { duplexPair } from "../tests/_helpers.ts";

const challenge = crypto.getRandomValues(new Uint8Array(32));
const keys = new Map<HashName, HmacKey>();
for (const hash of ["SHA-256", "SHA-1", "SHA-512", "MD5"] as HashName[]) {
  keys.set(hash, await HmacKey.import("bench key", { hash }));
}
const digests = new Map<HashName, Uint8Array<ArrayBuffer>>();
for (const [hash, key] of keys) digests.set(hash, await key.sign(challenge));

for (const [hash, key] of keys) {
  Deno.bench(`HMAC-${hash} sign 32 bytes`, { group: "sign" }, async () => {
    await key.sign(challenge);
  });
  Deno.bench(`HMAC-${hash} verify 32 bytes`, { group: "verify" }, async () => {
    await key.verify(digests.get(hash)!, challenge);
  });
}

Deno.bench(
  "HmacKey.import() raw key (per-handshake cost avoided)",
  async () => {
    await HmacKey.import("bench key");
  },
);

const key = keys.get("SHA-256")!;

Deno.bench(
  "handshake in memory (SHA-256)",
  { group: "handshake" },
  async () => {
    const [client, server] = duplexPair();
    await Promise.all([
      serverAuthenticate(server, key),
      clientAuthenticate(client, key),
    ]);
  },
);

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
Deno.bench(
  "handshake over loopback TCP: connect + authenticate + close (SHA-256)",
  { group: "handshake", baseline: true },
  async () => {
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    await Promise.all([
      serverAuthenticate(server, key),
      clientAuthenticate(client, key),
    ]);
    client.close();
    server.close();
  },
);

Deno.bench(
  "raw loopback TCP: connect + close, no handshake (floor)",
  { group: "handshake" },
  async () => {
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    client.close();
    server.close();
  },
);

globalThis.addEventListener("unload", () => listener.close());
