// The key-value store's stack without Deno KV, for bench/kv_compare.ts: the
// same serveHttps (mutual TLS) and createXmlRpcHandler, with a Map as the store, so
// that the benchmark can tell the storage's share from the rest.
//
//     deno run --allow-net=127.0.0.1 --allow-read=DIR bench/_kv_map_server.ts DIR
import { serveHttps } from "../https.ts";
import {
  createXmlRpcHandler,
  XmlRpcFault,
  type XmlRpcValue,
} from "../xmlrpc.ts";

const dir = Deno.args[0] ?? "certs";
const store = new Map<string, XmlRpcValue>();
const handler = createXmlRpcHandler({
  get(name) {
    if (!store.has(String(name))) {
      throw new XmlRpcFault(1, `KeyError: '${name}'`);
    }
    return store.get(String(name));
  },
  set(name, value) {
    store.set(String(name), value);
    return null;
  },
});
const server = await serveHttps({
  cert: Deno.readTextFileSync(`${dir}/server.pem`),
  key: Deno.readTextFileSync(`${dir}/server-key.pem`),
  clientCa: Deno.readTextFileSync(`${dir}/ca.pem`),
  allow: { cn: ["client"] },
}, (request) => handler(request));
console.error(`map server listening on https://localhost:${server.addr.port}/`);
Deno.addSignalListener("SIGTERM", () => server.shutdown());
await server.finished;
Deno.exit(0);
