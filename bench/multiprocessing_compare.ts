/**
 * multiprocessing benchmark, side by side in one run
 * (`deno task bench:multiprocessing`): round trips per second of small
 * (16-byte) messages over an authenticated `multiprocessing.connection`,
 * one message in flight at a time, for each pairing of client and echo
 * listener:
 *
 * - Deno client  -> Python `Listener` (CPython, 3.12 unless `--python`; echo)
 * - Python `Client` -> Python `Listener` (the baseline)
 * - Python `Client` -> Deno listener (echo)
 * - Deno client  -> Deno listener (echo)
 *
 * Every pairing first makes the same untimed warm-up round trips on its
 * connection, then `--count` timed ones. Each pairing runs `--rounds` times
 * (interleaved, so a noisy neighbour hits them all alike); the median is
 * reported with the ratio to the Python-to-Python baseline. The Python peer
 * is tests/interop/mp_peer.py. With `--python 3.11` (or older) the Deno side
 * turns on `legacyMd5`, since those versions only speak HMAC-MD5.
 *
 * Every wait is bounded: Python processes are killed after their time limit,
 * each event and accept has a deadline, and a Deno run whose peer stalls is
 * cut off by closing its connection.
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
import { findPython, interopScript, lines, within } from "../tests/_helpers.ts";

const USAGE =
  "Usage: deno task bench:multiprocessing [--count 20000] [--rounds 3] [--python 3.12]";

function usageError(message: string): never {
  console.error(`${message}\n${USAGE}`);
  Deno.exit(2);
}

let args: ReturnType<typeof parseOptions>;
function parseOptions() {
  return parseArgs({
    args: Deno.args,
    options: {
      count: { type: "string", default: "20000" },
      rounds: { type: "string", default: "3" },
      python: { type: "string", default: "3.12" },
      help: { type: "boolean", short: "h" },
    },
  });
}
try {
  args = parseOptions();
} catch (error) {
  usageError((error as Error).message);
}
if (args.values.help) {
  console.log(USAGE);
  Deno.exit(0);
}

/** A whole number from 1 to `max`, or exit 2 naming the flag. */
function positiveInteger(flag: string, text: string, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > max) {
    usageError(
      `Cannot use --${flag} "${text}": expected a whole number from 1 to ${max}`,
    );
  }
  return value;
}

const COUNT = positiveInteger("count", args.values.count!, 10_000_000);
const ROUNDS = positiveInteger("rounds", args.values.rounds!, 100);
const PYTHON_VERSION = args.values.python!;
const minor = /^3\.(\d+)$/.exec(PYTHON_VERSION)?.[1];
if (minor === undefined) {
  usageError(
    `Cannot use --python "${PYTHON_VERSION}": expected a Python 3 minor version such as 3.12`,
  );
}
/** Python 3.11 and older only speak the HMAC-MD5 handshake. */
const LEGACY_MD5 = Number(minor) < 12;
const PYTHON = findPython(PYTHON_VERSION);
if (!PYTHON) {
  console.error(
    `Cannot run the benchmark: Python ${PYTHON_VERSION} is missing (pyenv install ${PYTHON_VERSION}, or set CONNAUTH_PYTHON_${
      PYTHON_VERSION.replaceAll(".", "_")
    })`,
  );
  Deno.exit(1);
}
const AUTHKEY = "bench key";
const AUTHKEY_HEX = "62656e6368206b6579";
const MESSAGE = new TextEncoder().encode("x".repeat(16));
/** Untimed round trips each pairing makes first, on the timed connection. */
const WARMUP = 500;
/** Longest a run may take: a generous 1 ms per round trip, plus startup. */
const RUN_LIMIT = 30_000 + (COUNT + WARMUP);
/** Longest wait for a Python event or an accepted connection. */
const EVENT_LIMIT = 30_000;

interface Peer {
  events: AsyncGenerator<string>;
  child: Deno.ChildProcess;
}

/** Python processes not yet finished, killed if the benchmark fails. */
const running = new Set<Deno.ChildProcess>();

