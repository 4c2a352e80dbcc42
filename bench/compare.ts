/**
 * `deno task bench:server`: `serve()` next to its floors and the Python
 * recipe, measured with a C client on its own CPU. See bench/README.md for
 * what each number means and today's table.
 *
 * Servers (`--servers`, in the order given; the first five by default):
 *
 * | name | what | load |
 * | --- | --- | --- |
 * | `floor` | `Deno.listen`, `conn.read()`/`conn.write()` echo, no auth | raw |
 * | `handshake-loop` | the floor plus the bare Cookbook handshake (no `serve()`) | auth |
 * | `pipeto-floor` | the floor with a `readable.pipeTo(writable)` echo | raw |
 * | `echo-example` | `examples/echo_server.ts` as shipped, default limits | auth |
 * | `py-threaded` | the recipe on `socketserver.ThreadingTCPServer` | auth |
 * | `serve-rw` | `serve()`, default limits, `read()`/`write()` echo | auth |
 * | `serve-noop` | `serve()` with a no-op authenticator, same echo | raw |
 * | `py-single` | the recipe's single-threaded accept loop | auth |
 *
 * Each server runs pinned to `--server-cpu` (taskset), and the load
 * generator (`bench/connload.c`, built on first use) and this script to
 * `--client-cpu`. Every server is started once and warmed up once, then the
 * rounds alternate between them; the table gives medians, min-max and the
 * ratios of echo-example to floor, to handshake-loop and to py-threaded.
 *
 * `--flood` measures fairness instead, against `--flood-server`
 * (echo-example): for each `--scenarios` entry AxS, `bench/flood.c` holds A
 * source addresses (127.0.1.1 up) x S silent sockets, re-opened as soon as
 * the server closes them, while a good client from 127.0.0.1 connects, does
 * the handshake and the echo every `--probe-interval` ms for
 * `--flood-seconds`; then the handshake rate unloaded and with the
 * `--rate-flood` sockets held, alternating for `--rounds` rounds.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { findPython, interopScript } from "../tests/_helpers.ts";
import {
  BenchError,
  buildTools,
  type FloodStatus,
  kill,
  killAll,
  lines,
  type LoadResult,
  pinned,
  RESULTS,
  runBounded,
  runLoad,
  startFlood,
  type Tools,
  track,
  which,
} from "./load.ts";

/** The servers this benchmark knows: how each is driven and what it is. */
export const SERVERS: Record<string, { mode: "auth" | "raw"; what: string }> = {
  floor: {
    mode: "raw",
    what: "Deno.listen, read()/write() echo, no auth",
  },
  "handshake-loop": {
    mode: "auth",
    what: "floor + bare Cookbook handshake, no serve()",
  },
  "pipeto-floor": {
    mode: "raw",
    what: "floor with a readable.pipeTo(writable) echo",
  },
  "echo-example": {
    mode: "auth",
    what: "examples/echo_server.ts as shipped (serve(), default limits)",
  },
  "py-threaded": {
    mode: "auth",
    what: "Python ThreadingTCPServer recipe",
  },
  "py-single": {
    mode: "auth",
    what: "Python single-threaded recipe (one client at a time)",
  },
  "serve-rw": {
    mode: "auth",
    what: "serve(), default limits, read()/write() echo",
  },
  "serve-noop": {
    mode: "raw",
    what: "serve() with a no-op authenticator, read()/write() echo",
  },
};

/** The servers measured without `--servers`. */
export const DEFAULT_SERVERS: string[] = [
  "floor",
  "handshake-loop",
  "pipeto-floor",
  "echo-example",
  "py-threaded",
];

/** The parsed command line. */
export interface Flags {
  /** Print the usage and exit. */
  help: boolean;
  /** Build the C tools, print their paths and exit. */
  buildOnly: boolean;
  /** Connections per measured run. */
  n: number;
  /** Connections at a time. */
  c: number;
  /** Rounds (each server once per round). */
  rounds: number;
  /** Connections in each server's warm-up run. */
  warmup: number;
  /** Per-connection deadline, seconds. */
  deadline: number;
  /** Start no connection after this many seconds of a run. */
  timeLimit: number;
  /** Servers to measure, in order. */
  servers: string[];
  /** CPU of the servers. */
  serverCpu: number;
  /** CPU of the load generator, the flooder and this script. */
  clientCpu: number;
  /** Pin with taskset. */
  pin: boolean;
  /** Run the fairness scenarios instead of the comparison. */
  flood: boolean;
  /** The server the flood scenarios measure. */
  floodServer: string;
  /** Flood layouts, addresses x sockets per address. */
  scenarios: { addresses: number; perAddress: number }[];
  /** The layout held while the flooded handshake rate is measured. */
  rateFlood: { addresses: number; perAddress: number };
  /** How long the good client probes each scenario, seconds. */
  floodSeconds: number;
  /** Pause between the good client's connections, ms. */
  probeInterval: number;
  /** Where the results go (JSON). */
  json: string;
}

