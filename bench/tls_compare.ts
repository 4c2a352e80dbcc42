/**
 * TLS benchmark, side by side in one run (`deno task bench:tls`):
 *
 * - Handshakes per second of our `listenTls` server, plain TLS and mutual
 *   TLS, of `Deno.listenTls` (the backend we did not choose, for plain TLS),
 *   and of a Python `ssl` server (threaded, tests/interop/
 *   tls_echo_peer.py), measured with `openssl s_time -new` (C, an external
 *   client) at concurrency 1 and 16 (16 s_time processes).
 * - p50 latency of connect + handshake + 1-byte echo + close, measured with
 *   Python `ssl` client processes at concurrency 1 and 16.
 * - Bulk echo MB/s through our server over TLS and over plain TCP
 *   (`Deno.listen`), with a Python client sending and receiving at once,
 *   at most 4 MiB ahead of the echo (node:tls in Deno 2.9.6 cannot push
 *   back on a sender, so an unbounded sender would hit `readBufferLimit`).
 *
 * Targets (ratios, not tests): plain TLS >= 1.2x the Python server; mutual
 * TLS >= 0.8x our plain TLS. Results also go to bench/results/tls.json.
 *
 * `openssl s_time` counts a connection the server refused right after the
 * handshake (a mutual-TLS server without our certificate) as a success, and
 * a failed client run would add nothing. So every server counts what it
 * refused (our `onError`, the Python server's "error" lines, failed first
 * reads on `Deno.listenTls`) and every client run is checked (exit code and
 * output); a row with refusals or failed runs is marked `!` in the table,
 * its counts and first errors are printed, its ratios are marked too, and
 * the script exits with code 1.
 *
 *     deno task bench:tls [--seconds 3] [--mib 64]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { listenTls, type TlsListener } from "../tls.ts";
import { type CertificateSet, generateCertificates } from "../certs.ts";

const CONCURRENCY = [1, 16];

function which(name: string): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  console.error(`bench:tls needs ${name} on PATH`);
  Deno.exit(1);
}
const PEER = new URL("../tests/interop/tls_echo_peer.py", import.meta.url)
  .pathname;

/** Certificate files and tools one run uses. */
export interface BenchEnv {
  openssl: string;
  python: string;
  seconds: number;
  set: CertificateSet;
  files: {
    ca: string;
    cert: string;
    key: string;
    clientCert: string;
    clientKey: string;
  };
}

