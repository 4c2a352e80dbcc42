/**
 * Load generator: `total` connections, `concurrency` at a time, each doing
 * connect + (Cookbook handshake) + "Hello World" echo + close. Reports
 * handshakes per second (each connection does exactly one handshake; with
 * `--no-auth` none, and the rate is connections per second) and p50/p99
 * latency of the whole exchange.
 *
 *     deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_KEY bench/load.ts --port 18000 [--n 5000] [--c 50] [--no-auth] [--silent 1000]
 *
 * `--silent N` first opens N sockets that connect and never send a byte
 * (reconnecting when the server closes them), and holds them during the run.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connect } from "../server.ts";
import { HmacKey } from "../handshake.ts";

/** Options for {@linkcode runLoad}. */
export interface LoadOptions {
  /** Server host. */
  hostname?: string;
  /** Server port. */
  port: number;
  /** Connections in all. */
  total: number;
  /** Connections at a time. */
  concurrency: number;
  /** Do the Cookbook handshake (false for the raw TCP server). */
  auth: boolean;
  /** The shared key (with `auth`). */
  key?: string;
  /** Deadline for one connection's exchange, ms. */
  timeout?: number;
  /** Stop starting new connections (and abort pending ones) after this, ms. */
  timeLimit?: number;
}

/** What {@linkcode runLoad} measured. */
export interface LoadResult {
  /** Exchanges that completed with the right echo. */
  completed: number;
  /** Exchanges that failed (refused, reset, wrong echo, timed out). */
  errors: number;
  /** Wall time of the run, ms. */
  elapsed: number;
  /**
   * Completed exchanges per second: handshakes per second, one per
   * connection (connections per second without `auth`).
   */
  rate: number;
  /** Median latency of an exchange, ms. */
  p50: number;
  /** 99th percentile latency, ms. */
  p99: number;
  /** Whether the time limit cut the run short. */
  timedOut: boolean;
}

const HELLO = new TextEncoder().encode("Hello World");

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(n);
  let offset = 0;
  while (offset < n) {
    const count = await conn.read(buffer.subarray(offset));
    if (count === null) throw new Error("the server closed the connection");
    offset += count;
  }
  return buffer;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Runs the load and measures it. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const hostname = options.hostname ?? "127.0.0.1";
  const timeout = options.timeout ?? 10_000;
  const key = options.auth
    ? await HmacKey.import(options.key ?? "", { hash: "SHA-256" })
    : undefined;
  const stop = new AbortController();
  const limit = setTimeout(
    () => stop.abort(new DOMException("time limit", "TimeoutError")),
    options.timeLimit ?? 60_000,
  );
  const latencies = new Float64Array(options.total);
  let started = 0;
  let completed = 0;
  let errors = 0;

  async function once(): Promise<void> {
    const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(timeout)]);
    const begin = performance.now();
    let conn: Deno.TcpConn | undefined;
    const onAbort = () => {
      try {
        conn?.close();
      } catch {
        // closed
      }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      conn = key
        ? await connect({ hostname, port: options.port, key, timeout, signal })
        : await Deno.connect({ hostname, port: options.port, signal });
      if (signal.aborted) throw signal.reason;
      await conn.write(HELLO);
      const reply = await readExactly(conn, HELLO.length);
      if (reply.some((byte, i) => byte !== HELLO[i])) {
        throw new Error("wrong echo");
      }
      latencies[completed++] = performance.now() - begin;
    } catch {
      errors++;
    } finally {
      signal.removeEventListener("abort", onAbort);
      onAbort();
    }
  }

  const start = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (started < options.total && !stop.signal.aborted) {
        started++;
        await once();
      }
    }),
  );
  const elapsed = performance.now() - start;
  const timedOut = stop.signal.aborted;
  clearTimeout(limit);
  const sorted = latencies.slice(0, completed).sort();
  return {
    completed,
    errors,
    elapsed,
    rate: completed / (elapsed / 1000),
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    timedOut,
  };
}

/** Sockets that connect and never send; reconnected when the server closes them. */
export interface SilentSockets extends AsyncDisposable {
  /** Sockets open now. */
  readonly open: number;
  /** Resolves once all have connected (once). */
  readonly ready: Promise<void>;
}

/** Opens and holds `count` silent sockets against the server. */
export function holdSilent(
  port: number,
  count: number,
  hostname = "127.0.0.1",
): SilentSockets {
  const stop = new AbortController();
  const conns = new Set<Deno.TcpConn>();
  let connectedOnce = 0;
  const ready = Promise.withResolvers<void>();
  if (count === 0) ready.resolve();

  async function holder(): Promise<void> {
    let first = true;
    while (!stop.signal.aborted) {
      let conn: Deno.TcpConn;
      try {
        conn = await Deno.connect({ hostname, port, signal: stop.signal });
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      conns.add(conn);
      if (first) {
        first = false;
        if (++connectedOnce === count) ready.resolve();
      }
      const buffer = new Uint8Array(1024);
      try {
        // Read (and ignore) what the server sends; never answer.
        while ((await conn.read(buffer)) !== null);
      } catch {
        // reset, or closed by stop
      }
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // closed by stop
      }
    }
  }

  const holders: Promise<void>[] = [];
  // Connect in batches so the listen backlog is never the bottleneck.
  const opening = (async () => {
    for (let i = 0; i < count; i++) {
      holders.push(holder());
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 20));
    }
  })();

  return {
    get open() {
      return conns.size;
    },
    ready: ready.promise,
    async [Symbol.asyncDispose]() {
      await opening;
      stop.abort();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
      await Promise.all(holders);
    },
  };
}

/** Formats a result as one line; `auth` false for a run without handshakes. */
export function formatResult(result: LoadResult, auth = true): string {
  return `${result.rate.toFixed(0)} ${
    auth ? "handshakes/s" : "conn/s (no handshake)"
  }, p50 ${result.p50.toFixed(2)} ms, p99 ${
    result.p99.toFixed(2)
  } ms, ${result.completed} ok, ${result.errors} errors${
    result.timedOut ? " (time limit)" : ""
  }`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      n: { type: "string", default: "5000" },
      c: { type: "string", default: "50" },
      "no-auth": { type: "boolean", default: false },
      silent: { type: "string", default: "0" },
      "time-limit": { type: "string", default: "60000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || values.port === undefined) {
    console.log(
      "Usage: CONNAUTH_KEY=k deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_KEY bench/load.ts --port N [--n 5000] [--c 50] [--no-auth] [--silent 0] [--time-limit 60000]",
    );
    Deno.exit(values.help ? 0 : 2);
  }
  const port = Number(values.port);
  const auth = !values["no-auth"];
  const key = auth ? Deno.env.get("CONNAUTH_KEY") : undefined;
  if (auth && !key) {
    console.error("Cannot run: set CONNAUTH_KEY (or pass --no-auth)");
    Deno.exit(2);
  }
  await using silent = holdSilent(port, Number(values.silent), values.hostname);
  await silent.ready;
  const result = await runLoad({
    hostname: values.hostname,
    port,
    total: Number(values.n),
    concurrency: Number(values.c),
    auth,
    key,
    timeLimit: Number(values["time-limit"]),
  });
  console.log(formatResult(result, auth));
}