/** The usage text. */
export const USAGE = `Usage: deno task bench:server [options]

Measures serve() (examples/echo_server.ts) next to a plain Deno echo (floor),
the bare handshake loop and the Python recipe, with a C load generator;
server and load pinned to separate CPUs; medians of alternating rounds.

Options:
  --servers LIST        comma-separated, in order (default
                        ${DEFAULT_SERVERS.join(",")});
                        also: serve-rw, serve-noop, py-single
  --n N                 connections per measured run (default 5000)
  --c C                 connections at a time (default 64)
  --rounds R            alternating rounds (default 3)
  --warmup N            connections in each server's one warm-up run
                        (default 5000; 0 for none)
  --deadline S          per-connection deadline in seconds (default 10)
  --time-limit S        start no connection after S seconds of a run
                        (default 60)
  --server-cpu K        CPU for the servers (default 0)
  --client-cpu K        CPU for the load generator and this script (default 1)
  --no-pin              do not pin (no taskset); numbers are then unfair
  --flood               run the fairness scenarios instead (see below)
  --flood-server NAME   server for --flood (default echo-example)
  --scenarios LIST      flood layouts AxS: A addresses (127.0.1.1 up) x S
                        silent sockets each (default 64x64,8x256)
  --rate-flood AxS      silent sockets held while the flooded handshake rate
                        is measured (default 64x64: 4,096)
  --flood-seconds S     how long the good client probes each scenario, and
                        the time limit of a flooded rate run (default 25)
  --probe-interval MS   pause between the good client's connections
                        (default 100)
  --json PATH           write the results there (default
                        bench/results/server.json, or server-flood.json)
  --build-only          build the C tools into bench/results/, print their
                        paths and exit
  -h, --help            this text`;

function positiveInt(
  text: string,
  flag: string,
  min = 1,
  max = 10_000_000,
): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BenchError(
      `Cannot use --${flag} "${text}": expected a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

function positiveNumber(text: string, flag: string, max = 3600): number {
  const value = Number(text);
  if (!(value > 0 && value <= max)) {
    throw new BenchError(
      `Cannot use --${flag} "${text}": expected a number above 0, at most ${max}`,
    );
  }
  return value;
}

function layout(
  text: string,
  flag: string,
): { addresses: number; perAddress: number } {
  const match = /^(\d+)x(\d+)$/.exec(text.trim());
  if (!match) {
    throw new BenchError(
      `Cannot use --${flag} "${text}": expected AxS, e.g. 64x64`,
    );
  }
  const addresses = Number(match[1]);
  const perAddress = Number(match[2]);
  // 127.0.1.1 up: at most 254 addresses stay in 127.0.1.0/24.
  if (
    addresses < 1 || addresses > 254 || perAddress < 1 ||
    addresses * perAddress > 16_384
  ) {
    throw new BenchError(
      `Cannot use --${flag} "${text}": expected 1 to 254 addresses and at most 16384 sockets in all`,
      2,
    );
  }
  return { addresses, perAddress };
}

/**
 * Parses the command line.
 *
 * @throws {BenchError} On an unknown flag or a bad value.
 */
export function parseFlags(args: string[]): Flags {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        help: { type: "boolean", short: "h", default: false },
        "build-only": { type: "boolean", default: false },
        n: { type: "string", default: "5000" },
        c: { type: "string", default: "64" },
        rounds: { type: "string", default: "3" },
        warmup: { type: "string", default: "5000" },
        deadline: { type: "string", default: "10" },
        "time-limit": { type: "string", default: "60" },
        servers: { type: "string", default: DEFAULT_SERVERS.join(",") },
        "server-cpu": { type: "string", default: "0" },
        "client-cpu": { type: "string", default: "1" },
        "no-pin": { type: "boolean", default: false },
        flood: { type: "boolean", default: false },
        "flood-server": { type: "string", default: "echo-example" },
        scenarios: { type: "string", default: "64x64,8x256" },
        "rate-flood": { type: "string", default: "64x64" },
        "flood-seconds": { type: "string", default: "25" },
        "probe-interval": { type: "string", default: "100" },
        json: { type: "string" },
      },
    }));
  } catch (error) {
    throw new BenchError(
      `Cannot parse the command line: ${(error as Error).message}; see --help`,
    );
  }
  const servers = values.servers.split(",").map((s) => s.trim()).filter((s) =>
    s
  );
  for (const name of [...servers, values["flood-server"]]) {
    if (!(name in SERVERS)) {
      throw new BenchError(
        `Cannot measure "${name}": expected one of ${
          Object.keys(SERVERS).join(", ")
        }`,
      );
    }
  }
  if (servers.length === 0) {
    throw new BenchError("Cannot use --servers: name at least one server");
  }
  if (new Set(servers).size !== servers.length) {
    throw new BenchError(`Cannot use --servers "${values.servers}": a repeat`);
  }
  if (SERVERS[values["flood-server"]].mode !== "auth") {
    throw new BenchError(
      `Cannot flood "${
        values["flood-server"]
      }": the good client does the handshake; pick a server that authenticates`,
    );
  }
  const flood = values.flood;
  const n = positiveInt(values.n, "n");
  const c = positiveInt(values.c, "c", 1, 10_000);
  const flags: Flags = {
    help: values.help,
    buildOnly: values["build-only"],
    n,
    c,
    rounds: positiveInt(values.rounds, "rounds", 1, 100),
    warmup: positiveInt(values.warmup, "warmup", 0),
    deadline: positiveNumber(values.deadline, "deadline"),
    timeLimit: positiveNumber(values["time-limit"], "time-limit"),
    servers,
    serverCpu: positiveInt(values["server-cpu"], "server-cpu", 0, 1023),
    clientCpu: positiveInt(values["client-cpu"], "client-cpu", 0, 1023),
    pin: !values["no-pin"],
    flood,
    floodServer: values["flood-server"],
    scenarios: values.scenarios.split(",").map((s) => layout(s, "scenarios")),
    rateFlood: layout(values["rate-flood"], "rate-flood"),
    floodSeconds: positiveNumber(values["flood-seconds"], "flood-seconds"),
    probeInterval: positiveInt(
      values["probe-interval"],
      "probe-interval",
      0,
      60_000,
    ),
    json: values.json ??
      `${RESULTS}${flood ? "server-flood.json" : "server.json"}`,
  };
  if (flags.pin && flags.serverCpu === flags.clientCpu) {
    throw new BenchError(
      `Cannot pin the server and the load to the same CPU (${flags.serverCpu}); pick two with --server-cpu and --client-cpu`,
    );
  }
  return flags;
}