/** Writes a development set to `dir` and names the tools. */
export async function benchEnv(
  dir: string,
  options: { openssl: string; python: string; seconds: number },
): Promise<BenchEnv> {
  const set = await generateCertificates({ clients: ["bench"] });
  const files = {
    ca: `${dir}/ca.pem`,
    cert: `${dir}/server.pem`,
    key: `${dir}/server-key.pem`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client-key.pem`,
  };
  await Deno.writeTextFile(files.ca, set.ca.cert);
  await Deno.writeTextFile(files.cert, set.server.cert);
  await Deno.writeTextFile(files.key, set.server.key);
  await Deno.writeTextFile(files.clientCert, set.clients.bench.cert);
  await Deno.writeTextFile(files.clientKey, set.clients.bench.key);
  return { ...options, set, files };
}

const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Servers

/** A server under test. */
export interface Target {
  name: string;
  port: number;
  /** Whether clients present a certificate to it. */
  mutual: boolean;
  /** Connections it refused or failed so far (handshake, certificate). */
  refusals(): number;
  /** A few of those failures, for the report. */
  failures: string[];
  stop(): Promise<void>;
}

/** A client that went away: not a refusal. */
function clientGone(error: unknown): boolean {
  return error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.BadResource;
}

function echoLoop(
  listener: TlsListener | Deno.Listener,
  onError: (error: unknown) => void = () => {},
): Promise<void> {
  return (async () => {
    for await (const conn of listener) {
      (async () => {
        try {
          await conn.readable.pipeTo(conn.writable);
        } catch (error) {
          // A client that goes away is normal; anything else on
          // Deno.listenTls is a failed handshake.
          if (!clientGone(error)) onError(error);
        }
        try {
          conn.close();
        } catch {
          // already closed
        }
      })();
    }
  })();
}

function failureLog(): {
  count: () => number;
  failures: string[];
  add: (text: string) => void;
} {
  let count = 0;
  const failures: string[] = [];
  return {
    count: () => count,
    failures,
    add(text) {
      count++;
      if (failures.length < 3) failures.push(text);
    },
  };
}

/** Our listenTls echo server; refusals are counted from `onError`. */
export async function ourServer(
  env: BenchEnv,
  mutual: boolean,
): Promise<Target> {
  const log = failureLog();
  const listener = await listenTls({
    cert: env.set.server.cert,
    key: env.set.server.key,
    clientCa: mutual ? env.set.ca.cert : undefined,
    onError: (error) => log.add(`${error.reason}: ${error.message}`),
  });
  const loop = echoLoop(listener);
  return {
    name: mutual ? "connauth mutual TLS" : "connauth TLS",
    port: listener.addr.port,
    mutual,
    refusals: log.count,
    failures: log.failures,
    async stop() {
      await listener[Symbol.asyncDispose]();
      await loop;
    },
  };
}

function denoServer(env: BenchEnv): Target {
  const log = failureLog();
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: env.set.server.cert,
    key: env.set.server.key,
  });
  const loop = echoLoop(
    listener,
    (error) =>
      log.add(`${(error as Error)?.name}: ${(error as Error)?.message}`),
  );
  return {
    name: "Deno.listenTls TLS",
    port: listener.addr.port,
    mutual: false,
    refusals: log.count,
    failures: log.failures,
    async stop() {
      listener.close();
      await loop;
    },
  };
}

async function pythonServer(env: BenchEnv, mutual: boolean): Promise<Target> {
  const log = failureLog();
  const child = new Deno.Command(env.python, {
    args: [
      PEER,
      "server",
      env.files.cert,
      env.files.key,
      ...(mutual ? ["--ca", env.files.ca] : []),
    ],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/port (\d+)\n/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("python server exited");
    text += value;
  }
  const port = Number(/port (\d+)\n/.exec(text)![1]);
  // The server prints "error <detail>" per failed handshake.
  const drain = (async () => {
    let rest = text.slice(text.indexOf("\n") + 1);
    while (true) {
      const lines = rest.split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith("error ")) log.add(line.slice(6));
      }
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
    }
  })();
  return {
    name: mutual ? "Python ssl mutual TLS" : "Python ssl TLS",
    port,
    mutual,
    refusals: log.count,
    failures: log.failures,
    async stop() {
      child.kill();
      await child.status;
      await drain.catch(() => {});
    },
  };
}

// ---------------------------------------------------------------------------
// Clients

/** What a set of client processes measured, and which of them failed. */
export interface ClientRuns {
  /** Handshakes/s (s_time) or p50 ms (latency) over the runs that worked. */
  value: number;
  /** Client processes that exited non-zero or printed no result. */
  failedRuns: number;
  /** The first lines of their errors. */
  failures: string[];
}

function runFailure(run: Deno.CommandOutput, what: string): string {
  const text = (decoder.decode(run.stderr) + decoder.decode(run.stdout))
    .split("\n").find((line) => /\S/.test(line)) ?? "no output";
  return `${what} exited ${run.code}: ${text.trim().slice(0, 200)}`;
}

/** `openssl s_time -new` processes against `target`: handshakes/s. */
export async function sTime(
  env: BenchEnv,
  target: Target,
  concurrency: number,
): Promise<ClientRuns> {
  const start = performance.now();
  const runs = await Promise.all(
    Array.from({ length: concurrency }, () =>
      new Deno.Command(env.openssl, {
        args: [
          "s_time",
          "-connect",
          `127.0.0.1:${target.port}`,
          "-new",
          "-time",
          String(env.seconds),
          "-CAfile",
          env.files.ca,
          ...(target.mutual
            ? ["-cert", env.files.clientCert, "-key", env.files.clientKey]
            : []),
        ],
        stdout: "piped",
        stderr: "piped",
        stdin: "null",
        // A stuck s_time is killed (and counted as a failed run).
        signal: AbortSignal.timeout(env.seconds * 1000 + 30_000),
      }).output()),
  );
  const elapsed = (performance.now() - start) / 1000;
  let total = 0;
  const failures: string[] = [];
  for (const run of runs) {
    const match = /(\d+) connections in [\d.]+s/.exec(
      decoder.decode(run.stdout),
    );
    if (run.success && match) {
      total += Number(match[1]);
    } else {
      failures.push(runFailure(run, "openssl s_time"));
    }
  }
  return {
    value: total / elapsed,
    failedRuns: failures.length,
    failures: failures.slice(0, 3),
  };
}

async function latencyP50(
  env: BenchEnv,
  target: Target,
  concurrency: number,
): Promise<ClientRuns> {
  const count = concurrency === 1 ? 200 : 30;
  const runs = await Promise.all(
    Array.from({ length: concurrency }, () =>
      new Deno.Command(env.python, {
        args: [
          PEER,
          "load",
          String(target.port),
          "localhost",
          env.files.ca,
          "--count",
          String(count),
          ...(target.mutual
            ? ["--cert", env.files.clientCert, "--key", env.files.clientKey]
            : []),
        ],
        stdout: "piped",
        stderr: "piped",
        // A stuck client is killed (and counted as a failed run).
        signal: AbortSignal.timeout(60_000),
      }).output()),
  );
  const all: number[] = [];
  const failures: string[] = [];
  for (const run of runs) {
    const line = /^lat (.*)$/m.exec(decoder.decode(run.stdout))?.[1];
    if (run.success && line) {
      all.push(...line.split(",").map(Number));
    } else {
      failures.push(runFailure(run, "python load client"));
    }
  }
  all.sort((a, b) => a - b);
  return {
    value: all.length ? all[Math.floor(all.length / 2)] : NaN,
    failedRuns: failures.length,
    failures: failures.slice(0, 3),
  };
}

async function bulk(
  env: BenchEnv,
  port: number,
  plain: boolean,
  mib: number,
): Promise<number> {
  const run = await new Deno.Command(env.python, {
    args: [
      PEER,
      "bulk",
      String(port),
      "localhost",
      env.files.ca,
      "--mib",
      String(mib),
      ...(plain ? ["--plain"] : []),
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const match = /^mbps ([\d.]+)$/m.exec(decoder.decode(run.stdout));
  if (run.success && match) return Number(match[1]);
  console.error(
    `! bulk ${plain ? "TCP" : "TLS"}: ${runFailure(run, "python bulk client")}`,
  );
  return NaN;
}

// ---------------------------------------------------------------------------
// Run

/** One line of the table, with what went wrong while measuring it. */
export interface Row {
  server: string;
  concurrency: number;
  handshakesPerSecond: number;
  p50Ms: number;
  /** Connections the server refused or failed while this row ran. */
  refused: number;
  /** Client processes (s_time, Python) that failed. */
  failedRuns: number;
  /** The first errors, server's and clients'. */
  failures: string[];
}

/** Whether a row's numbers are suspect (refusals or failed client runs). */
export function flagged(row: Row): boolean {
  return row.refused > 0 || row.failedRuns > 0;
}

/**
 * Measures one row: handshakes/s with s_time, then (unless `latency` is
 * false) p50 with Python clients; counts the server's refusals meanwhile.
 */
export async function measureRow(
  env: BenchEnv,
  target: Target,
  concurrency: number,
  latency = true,
): Promise<Row> {
  const before = target.refusals();
  const handshakes = await sTime(env, target, concurrency);
  const p50: ClientRuns = latency
    ? await latencyP50(env, target, concurrency)
    : { value: NaN, failedRuns: 0, failures: [] };
  // Refusals are reported as the server closes the connection: let the
  // last ones arrive.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const refused = target.refusals() - before;
  return {
    server: target.name,
    concurrency,
    handshakesPerSecond: handshakes.value,
    p50Ms: p50.value,
    refused,
    failedRuns: handshakes.failedRuns + p50.failedRuns,
    failures: [
      ...(refused > 0 ? target.failures.slice(0, 2) : []),
      ...handshakes.failures,
      ...p50.failures,
    ].slice(0, 4),
  };
}

async function main(): Promise<void> {
  const args = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "3" },
      mib: { type: "string", default: "64" },
    },
  });
  const mib = Number(args.values.mib);
  const dir = await Deno.makeTempDir({ prefix: "connauth-bench-tls-" });
  const env = await benchEnv(dir, {
    openssl: which("openssl"),
    python: Deno.env.get("CONNAUTH_PYTHON_3_12") ?? which("python3"),
    seconds: Number(args.values.seconds),
  });

  const rows: Row[] = [];
  const makers = [
    () => ourServer(env, false),
    () => Promise.resolve(denoServer(env)),
    () => pythonServer(env, false),
    () => ourServer(env, true),
    () => pythonServer(env, true),
  ];
  for (const make of makers) {
    const target = await make();
    try {
      for (const concurrency of CONCURRENCY) {
        const row = await measureRow(env, target, concurrency);
        rows.push(row);
        console.error(
          `${flagged(row) ? "!" : " "} ${target.name.padEnd(24)} c=${
            String(concurrency).padEnd(3)
          } ${
            row.handshakesPerSecond.toFixed(0).padStart(6)
          } handshakes/s  p50 ${row.p50Ms.toFixed(2)} ms${
            flagged(row)
              ? `  (${row.refused} refused, ${row.failedRuns} failed client runs)`
              : ""
          }`,
        );
      }
    } finally {
      await target.stop();
    }
  }

  const tls = await ourServer(env, false);
  const tlsMbps = await bulk(env, tls.port, false, mib).finally(() =>
    tls.stop()
  );
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tcpLoop = echoLoop(tcp);
  const tcpMbps = await bulk(env, tcp.addr.port, true, mib).finally(() =>
    tcp.close()
  );
  await tcpLoop;
  console.error(
    `bulk echo ${mib} MiB: TLS ${tlsMbps.toFixed(1)} MB/s, plain TCP ${
      tcpMbps.toFixed(1)
    } MB/s`,
  );

  const row = (server: string, c: number) =>
    rows.find((row) => row.server === server && row.concurrency === c)!;
  const ratios: Record<string, number> = {};
  const suspectRatios: string[] = [];
  const ratio = (name: string, a: Row, b: Row) => {
    ratios[name] = a.handshakesPerSecond / b.handshakesPerSecond;
    if (flagged(a) || flagged(b)) suspectRatios.push(name);
  };
  for (const c of CONCURRENCY) {
    ratio(
      `plain TLS vs Python, c=${c} (target >= 1.2)`,
      row("connauth TLS", c),
      row("Python ssl TLS", c),
    );
    ratio(
      `plain TLS vs Deno.listenTls, c=${c}`,
      row("connauth TLS", c),
      row("Deno.listenTls TLS", c),
    );
    ratio(
      `mutual vs our plain TLS, c=${c} (target >= 0.8)`,
      row("connauth mutual TLS", c),
      row("connauth TLS", c),
    );
  }
  ratios["bulk TLS vs plain TCP"] = tlsMbps / tcpMbps;
  if (Number.isNaN(ratios["bulk TLS vs plain TCP"])) {
    suspectRatios.push("bulk TLS vs plain TCP");
  }

  console.log("\n| server | concurrency | handshakes/s | p50 ms |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const row of rows) {
    console.log(
      `| ${flagged(row) ? "! " : ""}${row.server} | ${row.concurrency} | ${
        row.handshakesPerSecond.toFixed(0)
      } | ${row.p50Ms.toFixed(2)} |`,
    );
  }
  console.log(
    `\nbulk echo (${mib} MiB, Python client): TLS ${
      tlsMbps.toFixed(1)
    } MB/s, plain TCP ${tcpMbps.toFixed(1)} MB/s\n`,
  );
  for (const [name, value] of Object.entries(ratios)) {
    console.log(
      `${suspectRatios.includes(name) ? "! " : ""}${name}: ${
        value.toFixed(2)
      }x`,
    );
  }
  const bad = rows.filter(flagged);
  if (bad.length > 0 || suspectRatios.length > 0) {
    console.log(
      "\n! marks numbers measured while the server refused connections or client runs failed; they are not comparable:",
    );
    for (const row of bad) {
      console.log(
        `! ${row.server} c=${row.concurrency}: ${row.refused} refused, ${row.failedRuns} failed client runs`,
      );
      for (const failure of row.failures) console.log(`    ${failure}`);
    }
    Deno.exitCode = 1;
  }

  await Deno.remove(dir, { recursive: true });
  await Deno.mkdir(new URL("./results/", import.meta.url), {
    recursive: true,
  });
  await Deno.writeTextFile(
    new URL("./results/tls.json", import.meta.url),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        deno: Deno.version.deno,
        seconds: env.seconds,
        rows: rows.map((row) => ({ ...row, flagged: flagged(row) })),
        bulk: { mib, tlsMbps, tcpMbps },
        ratios,
        suspectRatios,
      },
      null,
      2,
    ) + "\n",
  );
}

if (import.meta.main) await main();
