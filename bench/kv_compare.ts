// The XML-RPC key-value store next to the Cookbook's Python
// SimpleXMLRPCServer, measured side by side in one run: requests/s of
// set+get pairs from one client on one kept-alive mutual-TLS connection.
//
// Run with `deno task bench:kv` (options: --seconds N per target, split
// into --rounds N slices that alternate between the targets, --json PATH to
// also write the numbers). Targets, each a separate process:
//
// - ours, --db :memory: (Deno KV in memory, as the recipe keeps a dict);
// - ours, --db FILE (Deno KV on SQLite, every set fsynced before it answers);
// - ours with a Map instead of Deno KV (bench/_kv_map_server.ts): the HTTPS,
//   TLS and XML-RPC stack alone, to show the storage's share;
// - Python's SimpleXMLRPCServer as the recipe writes it (HTTP/1.0: the
//   server closes the connection after every call, so each call pays a new
//   TCP connection and TLS handshake even though our client keeps alive);
// - the same server switched to HTTP/1.1 keep-alive (one line more than the
//   recipe), the stricter baseline: no handshake per call.
//
// The client is ours (createXmlRpcClient: fetch with a pooled connection) for
// every target, so only the servers differ.
import { parseArgs } from "node:util";
import { generateCertificates } from "../certs.ts";
import { createXmlRpcClient, type XmlRpcClient } from "../xmlrpc.ts";
import { findPython, interopScript } from "../tests/_helpers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "6" },
    rounds: { type: "string", default: "6" },
    json: { type: "string" },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const DIR = new URL("./results/kv", import.meta.url).pathname;

await Deno.mkdir(`${DIR}/certs`, { recursive: true });
const set = await generateCertificates({ clients: ["client"] });
const files: Record<string, string> = {
  "ca.pem": set.ca.cert,
  "server.pem": set.server.cert,
  "server-key.pem": set.server.key,
  "client.pem": set.clients.client.cert,
  "client-key.pem": set.clients.client.key,
};
for (const [name, text] of Object.entries(files)) {
  await Deno.writeTextFile(`${DIR}/certs/${name}`, text);
}
for (const suffix of ["", "-wal", "-shm"]) {
  await Deno.remove(`${DIR}/kv.sqlite3${suffix}`).catch(() => {});
}

interface Target {
  name: string;
  command: string;
  args: string[];
  ready: RegExp;
  stream: "stdout" | "stderr";
}

const SERVER = new URL("../examples/kv_server.ts", import.meta.url).pathname;
const ours = (db: string): string[] => [
  "run",
  "--unstable-kv",
  "--allow-net=127.0.0.1",
  `--allow-read=${DIR}`,
  `--allow-write=${DIR}`,
  SERVER,
  "--port",
  "0",
  "--certs",
  `${DIR}/certs`,
  "--db",
  db,
];
const python = findPython("3.12") ?? findPython("3");
const pythonArgs = [
  interopScript("kv_xmlrpc_server.py"),
  "0",
  `${DIR}/certs/server.pem`,
  `${DIR}/certs/server-key.pem`,
  `${DIR}/certs/ca.pem`,
];
const targets: Target[] = [
  {
    name: "ours (Deno KV :memory:)",
    command: Deno.execPath(),
    args: ours(":memory:"),
    ready: /localhost:(\d+)\//,
    stream: "stderr",
  },
  {
    name: "ours (Deno KV SQLite file, fsync per set)",
    command: Deno.execPath(),
    args: ours(`${DIR}/kv.sqlite3`),
    ready: /localhost:(\d+)\//,
    stream: "stderr",
  },
];
targets.push({
  name: "ours, a Map instead of Deno KV (stack only)",
  command: Deno.execPath(),
  args: [
    "run",
    "--allow-net=127.0.0.1",
    `--allow-read=${DIR}`,
    new URL("./_kv_map_server.ts", import.meta.url).pathname,
    `${DIR}/certs`,
  ],
  ready: /localhost:(\d+)\//,
  stream: "stderr",
});
if (python) {
  targets.push({
    name: "Python SimpleXMLRPCServer (recipe, HTTP/1.0)",
    command: python,
    args: pythonArgs,
    ready: /listening (\d+)/,
    stream: "stdout",
  }, {
    name: "Python SimpleXMLRPCServer, HTTP/1.1 keep-alive",
    command: python,
    args: [...pythonArgs, "--keep-alive"],
    ready: /listening (\d+)/,
    stream: "stdout",
  });
} else {
  console.error("warning: no python3 found; measuring ours only");
}