/** The median of `values` (the lower middle one for an even count). */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

// A throwaway key for the benchmark's servers and clients; never a real
// secret.
const KEY = "connauth benchmark key";

const log = (line: string) => console.error(line);

/** Idle time after each warm-up run, ms. */
const WARMUP_PAUSE_MS = 1500;

/** A server under test. */
interface Server {
  name: string;
  port: number;
  pid: number;
  /** Counts of the first word of each stderr line (echo-example's log). */
  logCounts: Map<string, number>;
  /** The last stderr lines, for errors. */
  lastLines: string[];
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

const ROOT = new URL("../", import.meta.url).pathname;

function serverCommand(
  name: string,
  python: string | null,
): { command: string; args: string[]; portLine: RegExp } {
  const deno = Deno.execPath();
  if (name === "echo-example") {
    const port = freePort();
    return {
      command: deno,
      args: [
        "run",
        `--allow-net=127.0.0.1:${port}`,
        "--allow-env=CONNAUTH_SECRET",
        `${ROOT}examples/echo_server.ts`,
        "--port",
        String(port),
      ],
      portLine: /listening on 127\.0\.0\.1:(\d+)/,
    };
  }
  if (name === "py-threaded" || name === "py-single") {
    const script = name === "py-threaded"
      ? "recipe_threaded_server.py"
      : "recipe_echo_server.py";
    return {
      command: python!,
      args: [interopScript(script)],
      portLine: /^port (\d+)/,
    };
  }
  return {
    command: deno,
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env=CONNAUTH_SECRET",
      `${ROOT}bench/_echo_server.ts`,
      name,
    ],
    portLine: /^port (\d+)/,
  };
}

