/**
 * The load side of `deno task bench:server` (`bench/compare.ts`): builds the
 * two C tools into `bench/results/` on first use and runs them.
 *
 * - `bench/connload.c`: N connections, C at a time, each doing connect +
 *   Cookbook handshake + 11-byte echo + close (`auth`) or the echo alone
 *   (`raw`); one epoll thread; one JSON line of results.
 * - `bench/flood.c`: holds A source addresses x S silent sockets against a
 *   port, re-opening each as soon as the server closes it; JSON status lines.
 *
 * Every child is pinned to a CPU with `taskset` when asked, tracked, bounded
 * in time and killed by {@linkcode killAll}. Nothing here is a test, and
 * nothing is published.
 *
 * @module
 */

/** A condition the benchmark reports in one line and exits on. */
export class BenchError extends Error {
  /** The exit code: 2 for a bad command line, 1 otherwise. */
  exitCode: number;
  /** Creates the error. */
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "BenchError";
    this.exitCode = exitCode;
  }
}

const BENCH = new URL(".", import.meta.url).pathname;
/** Where the tools and results go (gitignored). */
export const RESULTS: string = `${BENCH}results/`;

/** Paths of the built tools. */
export interface Tools {
  /** The load generator. */
  connload: string;
  /** The silent-socket flooder. */
  flood: string;
}

/** Finds `name` on PATH; null when absent. */
export function which(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const path = `${dir}/${name}`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  return null;
}

function mtime(path: string): number | undefined {
  try {
    return Deno.statSync(path).mtime?.getTime();
  } catch {
    return undefined;
  }
}

/**
 * Compiles `bench/connload.c` and `bench/flood.c` into `bench/results/`
 * unless an up-to-date binary is there.
 *
 * @throws {BenchError} When gcc or OpenSSL's headers are missing, or the
 * build fails.
 */
export async function buildTools(
  log: (line: string) => void = () => {},
): Promise<Tools> {
  Deno.mkdirSync(RESULTS, { recursive: true });
  const tools: Tools = {
    connload: `${RESULTS}connload`,
    flood: `${RESULTS}flood`,
  };
  const builds = [
    { source: `${BENCH}connload.c`, out: tools.connload, libs: ["-lcrypto"] },
    { source: `${BENCH}flood.c`, out: tools.flood, libs: [] },
  ];
  for (const { source, out, libs } of builds) {
    const built = mtime(out);
    if (built !== undefined && built >= (mtime(source) ?? Infinity)) continue;
    const gcc = which("gcc") ?? which("cc");
    if (!gcc) {
      throw new BenchError(
        "Cannot build the load generator: gcc not found; install it (Debian/Ubuntu: apt-get install gcc libssl-dev; Fedora: dnf install gcc openssl-devel)",
      );
    }
    log(`building ${out}`);
    const name = source.slice(BENCH.length);
    const { success, stderr } = await runBounded(
      gcc,
      ["-O2", "-Wall", "-o", out, source, ...libs, "-lm"],
      60_000,
    );
    if (!success) {
      const text = new TextDecoder().decode(stderr);
      if (/openssl\/\S+\.h: No such file/.test(text)) {
        throw new BenchError(
          `Cannot build bench/${name}: OpenSSL's headers are missing; install them (Debian/Ubuntu: apt-get install libssl-dev; Fedora: dnf install openssl-devel; OpenSSL 3 or later)`,
        );
      }
      if (/cannot find -lcrypto/.test(text)) {
        throw new BenchError(
          `Cannot build bench/${name}: libcrypto not found; install OpenSSL's development package (Debian/Ubuntu: apt-get install libssl-dev)`,
        );
      }
      const first = text.split("\n").find((line) => /error/.test(line)) ??
        text.split("\n")[0];
      throw new BenchError(`Cannot build bench/${name}: ${first.trim()}`);
    }
  }
  return tools;
}

const children = new Set<Deno.ChildProcess>();

