/**
 * multiprocessing benchmark, side by side in one run
 * (`deno task bench:multiprocessing`): round trips per second of small
 * (16-byte) messages over an authenticated `multiprocessing.connection`,
 * one message in flight at a time, for each pairing of client and echo
 * listener:
 *
 * - Deno client  -> Python `Listener` (CPython 3.12, echo)
 * - Python `Client` -> Python `Listener` (the baseline)
 * - Python `Client` -> Deno listener (echo)
 * - Deno client  -> Deno listener (echo)
 *
 * Each pairing runs `--rounds` times (interleaved, so a noisy neighbour hits
 * them all alike); the median is reported with the ratio to the
 * Python-to-Python baseline. The Python peer is tests/interop/mp_peer.py.
 *
 *     deno task bench:multiprocessing [--count 20000] [--rounds 3] [--python 3.12]
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  connectMultiprocessing,
  listenMultiprocessing,
  type MultiprocessingConnection,
} from "../multiprocessing.ts";
import { findPython, interopScript, lines } from "../tests/_helpers.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    count: { type: "string", default: "20000" },
    rounds: { type: "string", default: "3" },
    python: { type: "string", default: "3.12" },
  },
});
const COUNT = Number(args.values.count);
const ROUNDS = Number(args.values.rounds);
const PYTHON = findPython(args.values.python!);
if (!PYTHON) {
  console.error(
    `Cannot run the benchmark: Python ${args.values.python} is missing (pyenv install ${args.values.python}, or set CONNAUTH_PYTHON_${
      args.values.python!.replaceAll(".", "_")
    })`,
  );
  Deno.exit(1);
}
const AUTHKEY = "bench key";
const AUTHKEY_HEX = "62656e6368206b6579";
const MESSAGE = new TextEncoder().encode("x".repeat(16));
const WARMUP = 500;

interface Peer {
  events: AsyncGenerator<string>;
  child: Deno.ChildProcess;
}

function startPeer(argv: string[]): Peer {
  const child = new Deno.Command(PYTHON!, {
    args: [interopScript("mp_peer.py"), ...argv, "--authkey-hex", AUTHKEY_HEX],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  return { child, events: lines(child.stdout) };
}

async function event(peer: Peer): Promise<Record<string, unknown>> {
  const { value, done } = await peer.events.next();
  if (done) throw new Error("the Python peer exited early");
  return JSON.parse(value);
}

async function finish(peer: Peer): Promise<void> {
  for await (const _ of peer.events) {
    // drain
  }
  const status = await peer.child.status;
  if (!status.success) throw new Error(`the Python peer exited ${status.code}`);
}

async function pingpong(
  conn: MultiprocessingConnection,
  count: number,
): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    await conn.sendBytes(MESSAGE);
    const echo = await conn.recvBytes();
    if (echo?.byteLength !== MESSAGE.byteLength) throw new Error("bad echo");
  }
  return count / ((performance.now() - start) / 1000);
}

async function denoToPython(): Promise<number> {
  const peer = startPeer(["listener", "--session", "echo"]);
  const { port } = await event(peer);
  let rate: number;
  {
    await using conn = await connectMultiprocessing({
      port: port as number,
      authkey: AUTHKEY,
    });
    await pingpong(conn, WARMUP);
    rate = await pingpong(conn, COUNT);
  }
  await finish(peer);
  return rate;
}

async function pythonToPython(): Promise<number> {
  const server = startPeer(["listener", "--session", "echo"]);
  const { port } = await event(server);
  const client = startPeer([
    "client",
    "--port",
    String(port),
    "--session",
    "pingpong",
    "--count",
    String(COUNT),
  ]);
  await event(client); // authenticated
  const done = await event(client);
  await finish(client);
  await finish(server);
  return done.per_second as number;
}

async function echo(conn: MultiprocessingConnection): Promise<void> {
  for await (const message of conn) await conn.sendBytes(message);
}

async function pythonToDeno(): Promise<number> {
  await using listener = await listenMultiprocessing({ authkey: AUTHKEY });
  const client = startPeer([
    "client",
    "--port",
    String(listener.addr.port),
    "--session",
    "pingpong",
    "--count",
    String(COUNT),
  ]);
  await using conn = await listener.accept();
  const echoing = echo(conn);
  await event(client); // authenticated
  const done = await event(client);
  await finish(client);
  await echoing;
  return done.per_second as number;
}

async function denoToDeno(): Promise<number> {
  await using listener = await listenMultiprocessing({ authkey: AUTHKEY });
  await using client = await connectMultiprocessing({
    port: listener.addr.port,
    authkey: AUTHKEY,
  });
  await using server = await listener.accept();
  const echoing = echo(server);
  await pingpong(client, WARMUP);
  const rate = await pingpong(client, COUNT);
  client.close();
  await echoing;
  return rate;
}

const scenarios: [string, () => Promise<number>][] = [
  ["Deno client -> Python Listener", denoToPython],
  ["Python Client -> Python Listener", pythonToPython],
  ["Python Client -> Deno listener", pythonToDeno],
  ["Deno client -> Deno listener", denoToDeno],
];
const results = new Map<string, number[]>(
  scenarios.map(([name]) => [name, []]),
);
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run] of scenarios) results.get(name)!.push(await run());
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const baseline = median(results.get("Python Client -> Python Listener")!);
const version = new TextDecoder().decode(
  (await new Deno.Command(PYTHON, { args: ["--version"] }).output()).stdout,
).trim();
console.log(
  `multiprocessing round trips of ${MESSAGE.byteLength}-byte messages, ${COUNT} per run, median of ${ROUNDS}; ${version}, Deno ${Deno.version.deno}`,
);
console.log("| pairing | round trips/s | vs Python-to-Python |");
console.log("| --- | ---: | ---: |");
for (const [name] of scenarios) {
  const value = median(results.get(name)!);
  console.log(
    `| ${name} | ${Math.round(value)} | ${(value / baseline).toFixed(2)}x |`,
  );
}
