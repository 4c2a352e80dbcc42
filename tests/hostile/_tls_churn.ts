// Run by tests/hostile/tls_test.ts with --v8-flags=--expose-gc: a listenTls()
// server and 2,000 clients that connect and close before their TLS
// handshake. Prints the server's heap growth in bytes once every socket is
// closed (after a garbage collection), as one JSON line.
import { listenTls } from "../../tls.ts";
import { generateCertificates } from "../../certs.ts";

const CLIENTS = 2000;
const set = await generateCertificates({ clients: [] });
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");
let reports = 0;
const listener = await listenTls({
  cert: set.server.cert,
  key: set.server.key,
  onError: () => reports++,
});
const settle = async () => {
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};
await settle();
const before = Deno.memoryUsage().heapUsed;
for (let i = 0; i < CLIENTS; i += 50) {
  await Promise.all(Array.from({ length: 50 }, async () => {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: listener.addr.port,
    });
    conn.close();
  }));
}
for (let i = 0; i < 200 && reports < CLIENTS; i++) {
  await new Promise((resolve) => setTimeout(resolve, 25));
}
await settle();
console.log(JSON.stringify({
  reports,
  growth: Deno.memoryUsage().heapUsed - before,
}));
listener.close();