/** Registers a child so {@linkcode killAll} ends it. */
export function track(child: Deno.ChildProcess): Deno.ChildProcess {
  children.add(child);
  child.status.finally(() => children.delete(child));
  return child;
}

/** Kills a child: SIGTERM, then SIGKILL after `grace` ms; waits for it. */
export async function kill(
  child: Deno.ChildProcess,
  grace = 3000,
): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // already exited
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
  }, grace);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** Kills every tracked child (on exit, error or signal). */
export async function killAll(): Promise<void> {
  await Promise.all([...children].map((child) => kill(child, 1000)));
}

/** Runs a command to its end, killed after `limit` ms; captures its output. */
export async function runBounded(
  command: string,
  args: string[],
  limit: number,
  env: Record<string, string> = {},
): Promise<Deno.CommandOutput & { killed: boolean }> {
  const child = track(
    new Deno.Command(command, {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    kill(child, 1000);
  }, limit);
  try {
    return Object.assign(await child.output(), { killed });
  } finally {
    clearTimeout(timer);
  }
}

/** `[command, args]` run on `cpu` with taskset, or as is when `cpu` is null. */
export function pinned(
  cpu: number | null,
  command: string,
  args: string[],
): [string, string[]] {
  return cpu === null
    ? [command, args]
    : ["taskset", ["-c", String(cpu), command, ...args]];
}

/** Options for {@linkcode runLoad}. */
export interface LoadOptions {
  /** The server's port on 127.0.0.1. */
  port: number;
  /** Connections in all. */
  n: number;
  /** Connections at a time. */
  c: number;
  /** With the Cookbook handshake, or the echo alone. */
  mode: "auth" | "raw";
  /** The shared key (auth). */
  key: string;
  /** Per-connection deadline, seconds. */
  deadline: number;
  /** Start no connection after this many seconds. */
  timeLimit: number;
  /** CPU to pin the load generator to, or null. */
  cpu: number | null;
  /** Pause between a slot's connections, ms (a prober). */
  interval?: number;
  /** Also count the ok connections done within this many ms. */
  within?: number;
  /** List each connection's latency and failure reason. */
  list?: boolean;
}

/** The JSON line of `connload`. */
export interface LoadResult {
  /** Connections that got the right echo. */
  ok: number;
  /** Connections that failed (refused, reset, closed, past the deadline). */
  errors: number;
  /** Of the errors, those past the deadline. */
  timeouts: number;
  /** Connections never started or cut off. */
  unfinished: number;
  /** Wall time of the run, seconds. */
  elapsed_s: number;
  /** Ok connections per second. */
  rate: number;
  /** Latency of the ok connections, ms. */
  p50_ms: number;
  /** 99th percentile, ms. */
  p99_ms: number;
  /** Slowest ok connection, ms. */
  max_ms: number;
  /** The load generator's own CPU time, seconds. */
  cpu_s: number;
  /** Ok connections within `within` ms (when asked). */
  within?: number;
  /** The first failure's reason, or "". */
  first_error: string;
  /** Each connection's latency in start order, -1 for a failure (`list`). */
  lat_ms?: number[];
  /** Each connection's failure reason, "" when ok (`list`). */
  fail?: string[];
}

/**
 * Runs `connload` once and returns its result.
 *
 * @throws {BenchError} When it fails, is killed or prints no result.
 */
export async function runLoad(
  tools: Tools,
  options: LoadOptions,
): Promise<LoadResult> {
  const args = [
    "-d",
    String(options.deadline),
    "-T",
    String(options.timeLimit),
  ];
  if (options.interval !== undefined) args.push("-i", String(options.interval));
  if (options.within !== undefined) args.push("-w", String(options.within));
  if (options.list) args.push("-L");
  args.push(
    String(options.port),
    String(options.n),
    String(options.c),
    options.mode,
  );
  const [command, full] = pinned(options.cpu, tools.connload, args);
  const limit = (options.timeLimit + options.deadline + 10) * 1000;
  const out = await runBounded(command, full, limit, {
    CONNAUTH_SECRET: options.key,
  });
  const text = new TextDecoder().decode(out.stdout).trim();
  const line = text.split("\n").findLast((l) => l.startsWith("{"));
  if (!line) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new BenchError(
      `Cannot measure port ${options.port}: connload ${
        out.killed ? `was killed after ${limit / 1000} s` : `exited ${out.code}`
      }${why ? `: ${why}` : ""}`,
    );
  }
  return JSON.parse(line) as LoadResult;
}

