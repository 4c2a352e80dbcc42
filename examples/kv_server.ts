/**
 * A key-value store served over XML-RPC on HTTPS, with mutual TLS by
 * default: the Cookbook's recipe 11.10 server, kept in Deno KV so that no
 * acknowledged write is lost.
 *
 *     deno task certs        # ./certs: ca.pem, server.pem, client.pem, keys
 *     deno task kv-server    # https://localhost:15000/, clients need client.pem
 *
 * Methods, as the recipe's `KeyValueServer` has them (Python's
 * `xmlrpc.client.ServerProxy(url, allow_none=True, context=ctx)` calls them
 * unchanged):
 *
 * - `get(name)`: the value; a missing name is fault 1 `KeyError: 'name'`.
 * - `set(name, value)`: stores any XML-RPC value (strings, numbers,
 *   booleans, `None`, dates, binary, lists, dicts, nested); returns `None`
 *   once the write is committed to disk.
 * - `delete(name)`: removes it; a missing name is a `KeyError` fault.
 * - `exists(name)`: `True` or `False`.
 * - `keys()`: every name, in order, up to 1000 (a fault beyond: page with
 *   `keys(after, limit)`, which returns up to `limit` (at most 1000) names
 *   sorted after `after`).
 *
 * Names are strings of at most 1024 UTF-8 bytes; values take at most
 * 65536 bytes once serialized (Deno KV's limit). Both limits are faults
 * that say so.
 *
 * Storage is `Deno.openKv(--db)`: an embedded SQLite file (`./kv.sqlite3`
 * by default; every commit is fsynced before `set` answers), `:memory:` for
 * tests, or the URL of a remote Deno KV or self-hosted `denokv` server
 * (`--db https://kv.example.com`, with `DENO_KV_ACCESS_TOKEN` set and
 * `--allow-net`/`--allow-env` widened to match), which is how the store
 * grows past one machine.
 *
 * @module
 */
import { serveHttps } from "../https.ts";
import { type PeerIdentity, TlsError } from "../tls.ts";
import {
  createXmlRpcHandler,
  XmlRpcFault,
  XmlRpcFaultCode,
  type XmlRpcMethod,
  type XmlRpcValue,
} from "../xmlrpc.ts";
import { fail, parseArgsOrExit, parsePort, readCertsFile } from "./_cli.ts";
import { failListen, runLine, setProgram, shellQuote } from "./_program.ts";
import { rateLimitedLog } from "./_server_log.ts";

/** Longest name accepted, in UTF-8 bytes (Deno KV keys take 2048). */
export const MAX_NAME_BYTES = 1024;
/** Most names returned by one `keys` call. */
export const MAX_KEYS = 1000;
const PREFIX = "kv";
/** Reads and conditional deletes `delete` tries while writers race it. */
const DELETE_ATTEMPTS = 10;

