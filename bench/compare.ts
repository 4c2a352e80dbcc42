/**
 * Side-by-side benchmark of the recipe's servers, in one run on one machine:
 *
 * | server | what |
 * | --- | --- |
 * | `ours` | {@linkcode serve} echo with the Cookbook handshake (`bench/_echo_server.ts`) |
 * | `raw` | a plain Deno TCP echo server, no authentication: the floor cost of a connection |
 * | `py-threaded` | the recipe on `socketserver.ThreadingTCPServer` (`tests/interop/recipe_threaded_server.py`) |
 * | `py-single` | the recipe's single-threaded accept loop (`tests/interop/recipe_echo_server.py`) |
 * | `ours-noop` | with `--noop` only: {@linkcode serve} with an authenticator that does nothing, driven without a handshake: the cost of `serve()` itself over `raw` |
 *
 * Each is driven by the same load generator (`bench/load.ts`: connect +
 * handshake + "Hello World" echo + close), first unloaded and then while
 * 1,000 silent sockets are held open against it. Rounds alternate between
 * servers and the median round is reported, to even out a noisy machine.
 * Rates are handshakes per second: each connection does exactly one
 * handshake (`raw` and `ours-noop` none: theirs are connections per second
 * of the same exchange without it).
 *
 *     deno task bench:server [--n 5000] [--c 50] [--silent 1000] [--rounds 3] [--time-limit 10000] [--noop] [--only ours,raw]
 *
 * Targets (ratios, not tests): ours >= 0.85x raw, >= 3.5x py-threaded, and
 * with the silent sockets held >= 0.8x our own unloaded rate.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { findPython, interopScript } from "../tests/_helpers.ts";
import { formatResult, holdSilent, type LoadResult, runLoad } from "./load.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "5000" },
    c: { type: "string", default: "50" },
    silent: { type: "string", default: "1000" },
    rounds: { type: "string", default: "3" },
    "time-limit": { type: "string", default: "10000" },
    only: { type: "string" },
    noop: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    "Usage: deno task bench:server [--n 5000] [--c 50] [--silent 1000] [--rounds 3] [--time-limit 10000] [--noop] [--only ours,raw,py-threaded,py-single,ours-noop]\n\n--noop adds ours-noop: serve() with an authenticator that does nothing, driven without a handshake.",
  );
  Deno.exit(0);
}
const total = Number(values.n);
const concurrency = Number(values.c);
const silentCount = Number(values.silent);
const rounds = Number(values.rounds);
const timeLimit = Number(values["time-limit"]);
// A throwaway key for the benchmark's own servers; never a real secret.
const KEY = "connauth benchmark key";

interface ServerSpec {
  name: string;
  auth: boolean;
  command: string;
  args: string[];
}

const deno = Deno.execPath();
const serverScript = new URL("./_echo_server.ts", import.meta.url).pathname;
const denoArgs = ["run", "--allow-net=127.0.0.1", "--allow-env=CONNAUTH_KEY"];
const python = findPython("3.12") ?? findPython("3");
const specs: ServerSpec[] = [
  {
    name: "ours",
    auth: true,
    command: deno,
    args: [...denoArgs, serverScript, "ours"],
  },
  {
    name: "raw",
    auth: false,
    command: deno,
    args: [...denoArgs, serverScript, "raw"],
  },
];
if (values.noop) {
  specs.push({
    name: "ours-noop",
    auth: false,
    command: deno,
    args: [...denoArgs, serverScript, "ours-noop"],
  });
}
if (python) {
  specs.push(
    {
      name: "py-threaded",
      auth: true,
      command: python,
      args: [interopScript("recipe_threaded_server.py")],
    },
    {
      name: "py-single",
      auth: true,
      command: python,
      args: [interopScript("recipe_echo_server.py")],
    },
  );
} else {
  console.error("warning: no Python 3 found; the Python servers are skipped");
}
const only = values.only?.split(",");
const chosen = only ? specs.filter((s) => only.includes(s.name)) : specs;

async function start(
  spec: ServerSpec,
): Promise<{ child: Deno.ChildProcess; port: number } & AsyncDisposable> {
  const child = new Deno.Command(spec.command, {
    args: spec.args,
    env: { CONNAUTH_KEY: KEY },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + 15_000;
  while (!/port (\d+)/.test(text) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  reader.releaseLock();
  const match = text.match(/port (\d+)/);
  if (!match) {
    child.kill();
    await child.status;
    throw new Error(`Cannot start ${spec.name}: no port line (${text})`);
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  child.stdout.pipeTo(new WritableStream()).catch(() => {});
  return {
    child,
    port: Number(match[1]),
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // exited
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // exited
        }
      }, 5000);
      await child.status;
      clearTimeout(timer);
    },
  };
}

/** A load result plus the server's CPU time per completed connection, µs. */
type Measured = LoadResult & { serverCpu: number };

async function measure(
  spec: ServerSpec,
  silent: number,
): Promise<Measured> {
  await using server = await start(spec);
  const options = {
    port: server.port,
    concurrency,
    auth: spec.auth,
    key: KEY,
    timeLimit,
  };
  // Warm up (JIT, connection paths), not counted.
  await runLoad({ ...options, total: Math.min(500, total), timeLimit: 5000 });
  await using held = holdSilent(server.port, silent);
  await Promise.race([
    held.ready,
    new Promise((resolve) => setTimeout(resolve, 10_000)),
  ]);
  const before = await cpuTime(server.child.pid);
  const result = await runLoad({ ...options, total });
  const after = await cpuTime(server.child.pid);
  const cpu = before === undefined || after === undefined
    ? NaN
    : (after - before) / Math.max(result.completed, 1) * 1000;
  return Object.assign(result, { serverCpu: cpu });
}