async function startServer(
  name: string,
  flags: Flags,
  python: string | null,
): Promise<Server> {
  const spec = serverCommand(name, python);
  const [command, args] = pinned(
    flags.pin ? flags.serverCpu : null,
    spec.command,
    spec.args,
  );
  const child = track(
    new Deno.Command(command, {
      args,
      env: { CONNAUTH_SECRET: KEY },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  const logCounts = new Map<string, number>();
  const lastLines: string[] = [];
  const listening = Promise.withResolvers<number>();
  const watch = async (stream: ReadableStream<Uint8Array>, count: boolean) => {
    for await (const line of lines(stream)) {
      const match = spec.portLine.exec(line);
      if (match) listening.resolve(Number(match[1]));
      if (count) {
        const word = line.slice(0, line.indexOf(" ") >>> 0);
        logCounts.set(word, (logCounts.get(word) ?? 0) + 1);
        lastLines.push(line);
        if (lastLines.length > 5) lastLines.shift();
      }
    }
  };
  const reading = Promise.all([
    watch(child.stdout, false),
    watch(child.stderr, true),
  ]).catch(() => {});
  child.status.then(() => listening.reject(new Error("exited")));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no port line in 30 s")), 30_000);
  });
  let port: number;
  try {
    port = await Promise.race([listening.promise, late]);
  } catch (error) {
    await kill(child, 1000);
    await reading;
    throw new BenchError(
      `Cannot start ${name}: ${(error as Error).message}${
        lastLines.length ? ` (${lastLines.at(-1)})` : ""
      }`,
    );
  } finally {
    clearTimeout(timer);
  }
  return {
    name,
    port,
    pid: child.pid,
    logCounts,
    lastLines,
    async stop() {
      await kill(child);
      await reading;
    },
  };
}

/**
 * CPU time (user + system, all threads) of a process in ms, from
 * /proc/PID/stat, read with `cat` (Deno wants --allow-all to read /proc
 * itself); NaN when it cannot be read.
 */
async function cpuTime(pid: number): Promise<number> {
  try {
    const out = await runBounded("cat", [`/proc/${pid}/stat`], 5000);
    if (!out.success) return NaN;
    const stat = new TextDecoder().decode(out.stdout);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime, fields 14 and 15, in clock ticks (100 per second).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

async function machine(): Promise<string> {
  let cpu = "";
  try {
    const out = await runBounded("cat", ["/proc/cpuinfo"], 5000);
    cpu = /model name\s*:\s*(.*)/.exec(new TextDecoder().decode(out.stdout))
      ?.[1] ?? "";
  } catch {
    // not Linux
  }
  return `${Deno.build.target}, ${navigator.hardwareConcurrency} CPUs${
    cpu ? ` (${cpu})` : ""
  }, Deno ${Deno.version.deno}`;
}

function loadavg(): string {
  try {
    return Deno.loadavg().map((n) => n.toFixed(2)).join(" ");
  } catch {
    return "?";
  }
}

function fmt(value: number, digits = 0): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

/** One measured run of one server. */
interface Run {
  round: number;
  server: string;
  result: LoadResult;
  /** Server CPU per ok connection, µs. */
  serverCpu: number;
}

function loadOptions(flags: Flags) {
  return {
    key: KEY,
    deadline: flags.deadline,
    cpu: flags.pin ? flags.clientCpu : null,
  };
}

function describe(result: LoadResult): string {
  return `${fmt(result.rate)} conn/s, p50 ${fmt(result.p50_ms, 2)} ms, p99 ${
    fmt(result.p99_ms, 2)
  } ms, load generator CPU ${fmt(100 * result.cpu_s / result.elapsed_s)}%${
    result.errors ? `, ${result.errors} errors (${result.first_error})` : ""
  }${
    result.unfinished
      ? `, ${result.unfinished} not started (time limit) or cut off`
      : ""
  }`;
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

async function warmUp(
  server: Server,
  tools: Tools,
  flags: Flags,
): Promise<void> {
  if (flags.warmup === 0) return;
  const result = await runLoad(tools, {
    ...loadOptions(flags),
    port: server.port,
    n: flags.warmup,
    c: flags.c,
    mode: SERVERS[server.name].mode,
    timeLimit: flags.timeLimit,
  });
  log(`warm-up ${server.name}: ${describe(result)}`);
  // Let the JIT's background compiles and the GC that the warm-up started
  // finish: they run on the server's CPU and would slow the next run.
  await new Promise((resolve) => setTimeout(resolve, WARMUP_PAUSE_MS));
}

async function compare(
  tools: Tools,
  flags: Flags,
  python: string | null,
): Promise<boolean> {
  const started = new Date();
  const loadBefore = loadavg();
  log(
    `bench:server: ${flags.n} connections, ${flags.c} at a time, ${
      plural(flags.rounds, "round")
    }; ${
      flags.pin
        ? `servers on CPU ${flags.serverCpu}, load on CPU ${flags.clientCpu}`
        : "not pinned"
    }; load average ${loadBefore}`,
  );
  const servers: Server[] = [];
  for (const name of flags.servers) {
    const server = await startServer(name, flags, python);
    servers.push(server);
    await warmUp(server, tools, flags);
  }
  const runs: Run[] = [];
  for (let round = 1; round <= flags.rounds; round++) {
    // Rotate the order each round so no server always runs first.
    const shift = (round - 1) % servers.length;
    const order = [...servers.slice(shift), ...servers.slice(0, shift)];
    for (const server of order) {
      const before = await cpuTime(server.pid);
      const result = await runLoad(tools, {
        ...loadOptions(flags),
        port: server.port,
        n: flags.n,
        c: flags.c,
        mode: SERVERS[server.name].mode,
        timeLimit: flags.timeLimit,
      });
      const after = await cpuTime(server.pid);
      const serverCpu = (after - before) * 1000 / Math.max(result.ok, 1);
      runs.push({ round, server: server.name, result, serverCpu });
      log(
        `round ${round} ${server.name}: ${describe(result)}, server CPU ${
          fmt(serverCpu)
        } µs/conn`,
      );
    }
  }
  const logs = Object.fromEntries(
    servers.map((s) => [s.name, Object.fromEntries(s.logCounts)]),
  );
  for (const server of servers) await server.stop();
  const loadAfter = loadavg();

  const rates = (name: string) =>
    runs.filter((r) => r.server === name).map((r) => r.result.rate);
  const table = [
    "| server | what | connections/s (median) | min-max | p50 ms | p99 ms | server CPU µs/conn | load generator CPU | failed | unfinished |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  let clean = true;
  for (const name of flags.servers) {
    const mine = runs.filter((r) => r.server === name);
    const failed = mine.reduce((sum, r) => sum + r.result.errors, 0);
    const unfinished = mine.reduce((sum, r) => sum + r.result.unfinished, 0);
    if (failed > 0) clean = false;
    const list = rates(name);
    table.push(
      `| ${name}${failed ? " !" : ""} | ${SERVERS[name].what} | ${
        fmt(median(list))
      } | ${fmt(Math.min(...list))}-${fmt(Math.max(...list))} | ${
        fmt(median(mine.map((r) => r.result.p50_ms)), 1)
      } | ${fmt(median(mine.map((r) => r.result.p99_ms)), 1)} | ${
        fmt(median(mine.map((r) => r.serverCpu)))
      } | ${
        fmt(
          median(mine.map((r) => 100 * r.result.cpu_s / r.result.elapsed_s)),
        )
      }% | ${failed} | ${unfinished} |`,
    );
  }
  const ratios = [
    "| ratio | connections/s, of medians | per round, min-max | server CPU per connection, b / a |",
    "| --- | ---: | ---: | ---: |",
  ];
  const ratioList: Record<string, number> = {};
  const pairs: [string, string][] = [
    ["echo-example", "floor"],
    ["echo-example", "handshake-loop"],
    ["echo-example", "py-threaded"],
    ["handshake-loop", "floor"],
    ["pipeto-floor", "floor"],
    ["serve-rw", "handshake-loop"],
    ["echo-example", "serve-rw"],
    ["serve-noop", "floor"],
  ];
  for (const [a, b] of pairs) {
    if (!flags.servers.includes(a) || !flags.servers.includes(b)) continue;
    const value = median(rates(a)) / median(rates(b));
    const perRound = [];
    for (let round = 1; round <= flags.rounds; round++) {
      const ra = runs.find((r) => r.round === round && r.server === a);
      const rb = runs.find((r) => r.round === round && r.server === b);
      if (ra && rb) perRound.push(ra.result.rate / rb.result.rate);
    }
    const cpu = (name: string) =>
      median(runs.filter((r) => r.server === name).map((r) => r.serverCpu));
    // The CPU ratio is inverted so that, like the rate, below 1 is slower.
    const cpuRatio = cpu(b) / cpu(a);
    ratioList[`${a} / ${b}`] = value;
    ratios.push(
      `| ${a} / ${b} | ${fmt(value, 2)}x | ${fmt(Math.min(...perRound), 2)}-${
        fmt(Math.max(...perRound), 2)
      }x | ${fmt(cpuRatio, 2)}x |`,
    );
  }
  const footer = `${started.toISOString()}, ${await machine()}${
    python ? `, ${python}` : ""
  }; ${flags.n} connections, ${flags.c} at a time, medians of ${flags.rounds} alternating round${
    flags.rounds === 1 ? "" : "s"
  }${
    flags.pin
      ? `, servers on CPU ${flags.serverCpu}, load on CPU ${flags.clientCpu}`
      : ", not pinned"
  }; load average ${loadBefore} before, ${loadAfter} after`;
  console.log(table.join("\n"));
  if (ratios.length > 2) console.log(`\n${ratios.join("\n")}`);
  console.log(`\n${footer}`);
  if (!clean) {
    const first = runs.find((r) => r.result.errors > 0);
    console.log(
      `\n! some connections failed (first: ${first?.server}: ${first?.result.first_error}); those rows are not comparable`,
    );
  }
  writeJson(flags.json, {
    kind: "compare",
    date: started.toISOString(),
    machine: await machine(),
    python,
    flags,
    loadavg: { before: loadBefore, after: loadAfter },
    runs: runs.map((r) => ({ ...r, result: r.result })),
    medians: Object.fromEntries(
      flags.servers.map((name) => [name, median(rates(name))]),
    ),
    ratios: ratioList,
    serverLogs: logs,
  });
  return clean;
}

function writeJson(path: string, value: unknown): void {
  try {
    Deno.writeTextFileSync(path, JSON.stringify(value, null, 2) + "\n");
    log(`results written to ${path}`);
  } catch (error) {
    log(`warning: cannot write ${path}: ${(error as Error).message}`);
  }
}

/** What the good client saw during one flood scenario. */
interface ProbeSummary {
  scenario: string;
  probes: number;
  servedWithin1s: number;
  firstMs: number;
  p50Ms: number;
  maxOkMs: number;
  failed: number;
  failures: Record<string, number>;
  heldAtStart: number;
  heldMin: number;
  heldMax: number;
  /** Silent sockets the server closed while the good client probed. */
  closedByServer: number;
  /** The flooder's CPU use over its run, % of one CPU. */
  floodCpuPercent: number;
  /** echo-example's log lines while the good client probed, by first word. */
  serverLog: Record<string, number>;
}

/** A latency cell: "failed" for a failed connection (-1). */
function latencyCell(value: number): string {
  return value < 0 ? "failed" : fmt(value, 1);
}

function summarizeProbe(
  scenario: string,
  probe: LoadResult,
  statuses: FloodStatus[],
  serverLog: Record<string, number>,
  window: [number, number],
): ProbeSummary {
  const latencies = probe.lat_ms ?? [];
  const ok = latencies.filter((l) => l >= 0);
  const failures: Record<string, number> = {};
  for (const reason of probe.fail ?? []) {
    if (reason) failures[reason] = (failures[reason] ?? 0) + 1;
  }
  const during = statuses.filter((s) =>
    s.t >= window[0] && s.t <= window[1] && !s.final
  );
  const held = during.map((s) => s.held);
  const last = statuses.at(-1);
  const closed = during.length
    ? during.at(-1)!.closed_by_server - during[0].closed_by_server
    : NaN;
  return {
    scenario,
    probes: latencies.length,
    servedWithin1s: probe.within ?? 0,
    firstMs: latencies[0] ?? NaN,
    p50Ms: median(ok),
    maxOkMs: ok.length ? Math.max(...ok) : NaN,
    failed: latencies.length - ok.length,
    failures,
    heldAtStart: during[0]?.held ?? NaN,
    heldMin: held.length ? Math.min(...held) : NaN,
    heldMax: held.length ? Math.max(...held) : NaN,
    closedByServer: closed,
    floodCpuPercent: last ? 100 * last.cpu_s / last.t : NaN,
    serverLog,
  };
}

function countsSince(
  now: Map<string, number>,
  before: Map<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [word, count] of now) {
    const delta = count - (before.get(word) ?? 0);
    if (delta) out[word] = delta;
  }
  return out;
}

async function floodScenario(
  tools: Tools,
  flags: Flags,
  python: string | null,
  shape: { addresses: number; perAddress: number },
): Promise<ProbeSummary> {
  const scenario = `${shape.addresses}x${shape.perAddress}`;
  const server = await startServer(flags.floodServer, flags, python);
  try {
    await warmUp(server, tools, flags);
    const logBefore = new Map(server.logCounts);
    const floodStart = performance.now();
    const flood = startFlood(tools, {
      port: server.port,
      ...shape,
      cpu: flags.pin ? flags.clientCpu : null,
      timeLimit: Math.ceil(flags.floodSeconds + flags.deadline + 60),
    });
    let stopped = false;
    try {
      const ready = await flood.settle(15_000);
      const status = flood.statuses.at(-1);
      log(
        `flood ${scenario}: ${
          ready ? "all held" : "not all held (the server stopped taking them)"
        }: held ${status?.held ?? 0}, connecting ${
          status?.connecting ?? 0
        }; probing`,
      );
      const probeStart = (performance.now() - floodStart) / 1000;
      const probe = await runLoad(tools, {
        ...loadOptions(flags),
        port: server.port,
        n: Math.ceil(flags.floodSeconds * 1000 / flags.probeInterval) + 1,
        c: 1,
        mode: "auth",
        timeLimit: flags.floodSeconds,
        interval: flags.probeInterval,
        within: 1000,
        list: true,
      });
      const probeEnd = (performance.now() - floodStart) / 1000;
      await flood.stop();
      stopped = true;
      const summary = summarizeProbe(
        scenario,
        probe,
        flood.statuses,
        countsSince(server.logCounts, logBefore),
        [probeStart, probeEnd],
      );
      log(
        `flood ${scenario}: good client ${summary.servedWithin1s}/${summary.probes} served within 1 s, first ${
          latencyCell(summary.firstMs)
        }${summary.firstMs < 0 ? "" : " ms"}, p50 ${
          fmt(summary.p50Ms, 1)
        } ms, max ${fmt(summary.maxOkMs, 1)} ms, ${summary.failed} failed ${
          JSON.stringify(summary.failures)
        }; silent held ${summary.heldMin}-${summary.heldMax}, ${summary.closedByServer} closed by the server; server log ${
          JSON.stringify(summary.serverLog)
        }; flooder CPU ${fmt(summary.floodCpuPercent)}%`,
      );
      return summary;
    } finally {
      if (!stopped) await flood.stop().catch(() => {});
    }
  } finally {
    await server.stop();
  }
}

async function floodRate(
  tools: Tools,
  flags: Flags,
  python: string | null,
): Promise<
  { unloaded: LoadResult[]; flooded: LoadResult[]; held: number[] }
> {
  const shape = flags.rateFlood;
  const total = shape.addresses * shape.perAddress;
  const unloaded: LoadResult[] = [];
  const flooded: LoadResult[] = [];
  const held: number[] = [];
  for (let round = 1; round <= flags.rounds; round++) {
    const order = round % 2 === 1
      ? ["unloaded", "flooded"]
      : ["flooded", "unloaded"];
    for (const kind of order) {
      // A fresh, warmed-up server for each run: one that was just flooded
      // still has dead sockets in its backlog and handshakes to time out.
      const server = await startServer(flags.floodServer, flags, python);
      try {
        await warmUp(server, tools, flags);
        const options = {
          ...loadOptions(flags),
          port: server.port,
          n: flags.n,
          c: flags.c,
          mode: "auth" as const,
          timeLimit: flags.floodSeconds,
        };
        if (kind === "unloaded") {
          const result = await runLoad(tools, options);
          unloaded.push(result);
          log(`rate round ${round} unloaded: ${describe(result)}`);
          continue;
        }
        const flood = startFlood(tools, {
          port: server.port,
          ...shape,
          cpu: flags.pin ? flags.clientCpu : null,
          timeLimit: Math.ceil(flags.floodSeconds + flags.deadline + 60),
        });
        try {
          await flood.settle(15_000);
          const status = flood.statuses.at(-1);
          held.push(status?.held ?? 0);
          const result = await runLoad(tools, options);
          flooded.push(result);
          log(
            `rate round ${round} with ${total} silent (held ${
              status?.held ?? 0
            } at start): ${describe(result)}`,
          );
        } finally {
          await flood.stop();
        }
      } finally {
        await server.stop();
      }
    }
  }
  return { unloaded, flooded, held };
}

async function floodMode(
  tools: Tools,
  flags: Flags,
  python: string | null,
): Promise<boolean> {
  const started = new Date();
  const loadBefore = loadavg();
  log(
    `bench:server --flood against ${flags.floodServer}: scenarios ${
      flags.scenarios.map((s) => `${s.addresses}x${s.perAddress}`).join(", ")
    }, ${flags.floodSeconds} s each; load average ${loadBefore}`,
  );
  const summaries: ProbeSummary[] = [];
  for (const shape of flags.scenarios) {
    summaries.push(await floodScenario(tools, flags, python, shape));
  }
  const rate = await floodRate(tools, flags, python);
  const loadAfter = loadavg();
  const total = flags.rateFlood.addresses * flags.rateFlood.perAddress;

  const table = [
    "| silent sockets (addresses x each) | good client probes | served within 1 s | first ms | p50 ms | max ms (ok) | failed | silent held (min-max) | closed by server | verdict |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const s of summaries) {
    const met = s.probes > 0 && s.servedWithin1s === s.probes;
    table.push(
      `| ${s.scenario} | ${s.probes} | ${s.servedWithin1s} | ${
        latencyCell(s.firstMs)
      } | ${fmt(s.p50Ms, 1)} | ${fmt(s.maxOkMs, 1)} | ${s.failed} | ${
        fmt(s.heldMin)
      }-${fmt(s.heldMax)} | ${fmt(s.closedByServer)} | ${
        met ? "met" : "missed"
      } |`,
    );
  }
  const unloadedRate = median(rate.unloaded.map((r) => r.rate));
  const floodedRate = median(rate.flooded.map((r) => r.rate));
  const ratio = floodedRate / unloadedRate;
  const failed = (list: LoadResult[]) =>
    list.reduce((sum, r) => sum + r.errors + r.unfinished, 0);
  const rateTable = [
    "| load | handshakes/s (median) | min-max | p50 ms | p99 ms | failed or unfinished |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (
    const [label, list] of [
      ["unloaded", rate.unloaded],
      [`${total} silent sockets held`, rate.flooded],
    ] as const
  ) {
    const rates = list.map((r) => r.rate);
    rateTable.push(
      `| ${label} | ${fmt(median(rates))} | ${fmt(Math.min(...rates))}-${
        fmt(Math.max(...rates))
      } | ${fmt(median(list.map((r) => r.p50_ms)), 1)} | ${
        fmt(median(list.map((r) => r.p99_ms)), 1)
      } | ${failed(list)} |`,
    );
  }
  const footer =
    `${started.toISOString()}, ${await machine()}; ${flags.floodServer}; probes every ${flags.probeInterval} ms for ${flags.floodSeconds} s from 127.0.0.1, silent sockets from 127.0.1.x; rate: ${flags.n} connections, ${flags.c} at a time, medians of ${flags.rounds} alternating round${
      flags.rounds === 1 ? "" : "s"
    }${
      flags.pin
        ? `, server on CPU ${flags.serverCpu}, clients on CPU ${flags.clientCpu}`
        : ", not pinned"
    }; load average ${loadBefore} before, ${loadAfter} after`;
  console.log(table.join("\n"));
  console.log("");
  console.log(rateTable.join("\n"));
  console.log(
    `\nhandshake rate with ${total} silent sockets held / unloaded: ${
      fmt(ratio, 2)
    }x (target >= 0.8x: ${ratio >= 0.8 ? "met" : "missed"})`,
  );
  console.log(`\n${footer}`);
  writeJson(flags.json, {
    kind: "flood",
    date: started.toISOString(),
    machine: await machine(),
    flags,
    loadavg: { before: loadBefore, after: loadAfter },
    scenarios: summaries,
    rate: { ...rate, ratio },
  });
  return true;
}

async function main(): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(Deno.args);
  } catch (error) {
    // Every error of the command line exits 2.
    if (error instanceof BenchError) error.exitCode = 2;
    throw error;
  }
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const tools = await buildTools(log);
  if (flags.buildOnly) {
    console.log(`${tools.connload}\n${tools.flood}`);
    return 0;
  }
  if (flags.pin) {
    if (!which("taskset")) {
      throw new BenchError(
        "Cannot pin the servers and the load generator to CPUs: taskset not found; install util-linux (Debian/Ubuntu: apt-get install util-linux) or pass --no-pin",
      );
    }
    const cpus = navigator.hardwareConcurrency;
    const highest = Math.max(flags.serverCpu, flags.clientCpu);
    if (highest >= cpus) {
      throw new BenchError(
        `Cannot pin to CPU ${highest}: this machine has ${cpus} (0 to ${
          cpus - 1
        }); pick others with --server-cpu and --client-cpu, or pass --no-pin`,
      );
    }
    // This script shares the load generator's CPU, not the server's.
    const out = await runBounded("taskset", [
      "-a",
      "-p",
      "-c",
      String(flags.clientCpu),
      String(Deno.pid),
    ], 5000);
    if (!out.success) {
      throw new BenchError(
        `Cannot pin this script to CPU ${flags.clientCpu}: ${
          new TextDecoder().decode(out.stderr).trim()
        }`,
      );
    }
  } else {
    log(
      "warning: --no-pin: servers and load share the CPUs; ratios are skewed",
    );
  }
  const wanted = flags.flood ? [flags.floodServer] : flags.servers;
  let python: string | null = null;
  if (wanted.some((name) => name.startsWith("py-"))) {
    python = findPython("3.12") ?? findPython("3");
    if (!python) {
      throw new BenchError(
        "Cannot run the Python servers: no Python 3 found; install python3 (or set CONNAUTH_PYTHON_3), or leave them out with --servers",
      );
    }
  }
  const ok = flags.flood
    ? await floodMode(tools, flags, python)
    : await compare(tools, flags, python);
  return ok ? 0 : 1;
}

if (import.meta.main) {
  let exiting = false;
  const onSignal = async () => {
    if (exiting) return;
    exiting = true;
    log("bench:server: interrupted; stopping the servers and clients");
    await killAll();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let code = 1;
  try {
    code = await main();
  } catch (error) {
    if (error instanceof BenchError) {
      console.error(`bench:server: ${error.message}`);
      code = error.exitCode;
    } else {
      console.error(error);
    }
  } finally {
    await killAll();
  }
  Deno.exit(code);
}