function repr(name: string): string {
  const shown = name.length > 80 ? `${name.slice(0, 80)}...` : name;
  return `'${shown.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

function typeName(value: unknown): string {
  if (value === null) return "None";
  if (Array.isArray(value)) return "list";
  if (value instanceof Uint8Array) return "bytes";
  if (value instanceof Date) return "datetime";
  if (typeof value === "number") {
    return Number.isInteger(value) ? "int" : "float";
  }
  if (typeof value === "boolean") return "bool";
  if (typeof value === "string") return "str";
  return "dict";
}

function arity(
  method: string,
  params: XmlRpcValue[],
  min: number,
  max: number,
): void {
  if (params.length < min || params.length > max) {
    const want = min === max ? `${min}` : `${min} to ${max}`;
    throw new XmlRpcFault(
      XmlRpcFaultCode.INVALID_PARAMS,
      `TypeError: ${method}() takes ${want} arguments, got ${params.length}`,
    );
  }
}

function keyOf(method: string, name: XmlRpcValue): Deno.KvKey {
  if (typeof name !== "string") {
    throw new XmlRpcFault(
      XmlRpcFaultCode.INVALID_PARAMS,
      `TypeError: ${method}() takes a string name, got ${typeName(name)}`,
    );
  }
  const size = new TextEncoder().encode(name).byteLength;
  if (size > MAX_NAME_BYTES) {
    throw new XmlRpcFault(
      XmlRpcFaultCode.INVALID_PARAMS,
      `ValueError: the name is ${size} bytes, over the ${MAX_NAME_BYTES}-byte limit`,
    );
  }
  return [PREFIX, name];
}

function keyError(name: string): XmlRpcFault {
  return new XmlRpcFault(
    XmlRpcFaultCode.APPLICATION,
    `KeyError: ${repr(name)}`,
  );
}

/**
 * The store's XML-RPC methods over a Deno KV database.
 *
 * @param kv The database (its entries live under the `["kv"]` prefix).
 * @returns The methods, for {@linkcode createXmlRpcHandler}.
 */
export function kvMethods(kv: Deno.Kv): Record<string, XmlRpcMethod> {
  return {
    async get(...params) {
      arity("get", params, 1, 1);
      const entry = await kv.get<XmlRpcValue>(keyOf("get", params[0]));
      if (entry.versionstamp === null) throw keyError(params[0] as string);
      return entry.value;
    },
    async set(...params) {
      arity("set", params, 2, 2);
      const key = keyOf("set", params[0]);
      try {
        await kv.set(key, params[1]);
      } catch (error) {
        if (error instanceof TypeError && /too large/i.test(error.message)) {
          throw new XmlRpcFault(
            XmlRpcFaultCode.INVALID_PARAMS,
            `ValueError: the value of ${
              repr(params[0] as string)
            } is too large: Deno KV stores at most 65536 bytes per value once serialized`,
          );
        }
        throw error;
      }
      return null;
    },
    async delete(...params) {
      arity("delete", params, 1, 1);
      const key = keyOf("delete", params[0]);
      // Delete the entry we saw, so that a missing name is a KeyError. If a
      // set or delete got in between, look again: KeyError only if the name
      // is really gone.
      for (let attempt = 0; attempt < DELETE_ATTEMPTS; attempt++) {
        const entry = await kv.get(key);
        if (entry.versionstamp === null) throw keyError(params[0] as string);
        const result = await kv.atomic().check(entry).delete(key).commit();
        if (result.ok) return null;
      }
      throw new XmlRpcFault(
        XmlRpcFaultCode.APPLICATION,
        `RuntimeError: ${
          repr(params[0] as string)
        } changed ${DELETE_ATTEMPTS} times while being deleted; try again`,
      );
    },
    async exists(...params) {
      arity("exists", params, 1, 1);
      const entry = await kv.get(keyOf("exists", params[0]));
      return entry.versionstamp !== null;
    },
    async keys(...params) {
      arity("keys", params, 0, 2);
      const [after, limit] = params;
      if (after !== undefined && typeof after !== "string") {
        throw new XmlRpcFault(
          XmlRpcFaultCode.INVALID_PARAMS,
          `TypeError: keys() takes a string 'after', got ${typeName(after)}`,
        );
      }
      if (
        limit !== undefined &&
        (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 ||
          limit > MAX_KEYS)
      ) {
        throw new XmlRpcFault(
          XmlRpcFaultCode.INVALID_PARAMS,
          `ValueError: keys() takes a 'limit' from 1 to ${MAX_KEYS}`,
        );
      }
      const paged = params.length > 0;
      const want = paged ? (limit ?? MAX_KEYS) : MAX_KEYS + 1;
      const selector: Deno.KvListSelector = after
        ? { prefix: [PREFIX], start: [PREFIX, `${after}\0`] }
        : { prefix: [PREFIX] };
      const names: string[] = [];
      for await (
        const entry of kv.list(selector, { limit: want, batchSize: 500 })
      ) {
        names.push(entry.key[1] as string);
      }
      if (!paged && names.length > MAX_KEYS) {
        throw new XmlRpcFault(
          XmlRpcFaultCode.APPLICATION,
          `ValueError: the store holds more than ${MAX_KEYS} names; page through them with keys(after, limit): keys('', ${MAX_KEYS}), then keys(last_name, ${MAX_KEYS}) until fewer come back`,
        );
      }
      return names;
    },
  };
}

/** A client's address for the log: `host:port`, `[v6]:port`, or "a client". */
function describeAddr(addr: Deno.Addr | undefined): string {
  if (addr?.transport !== "tcp" && addr?.transport !== "udp") return "a client";
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return `${host}:${addr.port}`;
}

const PROGRAM = {
  script: "examples/kv_server.ts",
  task: "kv-server",
  flags: [
    "--unstable-kv",
    "--allow-net=127.0.0.1",
    "--allow-read=certs,kv.sqlite3",
    "--allow-write=kv.sqlite3",
  ],
};

const USAGE = `Usage: deno task kv-server [options]
   or: deno run ${PROGRAM.flags.join(" ")} ${PROGRAM.script} [options]

Serves get/set/delete/exists/keys over XML-RPC on HTTPS (mutual TLS by default).

Options:
  --hostname NAME     address to listen on (default 127.0.0.1)
  --port N            TCP port (default 15000; 0 picks a free one)
  --certs DIR         folder from \`deno task certs\` (default certs): ca.pem,
                      server.pem, server-key.pem
  --no-mutual         server-only TLS: do not ask clients for certificates
  --allow-client CN   client certificate common name to accept; repeat for
                      more (default "client", the one \`deno task certs\` makes)
  --any-client        accept every client certificate the CA signed
  --db PATH|URL       Deno KV database: a SQLite file (default kv.sqlite3),
                      :memory:, or a remote Deno KV URL (https://...; needs
                      DENO_KV_ACCESS_TOKEN and wider --allow-net/--allow-env)
  -h, --help          show this help`;

/**
 * The HTTP 403 answer (and one log line) for a client whose certificate's
 * CN is not in `allowed`, or null to serve it.
 */
function refusal(
  identity: PeerIdentity | null,
  allowed: string[],
  remoteAddr: Deno.Addr,
  log: (text: () => string) => void,
): Response | null {
  const cn = identity?.cn;
  if (cn !== undefined && allowed.includes(cn)) return null;
  const who = cn === undefined
    ? "the client certificate has no common name, and"
    : `the client certificate's common name ${JSON.stringify(cn)}`;
  const fix = cn === undefined
    ? "start the server with --any-client"
    : `start the server with --allow-client ${
      shellQuote(cn)
    } (or --any-client)`;
  // "forbidden", not "refused": the TLS layer accepted it, HTTP says 403.
  log(() =>
    `forbidden ${
      describeAddr(remoteAddr)
    }: ${who} is not in the allow-list (HTTP 403); to let it in, ${fix}`
  );
  return new Response(
    `Cannot serve the request: ${who} is not in the allow-list (${
      allowed.join(", ")
    }); ${fix}\n`,
    { status: 403, headers: { "content-type": "text/plain; charset=utf-8" } },
  );
}

async function main(): Promise<void> {
  setProgram(PROGRAM);
  const { values: flags } = parseArgsOrExit(USAGE, {
    help: { type: "boolean", short: "h" },
    hostname: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    certs: { type: "string", default: "certs" },
    "no-mutual": { type: "boolean", default: false },
    "allow-client": { type: "string", multiple: true },
    "any-client": { type: "boolean", default: false },
    db: { type: "string", default: "kv.sqlite3" },
  }, { allowPositionals: false });
  const port = parsePort(flags.port, 15000);
  const mutual = !flags["no-mutual"];
  const allowed = flags["any-client"]
    ? undefined
    : flags["allow-client"] ?? ["client"];
  const read = (name: string): string => readCertsFile(flags.certs, name);
  const cert = read("server.pem");
  const key = read("server-key.pem");
  const ca = mutual ? read("ca.pem") : undefined;

  let kv: Deno.Kv;
  try {
    kv = await Deno.openKv(flags.db === ":memory:" ? ":memory:" : flags.db);
  } catch (error) {
    const what = `Cannot open the database ${JSON.stringify(flags.db)}`;
    if (error instanceof Deno.errors.NotCapable) {
      const grants: [string, string][] = /^https?:/.test(flags.db)
        ? [["net", new URL(flags.db).host], ["env", "DENO_KV_ACCESS_TOKEN"]]
        : [["read", flags.db], ["write", flags.db]];
      fail(`${what}: no permission for it; run: ${runLine(...grants)}`);
    }
    fail(`${what}: ${(error as Error).message}`);
  }
  const controller = new AbortController();
  const log = rateLimitedLog();
  const handler = createXmlRpcHandler(kvMethods(kv), {
    onError(error, info) {
      log.line(() =>
        `error in ${info.method ?? `the ${info.phase}`}: ${
          (error as Error)?.message ?? error
        }`
      );
    },
  });
  const server = await serveHttps({
    hostname: flags.hostname,
    port,
    cert,
    key,
    clientCa: ca,
    signal: controller.signal,
    onError(error, info) {
      // A TLS refusal carries its machine-readable reason: "no-certificate",
      // "unknown-ca", "expired", ...
      const reason = error instanceof TlsError ? ` (${error.reason})` : "";
      const what = info.phase === "tls" || info.phase === "accept"
        ? "refused"
        : `${info.phase} failed for`;
      log.line(() =>
        `${what} ${describeAddr(info.remoteAddr)}${reason}: ${
          (error as Error)?.message ?? error
        }`
      );
    },
  }, (request, info) => {
    // Others verified by the CA get HTTP 403, which says what to do.
    const refused = mutual && allowed
      ? refusal(info.peerIdentity, allowed, info.remoteAddr, log.line)
      : null;
    return refused ?? handler(request);
  }).catch((error) => {
    kv.close();
    failListen(error, flags.hostname, port);
  });
  const host = flags.hostname === "127.0.0.1" ? "localhost" : flags.hostname;
  console.error(
    `kv server listening on https://${host}:${server.addr.port}/ (${
      mutual
        ? `mutual TLS, clients: ${
          allowed ? allowed.join(", ") : "any from ca.pem"
        }`
        : "server-only TLS"
    }; db: ${flags.db})`,
  );
  const stop = () => controller.abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  kv.close();
  console.error("kv server stopped");
  Deno.exit(0);
}

if (import.meta.main) await main();
