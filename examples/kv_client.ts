/**
 * Command-line client for the XML-RPC key-value store
 * (`examples/kv_server.ts`), presenting a client certificate from
 * `deno task certs`.
 *
 *     deno task kv-client set colour blue
 *     deno task kv-client set point '{"x": 1, "y": [2, null]}' --json
 *     deno task kv-client get colour
 *     deno task kv-client exists colour
 *     deno task kv-client keys
 *     deno task kv-client delete colour
 *
 * @module
 */
import {
  createXmlRpcClient,
  XmlRpcFault,
  type XmlRpcValue,
} from "../xmlrpc.ts";
import { fail, parseArgsOrExit, parseTimeout, readCertsFile } from "./_cli.ts";
import { explain, setProgram } from "./_program.ts";

const RUN = setProgram({
  script: "examples/kv_client.ts",
  task: "kv-client",
  flags: ["--allow-net=localhost", "--allow-read=certs"],
});

const USAGE = `Usage: deno task kv-client [options] COMMAND [ARGS]
   or: ${RUN} [options] COMMAND [ARGS]

Commands:
  get NAME                 print the value (strings as they are, else JSON)
  set NAME VALUE           store VALUE (a string; with --json, parsed as JSON)
  delete NAME              remove NAME
  exists NAME              print true or false
  keys [AFTER [LIMIT]]     print the names, one a line (paged: at most LIMIT
                           names sorted after AFTER)

Options:
  --url URL          the server (default https://localhost:15000/)
  --certs DIR        folder from \`deno task certs\` (default certs): ca.pem,
                     and client.pem + client-key.pem unless --no-client-cert
  --no-client-cert   do not present a client certificate (--no-mutual servers)
  --json             parse VALUE of set as JSON (objects, lists, numbers, null)
  --timeout MS       deadline per call (default 10000)
  -h, --help         show this help

Exit status: 0 on success, 1 on a fault (a missing key, for instance) or a
connection failure, 2 on bad usage.`;

function show(value: XmlRpcValue): string {
  if (typeof value === "string") return value;
  // Dates print as ISO strings (Date.toJSON); bytes as {"base64": "..."}.
  return JSON.stringify(value, (_key, item) => {
    if (item instanceof Uint8Array) return { base64: item.toBase64() };
    return item;
  });
}

const parsed = parseArgsOrExit(USAGE, {
  help: { type: "boolean", short: "h" },
  url: { type: "string", default: "https://localhost:15000/" },
  certs: { type: "string", default: "certs" },
  "no-client-cert": { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  timeout: { type: "string" },
});
const flags = parsed.values;
const timeout = parseTimeout(flags.timeout);
const [command, ...args] = parsed.positionals;
const counts: Record<string, [number, number]> = {
  get: [1, 1],
  set: [2, 2],
  delete: [1, 1],
  exists: [1, 1],
  keys: [0, 2],
};
if (command === undefined || !Object.hasOwn(counts, command)) {
  fail(
    `Cannot run ${
      JSON.stringify(command ?? "")
    }: expected a command\n\n${USAGE}`,
    2,
  );
}
const [min, max] = counts[command];
if (args.length < min || args.length > max) {
  fail(`Cannot run ${command}: wrong number of arguments\n\n${USAGE}`, 2);
}

const params: unknown[] = [...args];
if (command === "set" && flags.json) {
  try {
    params[1] = JSON.parse(args[1]);
  } catch (error) {
    fail(`Cannot parse the value as JSON: ${(error as Error).message}`, 2);
  }
}
if (command === "keys" && args.length === 2) {
  // keys AFTER LIMIT: LIMIT is a count of names (the server caps it).
  if (!/^[0-9]+$/.test(args[1]) || Number(args[1]) < 1) {
    fail(
      `Cannot run keys: LIMIT must be a whole number above 0, got ${
        JSON.stringify(args[1])
      }\n\n${USAGE}`,
      2,
    );
  }
  params[1] = Number(args[1]);
}

const read = (name: string): string => readCertsFile(flags.certs, name);
let url: URL;
try {
  url = new URL(flags.url);
} catch {
  fail(
    `Cannot use --url ${
      JSON.stringify(flags.url)
    }: not a URL; expected one like https://localhost:15000/`,
    2,
  );
}
const tls = url.protocol === "https:"
  ? {
    caCerts: [read("ca.pem")],
    ...(flags["no-client-cert"]
      ? {}
      : { cert: read("client.pem"), key: read("client-key.pem") }),
  }
  : {};

using client = createXmlRpcClient(url, { ...tls, timeout });
try {
  const result = await client.call(command, ...params);
  if (command === "keys") {
    for (const name of result as string[]) console.log(name);
  } else if (command === "get" || command === "exists") {
    console.log(show(result));
  }
} catch (error) {
  if (error instanceof XmlRpcFault) {
    fail(`fault ${error.faultCode}: ${error.faultString}`);
  }
  const action = describeCommand(command, args);
  const message = (error as Error).message ?? String(error);
  // kv_server's 403 says which flag lets our certificate in.
  const forbidden = /HTTP 403: (?:Cannot serve the request: )?(.*)$/s.exec(
    message,
  );
  if (forbidden) {
    fail(
      `Cannot ${action}: the server does not allow our client certificate (HTTP 403): ${
        forbidden[1].replace(/\s+/g, " ").trim()
      }`,
    );
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    fail(
      `Cannot ${action}: nothing listens at ${url}; start the server (deno task kv-server) or pass --url`,
    );
  }
  // The client's other errors already name the URL, the cause and the fix.
  fail(explain(error, action) ?? `Cannot ${action}: ${message}`);
}

/** What `command` does, for an error line: `list the keys`, `get "colour"`. */
function describeCommand(command: string, args: string[]): string {
  const name = JSON.stringify(args[0] ?? "");
  switch (command) {
    case "keys":
      return "list the keys";
    case "exists":
      return `check whether ${name} exists`;
    default:
      return `${command} ${name}`;
  }
}