function startPeer(argv: string[]): Peer {
  const child = new Deno.Command(PYTHON!, {
    args: [interopScript("mp_peer.py"), ...argv, "--authkey-hex", AUTHKEY_HEX],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
    // Killed (SIGTERM) if it outlives the run, so nothing waits forever.
    signal: AbortSignal.timeout(RUN_LIMIT),
  }).spawn();
  running.add(child);
  child.status.finally(() => running.delete(child));
  return { child, events: lines(child.stdout) };
}

async function event(
  peer: Peer,
  ms = EVENT_LIMIT,
): Promise<Record<string, unknown>> {
  const { value, done } = await within(
    peer.events.next(),
    ms,
    "Cannot run the benchmark: waiting for the Python peer",
  );
  if (done) throw new Error("the Python peer exited early");
  const parsed = JSON.parse(value);
  if (parsed.event === "error") {
    throw new Error(
      `the Python peer failed: ${parsed.type}: ${parsed.message}`,
    );
  }
  return parsed;
}

async function finish(peer: Peer): Promise<void> {
  for await (const _ of peer.events) {
    // drain (ends when the process exits, or is killed at its time limit)
  }
  const status = await peer.child.status;
  if (!status.success) throw new Error(`the Python peer exited ${status.code}`);
}

/** Closes `conn` if the run outlives RUN_LIMIT, ending any wait on it. */
function watchdog(conn: MultiprocessingConnection): Disposable {
  const timer = setTimeout(() => conn.close(), RUN_LIMIT);
  return { [Symbol.dispose]: () => clearTimeout(timer) };
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
      legacyMd5: LEGACY_MD5,
    });
    using _ = watchdog(conn);
    await pingpong(conn, WARMUP);
    rate = await pingpong(conn, COUNT);
  }
  await finish(peer);
  return rate;
}

/** mp_peer.py's pingpong client against the listener at `port`. */
function pythonClient(port: number): Peer {
  return startPeer([
    "client",
    "--port",
    String(port),
    "--session",
    "pingpong",
    "--warmup",
    String(WARMUP),
    "--count",
    String(COUNT),
  ]);
}

async function pythonToPython(): Promise<number> {
  const server = startPeer(["listener", "--session", "echo"]);
  const { port } = await event(server);
  const client = pythonClient(port as number);
  await event(client); // authenticated
  const done = await event(client, RUN_LIMIT);
  await finish(client);
  await finish(server);
  return done.per_second as number;
}

async function echo(conn: MultiprocessingConnection): Promise<void> {
  for await (const message of conn) await conn.sendBytes(message);
}

async function pythonToDeno(): Promise<number> {
  await using listener = await listenMultiprocessing({
    authkey: AUTHKEY,
    legacyMd5: LEGACY_MD5,
  });
  const client = pythonClient(listener.addr.port);
  await using conn = await listener.accept({ timeout: EVENT_LIMIT });
  using _ = watchdog(conn);
  const echoing = echo(conn);
  await event(client); // authenticated
  const done = await event(client, RUN_LIMIT);
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
  await using server = await listener.accept({ timeout: EVENT_LIMIT });
  using _ = watchdog(client);
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
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of scenarios) results.get(name)!.push(await run());
  }
} catch (error) {
  for (const child of running) {
    try {
      child.kill();
    } catch {
      // already exited
    }
  }
  console.error(`Cannot finish the benchmark: ${(error as Error).message}`);
  Deno.exit(1);
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const baseline = median(results.get("Python Client -> Python Listener")!);
const version = new TextDecoder().decode(
  (await new Deno.Command(PYTHON, {
    args: ["--version"],
    signal: AbortSignal.timeout(EVENT_LIMIT),
  }).output()).stdout,
).trim();
console.log(
  `multiprocessing round trips of ${MESSAGE.byteLength}-byte messages, ${WARMUP} untimed then ${COUNT} timed per run, median of ${ROUNDS}; ${version}${
    LEGACY_MD5 ? " (legacy HMAC-MD5 handshake)" : ""
  }, Deno ${Deno.version.deno}`,
);
console.log("| pairing | round trips/s | vs Python-to-Python |");
console.log("| --- | ---: | ---: |");
for (const [name] of scenarios) {
  const value = median(results.get(name)!);
  console.log(
    `| ${name} | ${Math.round(value)} | ${(value / baseline).toFixed(2)}x |`,
  );
}
