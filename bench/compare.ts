/**
 * Side-by-side benchmark of the recipe's servers, in one run on one machine:
 *
 * | server | what |
 * | --- | --- |
 * | `ours` | {@linkcode serve} echo with the Cookbook handshake (`bench/_echo_server.ts`) |
 * | `raw` | a plain Deno TCP echo server, no authentication: the floor cost of a connection |
 * | `py-threaded` | the recipe on `socketserver.ThreadingTCPServer` (`tests/interop/recipe_threaded_server.py`) |
 * | `py-single` | the recipe's single-threaded accept loop (`tests/interop/recipe_echo_server.py`) |
 *
 * Each is driven by the same load generator (`bench/load.ts`: connect +
 * handshake + "Hello World" echo + close), first unloaded and then while
 * 1,000 silent sockets are held open against it. Rounds alternate between
 * servers and the median round is reported, to even out a noisy machine.
 *
 *     deno task bench:compare [--n 5000] [--c 50] [--silent 1000] [--rounds 3] [--time-limit 10000]
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
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    "Usage: deno task bench:compare [--n 5000] [--c 50] [--silent 1000] [--rounds 3] [--time-limit 10000] [--only ours,raw,py-threaded,py-single]",
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

async function measure(
  spec: ServerSpec,
  silent: number,
): Promise<LoadResult> {
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
  return await runLoad({ ...options, total });
}

const results = new Map<string, { plain: LoadResult[]; silent: LoadResult[] }>(
  chosen.map((s) => [s.name, { plain: [], silent: [] }]),
);
console.error(
  `bench: ${total} connections, ${concurrency} at a time, ${rounds} rounds, ${silentCount} silent sockets in the second scenario`,
);
for (let round = 1; round <= rounds; round++) {
  for (const spec of chosen) {
    const plain = await measure(spec, 0);
    results.get(spec.name)!.plain.push(plain);
    console.error(`round ${round} ${spec.name}: ${formatResult(plain)}`);
    if (silentCount > 0) {
      const silent = await measure(spec, silentCount);
      results.get(spec.name)!.silent.push(silent);
      console.error(
        `round ${round} ${spec.name} + ${silentCount} silent: ${
          formatResult(silent)
        }`,
      );
    }
  }
}

function median(list: LoadResult[]): LoadResult | undefined {
  if (list.length === 0) return undefined;
  const sorted = [...list].sort((a, b) => a.rate - b.rate);
  return sorted[Math.floor(sorted.length / 2)];
}

function cell(result: LoadResult | undefined): string {
  if (!result) return "| - | - | - ";
  const note = result.timedOut ? " (stalled)" : "";
  return `| ${result.rate.toFixed(0)}${note} | ${
    Number.isNaN(result.p50) ? "-" : result.p50.toFixed(1)
  } | ${Number.isNaN(result.p99) ? "-" : result.p99.toFixed(1)} `;
}

const table = [
  `| server | conn/s | p50 ms | p99 ms | conn/s, ${silentCount} silent | p50 ms | p99 ms |`,
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
];
for (const spec of chosen) {
  const { plain, silent } = results.get(spec.name)!;
  table.push(`| ${spec.name} ${cell(median(plain))}${cell(median(silent))}|`);
}
console.log(table.join("\n"));

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
ratio(
  `ours with ${silentCount} silent / ours`,
  rate("ours", "silent"),
  ours,
  0.8,
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
