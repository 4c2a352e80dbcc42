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
 *     deno task bench:tls [--seconds 3] [--mib 64]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { listenTls, type TlsListener } from "../tls.ts";
import { generateCertificates } from "../certs.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "3" },
    mib: { type: "string", default: "64" },
  },
});
const SECONDS = Number(args.values.seconds);
const MIB = Number(args.values.mib);
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
const OPENSSL = which("openssl");
const PYTHON = Deno.env.get("CONNAUTH_PYTHON_3_12") ?? which("python3");
const PEER = new URL("../tests/interop/tls_echo_peer.py", import.meta.url)
  .pathname;

const dir = await Deno.makeTempDir({ prefix: "connauth-bench-tls-" });
const set = await generateCertificates({ clients: ["bench"] });
const files = {
  ca: `${dir}/ca.pem`,
  cert: `${dir}/server.pem`,
  key: `${dir}/server-key.pem`,
  clientCert: `${dir}/client.pem`,
  clientKey: `${dir}/client-key.pem`,
};
Deno.writeTextFileSync(files.ca, set.ca.cert);
Deno.writeTextFileSync(files.cert, set.server.cert);
Deno.writeTextFileSync(files.key, set.server.key);
Deno.writeTextFileSync(files.clientCert, set.clients.bench.cert);
Deno.writeTextFileSync(files.clientKey, set.clients.bench.key);

const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Servers

interface Target {
  name: string;
  port: number;
  mutual: boolean;
  stop(): Promise<void>;
}