async function start(target: Target): Promise<
  { port: number; child: Deno.ChildProcess }
> {
  const child = new Deno.Command(target.command, {
    args: target.args,
    stdin: "null",
    stdout: target.stream === "stdout" ? "piped" : "null",
    stderr: target.stream === "stderr" ? "piped" : "inherit",
  }).spawn();
  const reader = child[target.stream].pipeThrough(new TextDecoderStream())
    .getReader();
  let text = "";
  // A server that prints nothing must not hang the run: every read races
  // the 20 s deadline.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), 20_000);
  });
  let why = "it timed out after 20 s";
  try {
    for (;;) {
      const result = await Promise.race([reader.read(), expired]);
      if (result === "expired") break;
      if (result.done) {
        why = "it exited or closed its output";
        break;
      }
      text += result.value;
      const match = target.ready.exec(text);
      if (match) {
        // Keep draining so the child never blocks on a full pipe.
        (async () => {
          while (!(await reader.read()).done) { /* discard */ }
        })().catch(() => {});
        return { port: Number(match[1]), child };
      }
    }
  } finally {
    clearTimeout(timer);
  }
  await reader.cancel().catch(() => {});
  await stop(child);
  throw new Error(`${target.name} did not start (${why}): ${text}`);
}

/**
 * Stops a server: SIGTERM, then SIGKILL if it has not exited after 5 s, so
 * a server that ignores or hangs on SIGTERM cannot hang the run.
 */
async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // already exited
  }
  const timer = setTimeout(() => {
    console.error("warning: a server ignored SIGTERM for 5 s; killing it");
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
  }, 5_000);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
  }
}

interface Result {
  name: string;
  pairs: number;
  seconds: number;
  requestsPerSecond: number;
}

interface Running {
  target: Target;
  child: Deno.ChildProcess;
  client: XmlRpcClient;
  pairs: number;
  seconds: number;
}

const value = { name: "alice", tags: ["a", "b"], n: 42 };

async function pair(client: XmlRpcClient, i: number): Promise<void> {
  await client.call("set", `key-${i % 1000}`, value);
  await client.call("get", `key-${i % 1000}`);
}

// Every server runs at once; the rounds alternate between them so that
// a burst of load from elsewhere on the machine hits them all alike.
const running: Running[] = [];
try {
  for (const target of targets) {
    const { port, child } = await start(target);
    const client = createXmlRpcClient(`https://localhost:${port}/`, {
      caCerts: [set.ca.cert],
      cert: set.clients.client.cert,
      key: set.clients.client.key,
    });
    running.push({ target, child, client, pairs: 0, seconds: 0 });
    for (let i = 0; i < 50; i++) await pair(client, i); // warm up
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const run of running) {
      const start = performance.now();
      const end = start + (SECONDS * 1000) / ROUNDS;
      let pairs = 0;
      while (performance.now() < end) await pair(run.client, pairs++);
      run.pairs += pairs;
      run.seconds += (performance.now() - start) / 1000;
    }
  }
} finally {
  for (const run of running) {
    run.client.close();
    await stop(run.child);
  }
}

const results: Result[] = running.map((run) => ({
  name: run.target.name,
  pairs: run.pairs,
  seconds: run.seconds,
  requestsPerSecond: (run.pairs * 2) / run.seconds,
}));
for (const result of results) {
  console.log(
    `${result.name.padEnd(52)} ${
      result.requestsPerSecond.toFixed(0).padStart(7)
    } requests/s  (${result.pairs} set+get pairs in ${
      result.seconds.toFixed(1)
    } s)`,
  );
}
const pythons = results.filter((r) => r.name.startsWith("Python"));
for (const baseline of pythons) {
  console.log(`\nratio to ${baseline.name} (target: ours >= 5x):`);
  for (const result of results) {
    if (result.name.startsWith("Python")) continue;
    console.log(
      `  ${result.name.padEnd(50)} ${
        (result.requestsPerSecond / baseline.requestsPerSecond).toFixed(2)
      }x`,
    );
  }
}
if (values.json) {
  await Deno.writeTextFile(
    values.json,
    JSON.stringify({ date: new Date().toISOString(), results }, null, 2),
  );
}
await Deno.remove(DIR, { recursive: true });