/** A status line of `flood`. */
export interface FloodStatus {
  /** Seconds since the flooder started. */
  t: number;
  /** Sockets connected and not closed by the server. */
  held: number;
  /** Sockets whose connect is in progress. */
  connecting: number;
  /** Sockets waiting to retry a failed connect. */
  retrying: number;
  /** Connects completed since the start. */
  opened: number;
  /** Sockets the server closed or reset (each re-opened at once). */
  closed_by_server: number;
  /** Failed connects. */
  connect_errors: number;
  /** The flooder's CPU time, seconds. */
  cpu_s: number;
  /** The first failure's reason, or "". */
  first_error: string;
  /** Set on the line printed once all sockets are first held. */
  ready?: boolean;
  /** Set on the last line. */
  final?: boolean;
}

/** A running flooder. */
export interface Flood {
  /** Every status line so far. */
  readonly statuses: FloodStatus[];
  /**
   * Resolves true once all sockets are held; false once the count held has
   * not grown for a second (the server is not accepting them all: its
   * listen backlog is full) or after `timeout` ms.
   */
  settle(timeout: number): Promise<boolean>;
  /** Stops it; resolves to its last status line. */
  stop(): Promise<FloodStatus | undefined>;
}

/** Options for {@linkcode startFlood}. */
export interface FloodOptions {
  /** The server's port on 127.0.0.1. */
  port: number;
  /** Source addresses, from 127.0.1.1 up. */
  addresses: number;
  /** Sockets per address. */
  perAddress: number;
  /** CPU to pin the flooder to, or null. */
  cpu: number | null;
  /** Stop on its own after this many seconds (a backstop). */
  timeLimit: number;
}

/** Splits a byte stream into lines. */
export async function* lines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let end;
    while ((end = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, end);
      rest = rest.slice(end + 1);
    }
  }
  if (rest) yield rest;
}

/** Starts `flood` against a port. */
export function startFlood(tools: Tools, options: FloodOptions): Flood {
  const [command, args] = pinned(options.cpu, tools.flood, [
    "-a",
    String(options.addresses),
    "-s",
    String(options.perAddress),
    "-T",
    String(options.timeLimit),
    "-r",
    "500",
    String(options.port),
  ]);
  const child = track(
    new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  const statuses: FloodStatus[] = [];
  const readyOnce = Promise.withResolvers<boolean>();
  const reading = (async () => {
    for await (const line of lines(child.stdout)) {
      if (!line.startsWith("{")) continue;
      const status = JSON.parse(line) as FloodStatus;
      statuses.push(status);
      if (status.ready) readyOnce.resolve(true);
    }
    readyOnce.resolve(false);
  })();
  const errors = new Response(child.stderr).text();
  return {
    statuses,
    async settle(timeout) {
      const deadline = Date.now() + timeout;
      let ready = false;
      readyOnce.promise.then((value) => ready = value);
      // Status lines come every 500 ms.
      while (!ready && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const last = statuses.slice(-3).filter((s) => !s.ready);
        if (
          last.length === 3 && last[0].t >= 1 &&
          last[2].held <= last[0].held
        ) {
          break;
        }
      }
      return ready;
    },
    async stop() {
      await kill(child);
      await reading;
      const status = await child.status;
      const final = statuses.findLast((s) => s.final);
      if (!final && status.code !== 0 && status.signal === null) {
        const why = (await errors).trim().split("\n")[0];
        throw new BenchError(
          `Cannot flood port ${options.port}: flood exited ${status.code}${
            why ? `: ${why}` : ""
          }`,
        );
      }
      return final ?? statuses.at(-1);
    },
  };
}