/**
 * CPU time (user + system, all threads) of a process in ms, from
 * /proc/PID/stat (Linux; read with `cat`, since Deno wants --allow-all to
 * read /proc itself); undefined elsewhere.
 */
async function cpuTime(pid: number): Promise<number | undefined> {
  try {
    const { stdout, success } = await new Deno.Command("cat", {
      args: [`/proc/${pid}/stat`],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!success) return undefined;
    const stat = new TextDecoder().decode(stdout);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15, in clock ticks (100 per second).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

const results = new Map<string, { plain: Measured[]; silent: Measured[] }>(
  chosen.map((s) => [s.name, { plain: [], silent: [] }]),
);
console.error(
  `bench: ${total} connections, ${concurrency} at a time, ${rounds} rounds, ${silentCount} silent sockets in the second scenario`,
);
for (let round = 1; round <= rounds; round++) {
  for (const spec of chosen) {
    const plain = await measure(spec, 0);
    results.get(spec.name)!.plain.push(plain);
    console.error(
      `round ${round} ${spec.name}: ${formatResult(plain, spec.auth)}`,
    );
    if (silentCount > 0) {
      const silent = await measure(spec, silentCount);
      results.get(spec.name)!.silent.push(silent);
      console.error(
        `round ${round} ${spec.name} + ${silentCount} silent: ${
          formatResult(silent, spec.auth)
        }`,
      );
    }
  }
}

function median(list: Measured[]): Measured | undefined {
  if (list.length === 0) return undefined;
  const sorted = [...list].sort((a, b) => a.rate - b.rate);
  return sorted[Math.floor(sorted.length / 2)];
}

function num(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

function cell(result: Measured | undefined, cpu: boolean): string {
  if (!result) return cpu ? "| - | - | - | - " : "| - | - | - ";
  const note = result.timedOut ? " (stalled)" : "";
  return `| ${result.rate.toFixed(0)}${note} | ${num(result.p50, 1)} | ${
    num(result.p99, 1)
  } ${cpu ? `| ${num(result.serverCpu, 0)} ` : ""}`;
}

const table = [
  `| server | handshakes/s | p50 ms | p99 ms | server CPU µs/conn | handshakes/s, ${silentCount} silent | p50 ms | p99 ms |`,
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
];
for (const spec of chosen) {
  const { plain, silent } = results.get(spec.name)!;
  table.push(
    `| ${spec.name} ${cell(median(plain), true)}${
      cell(median(silent), false)
    }|`,
  );
}
console.log(table.join("\n"));
const noHandshake = chosen.filter((s) => !s.auth).map((s) => s.name);
console.log(
  `\nEach connection does exactly one handshake${
    noHandshake.length > 0
      ? ` (${
        noHandshake.join(" and ")
      }: none; their rate is connections/s of the same exchange without it)`
      : ""
  }.`,
);

const rate = (name: string, kind: "plain" | "silent") =>
  median(results.get(name)?.[kind] ?? [])?.rate;
const ours = rate("ours", "plain");
const lines: string[] = [];
function ratio(label: string, a?: number, b?: number, target?: number) {
  if (a === undefined || b === undefined || b === 0) return;
  const value = a / b;
  lines.push(
    `${label}: ${value.toFixed(2)}x${
      target === undefined
        ? ""
        : ` (target >= ${target}x: ${value >= target ? "met" : "missed"})`
    }`,
  );
}
ratio("ours / raw", ours, rate("raw", "plain"), 0.85);
ratio("ours / py-threaded", ours, rate("py-threaded", "plain"), 3.5);
ratio("ours / py-single", ours, rate("py-single", "plain"));
ratio("ours-noop / raw", rate("ours-noop", "plain"), rate("raw", "plain"));
ratio(
  `ours with ${silentCount} silent / ours`,
  rate("ours", "silent"),
  ours,
  0.8,
);
const cpu = (name: string) => median(results.get(name)?.plain ?? [])?.serverCpu;
const cpuRatio = (label: string, a?: number, b?: number) => {
  if (a && b && Number.isFinite(a) && Number.isFinite(b)) {
    lines.push(`${label}: ${(a / b).toFixed(2)}x`);
  }
};
cpuRatio("server CPU per connection, ours / raw", cpu("ours"), cpu("raw"));
cpuRatio(
  "server CPU per connection, ours-noop / raw",
  cpu("ours-noop"),
  cpu("raw"),
);
cpuRatio(
  "server CPU per connection, py-threaded / ours",
  cpu("py-threaded"),
  cpu("ours"),
);
ratio(
  `raw with ${silentCount} silent / raw`,
  rate("raw", "silent"),
  rate("raw", "plain"),
);
ratio(
  `py-threaded with ${silentCount} silent / py-threaded`,
  rate("py-threaded", "silent"),
  rate("py-threaded", "plain"),
);
console.log("");
console.log(lines.join("\n"));
console.log(
  `\n${Deno.build.target}, ${navigator.hardwareConcurrency} CPUs, Deno ${Deno.version.deno}${
    python ? `, ${python}` : ""
  }; load average ${Deno.loadavg().map((n) => n.toFixed(2)).join(" ")}`,
);
