// Smoke tests of the bench:server command line (bench/compare.ts). They only
// parse flags: no server is started, nothing is built or measured.
import assert from "node:assert/strict";
import {
  DEFAULT_SERVERS,
  median,
  parseFlags,
  SERVERS,
  USAGE,
} from "../bench/compare.ts";
import { BenchError } from "../bench/load.ts";

Deno.test("bench/compare.ts parseFlags() gives the documented defaults", () => {
  const flags = parseFlags([]);
  assert.equal(flags.n, 5000);
  assert.equal(flags.c, 64);
  assert.equal(flags.rounds, 3);
  assert.equal(flags.warmup, 5000);
  assert.equal(flags.deadline, 10);
  assert.equal(flags.timeLimit, 60);
  assert.deepEqual(flags.servers, DEFAULT_SERVERS);
  assert.equal(flags.serverCpu, 0);
  assert.equal(flags.clientCpu, 1);
  assert.equal(flags.pin, true);
  assert.equal(flags.flood, false);
  assert.equal(flags.floodServer, "echo-example");
  assert.deepEqual(flags.scenarios, [
    { addresses: 64, perAddress: 64 },
    { addresses: 8, perAddress: 256 },
  ]);
  assert.deepEqual(flags.rateFlood, { addresses: 64, perAddress: 64 });
  assert.equal(flags.floodSeconds, 25);
  assert.equal(flags.probeInterval, 100);
  assert.match(flags.json, /bench\/results\/server\.json$/);
  assert.match(parseFlags(["--flood"]).json, /server-flood\.json$/);
});

Deno.test("bench/compare.ts parseFlags() reads every flag", () => {
  const flags = parseFlags([
    "--n=100",
    "--c=8",
    "--rounds=5",
    "--warmup=0",
    "--deadline=2.5",
    "--time-limit=30",
    "--servers=serve-rw,floor",
    "--server-cpu=1",
    "--client-cpu=0",
    "--flood",
    "--flood-server=py-threaded",
    "--scenarios=2x3,4x5",
    "--rate-flood=16x16",
    "--flood-seconds=7",
    "--probe-interval=50",
    "--json=/tmp/x.json",
    "--build-only",
  ]);
  assert.deepEqual(
    {
      n: flags.n,
      c: flags.c,
      rounds: flags.rounds,
      warmup: flags.warmup,
      deadline: flags.deadline,
      timeLimit: flags.timeLimit,
      servers: flags.servers,
      serverCpu: flags.serverCpu,
      clientCpu: flags.clientCpu,
      flood: flags.flood,
      floodServer: flags.floodServer,
      scenarios: flags.scenarios,
      rateFlood: flags.rateFlood,
      floodSeconds: flags.floodSeconds,
      probeInterval: flags.probeInterval,
      json: flags.json,
      buildOnly: flags.buildOnly,
    },
    {
      n: 100,
      c: 8,
      rounds: 5,
      warmup: 0,
      deadline: 2.5,
      timeLimit: 30,
      servers: ["serve-rw", "floor"],
      serverCpu: 1,
      clientCpu: 0,
      flood: true,
      floodServer: "py-threaded",
      scenarios: [
        { addresses: 2, perAddress: 3 },
        { addresses: 4, perAddress: 5 },
      ],
      rateFlood: { addresses: 16, perAddress: 16 },
      floodSeconds: 7,
      probeInterval: 50,
      json: "/tmp/x.json",
      buildOnly: true,
    },
  );
  assert.equal(parseFlags(["--no-pin", "--client-cpu=0"]).pin, false);
  assert.equal(parseFlags(["-h"]).help, true);
});

Deno.test("bench/compare.ts parseFlags() refuses bad flags with a one-line message", () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^Cannot parse the command line: .*'--bogus'/],
    [["--n=0"], /^Cannot use --n "0"/],
    [["--c=abc"], /^Cannot use --c "abc"/],
    [["--deadline=-1"], /^Cannot use --deadline "-1"/],
    [["--servers=floor,nope"], /^Cannot measure "nope"/],
    [["--servers=floor,floor"], /a repeat/],
    [["--flood-server=floor"], /^Cannot flood "floor"/],
    [["--scenarios=64"], /^Cannot use --scenarios "64": expected AxS/],
    [["--scenarios=255x1"], /^Cannot use --scenarios "255x1"/],
    [["--rate-flood=200x200"], /at most 16384 sockets/],
    [["--server-cpu=1"], /same CPU/],
  ];
  for (const [args, pattern] of cases) {
    assert.throws(() => parseFlags(args), (error: unknown) => {
      assert.ok(error instanceof BenchError, String(error));
      assert.match(error.message, pattern);
      assert.ok(!error.message.includes("\n"));
      return true;
    }, args.join(" "));
  }
});

Deno.test("bench/compare.ts USAGE lists every flag and every server", () => {
  for (
    const flag of [
      "--servers",
      "--n",
      "--c",
      "--rounds",
      "--warmup",
      "--deadline",
      "--time-limit",
      "--server-cpu",
      "--client-cpu",
      "--no-pin",
      "--flood",
      "--flood-server",
      "--scenarios",
      "--rate-flood",
      "--flood-seconds",
      "--probe-interval",
      "--json",
      "--build-only",
      "--help",
    ]
  ) {
    assert.ok(USAGE.includes(`${flag} `) || USAGE.includes(`${flag}\n`), flag);
  }
  for (const name of Object.keys(SERVERS)) assert.ok(USAGE.includes(name));
});

Deno.test("bench/compare.ts median() takes the middle (lower middle) value", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2);
  assert.ok(Number.isNaN(median([])));
});