function echoLoop(listener: TlsListener | Deno.Listener): Promise<void> {
  return (async () => {
    for await (const conn of listener) {
      (async () => {
        try {
          await conn.readable.pipeTo(conn.writable);
        } catch {
          // client gone
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

async function ourServer(mutual: boolean): Promise<Target> {
  const listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
    clientCa: mutual ? set.ca.cert : undefined,
    onTlsError: () => {},
  });
  const loop = echoLoop(listener);
  return {
    name: mutual ? "connauth mutual TLS" : "connauth TLS",
    port: listener.addr.port,
    mutual,
    async stop() {
      await listener[Symbol.asyncDispose]();
      await loop;
    },
  };
}

function denoServer(): Target {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: set.server.cert,
    key: set.server.key,
  });
  const loop = echoLoop(listener);
  return {
    name: "Deno.listenTls TLS",
    port: listener.addr.port,
    mutual: false,
    async stop() {
      listener.close();
      await loop;
    },
  };
}

async function pythonServer(mutual: boolean): Promise<Target> {
  const child = new Deno.Command(PYTHON, {
    args: [
      PEER,
      "server",
      files.cert,
      files.key,
      ...(mutual ? ["--ca", files.ca] : []),
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
  const drain = (async () => {
    while (!(await reader.read()).done) {
      // discard per-connection lines
    }
  })();
  return {
    name: mutual ? "Python ssl mutual TLS" : "Python ssl TLS",
    port,
    mutual,
    async stop() {
      child.kill();
      await child.status;
      await drain.catch(() => {});
    },
  };
}

// ---------------------------------------------------------------------------
// Clients

async function sTime(target: Target, concurrency: number): Promise<number> {
  const start = performance.now();
  const runs = await Promise.all(
    Array.from({ length: concurrency }, () =>
      new Deno.Command(OPENSSL, {
        args: [
          "s_time",
          "-connect",
          `127.0.0.1:${target.port}`,
          "-new",
          "-time",
          String(SECONDS),
          "-CAfile",
          files.ca,
          ...(target.mutual
            ? ["-cert", files.clientCert, "-key", files.clientKey]
            : []),
        ],
        stdout: "piped",
        stderr: "piped",
        stdin: "null",
      }).output()),
  );
  const elapsed = (performance.now() - start) / 1000;
  let total = 0;
  for (const run of runs) {
    const match = /(\d+) connections in [\d.]+s/.exec(
      decoder.decode(run.stdout),
    );
    if (match) total += Number(match[1]);
  }
  return total / elapsed;
}

async function latencyP50(
  target: Target,
  concurrency: number,
): Promise<number> {
  const count = concurrency === 1 ? 200 : 30;
  const runs = await Promise.all(
    Array.from({ length: concurrency }, () =>
      new Deno.Command(PYTHON, {
        args: [
          PEER,
          "load",
          String(target.port),
          "localhost",
          files.ca,
          "--count",
          String(count),
          ...(target.mutual
            ? ["--cert", files.clientCert, "--key", files.clientKey]
            : []),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output()),
  );
  const all: number[] = [];
  for (const run of runs) {
    const line = /^lat (.*)$/m.exec(decoder.decode(run.stdout))?.[1];
    if (line) all.push(...line.split(",").map(Number));
  }
  all.sort((a, b) => a - b);
  return all.length ? all[Math.floor(all.length / 2)] : NaN;
}

async function bulk(port: number, plain: boolean): Promise<number> {
  const run = await new Deno.Command(PYTHON, {
    args: [
      PEER,
      "bulk",
      String(port),
      "localhost",
      files.ca,
      "--mib",
      String(MIB),
      ...(plain ? ["--plain"] : []),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const match = /^mbps ([\d.]+)$/m.exec(decoder.decode(run.stdout));
  return match ? Number(match[1]) : NaN;
}

// ---------------------------------------------------------------------------
// Run

interface Row {
  server: string;
  concurrency: number;
  handshakesPerSecond: number;
  p50Ms: number;
}
const rows: Row[] = [];
const makers = [
  () => ourServer(false),
  () => Promise.resolve(denoServer()),
  () => pythonServer(false),
  () => ourServer(true),
  () => pythonServer(true),
];
for (const make of makers) {
  const target = await make();
  try {
    for (const concurrency of CONCURRENCY) {
      const handshakesPerSecond = await sTime(target, concurrency);
      const p50Ms = await latencyP50(target, concurrency);
      rows.push({
        server: target.name,
        concurrency,
        handshakesPerSecond,
        p50Ms,
      });
      console.error(
        `${target.name.padEnd(24)} c=${String(concurrency).padEnd(3)} ${
          handshakesPerSecond.toFixed(0).padStart(6)
        } handshakes/s  p50 ${p50Ms.toFixed(2)} ms`,
      );
    }
  } finally {
    await target.stop();
  }
}

const tls = await ourServer(false);
const tlsMbps = await bulk(tls.port, false).finally(() => tls.stop());
const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const tcpLoop = echoLoop(tcp);
const tcpMbps = await bulk(tcp.addr.port, true).finally(() => tcp.close());
await tcpLoop;
console.error(
  `bulk echo ${MIB} MiB: TLS ${tlsMbps.toFixed(1)} MB/s, plain TCP ${
    tcpMbps.toFixed(1)
  } MB/s`,
);

const rate = (server: string, c: number) =>
  rows.find((row) => row.server === server && row.concurrency === c)!
    .handshakesPerSecond;
const ratios: Record<string, number> = {};
for (const c of CONCURRENCY) {
  ratios[`plain TLS vs Python, c=${c} (target >= 1.2)`] =
    rate("connauth TLS", c) / rate("Python ssl TLS", c);
  ratios[`plain TLS vs Deno.listenTls, c=${c}`] = rate("connauth TLS", c) /
    rate("Deno.listenTls TLS", c);
  ratios[`mutual vs our plain TLS, c=${c} (target >= 0.8)`] =
    rate("connauth mutual TLS", c) / rate("connauth TLS", c);
}
ratios["bulk TLS vs plain TCP"] = tlsMbps / tcpMbps;

console.log("\n| server | concurrency | handshakes/s | p50 ms |");
console.log("| --- | ---: | ---: | ---: |");
for (const row of rows) {
  console.log(
    `| ${row.server} | ${row.concurrency} | ${
      row.handshakesPerSecond.toFixed(0)
    } | ${row.p50Ms.toFixed(2)} |`,
  );
}
console.log(
  `\nbulk echo (${MIB} MiB, Python client): TLS ${
    tlsMbps.toFixed(1)
  } MB/s, plain TCP ${tcpMbps.toFixed(1)} MB/s\n`,
);
for (const [name, value] of Object.entries(ratios)) {
  console.log(`${name}: ${value.toFixed(2)}x`);
}

await Deno.remove(dir, { recursive: true });
await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
await Deno.writeTextFile(
  new URL("./results/tls.json", import.meta.url),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      deno: Deno.version.deno,
      seconds: SECONDS,
      rows,
      bulk: { mib: MIB, tlsMbps, tcpMbps },
      ratios,
    },
    null,
    2,
  ) + "\n",
);
