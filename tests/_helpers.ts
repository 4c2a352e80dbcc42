// Shared test helpers: in-memory duplex pairs, loopback TCP pairs, and the
// lookup of real peers (Python versions, openssl) for interop tests.
import type { Duplex } from "../types.ts";

// Child processes inherit this process's environment, and Deno.Command's `env`
// adds to it rather than replacing it: a developer's own CONNAUTH_SECRET or
// CONNAUTH_PSK would leak into the examples the tests start (and, for
// example, silence the demo-key warning a test expects). Every test file
// imports this module, so dropping them here covers every child. (Only
// where env access is granted: `deno task bench:server` imports this module
// without it, and passes its children their key explicitly.)
for (const name of ["CONNAUTH_SECRET", "CONNAUTH_PSK"]) {
  const env = Deno.permissions.querySync({ name: "env", variable: name });
  if (env.state === "granted") Deno.env.delete(name);
}

/** One direction of an in-memory connection: a byte stream and its writer. */
function pipe(): {
  readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  writable: WritableStream<Uint8Array>;
} {
  let controller!: ReadableByteStreamController;
  const readable = new ReadableStream({
    type: "bytes",
    start(c) {
      controller = c;
    },
  }) as ReadableStream<Uint8Array<ArrayBuffer>>;
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (chunk.byteLength > 0) controller.enqueue(chunk.slice());
    },
    close() {
      controller.close();
      controller.byobRequest?.respond(0);
    },
    abort(reason) {
      controller.error(reason);
    },
  });
  return { readable, writable };
}

/** An in-memory, connected pair of duplex byte streams. */
export function duplexPair(): [Duplex, Duplex] {
  const ab = pipe();
  const ba = pipe();
  return [
    { readable: ba.readable, writable: ab.writable },
    { readable: ab.readable, writable: ba.writable },
  ];
}

/** A connected loopback TCP pair; dispose closes both ends and the listener. */
export async function tcpPair(): Promise<
  { client: Deno.TcpConn; server: Deno.TcpConn } & Disposable
> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  return {
    client,
    server,
    [Symbol.dispose]() {
      for (const conn of [client, server]) {
        try {
          conn.close();
        } catch {
          // already closed by the test
        }
      }
    },
  };
}

/** True when CI asked interop tests to fail, not skip, on a missing peer. */
export const REQUIRE_PEERS = Deno.env.get("CONNAUTH_REQUIRE_PEERS") === "1";

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function onPath(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && isFile(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

function pyenvRoot(): string | null {
  const root = Deno.env.get("PYENV_ROOT") ??
    (Deno.env.get("HOME") ? `${Deno.env.get("HOME")}/.pyenv` : null);
  return root;
}

/**
 * Finds a Python interpreter of the given minor version ("3.12", "3.7") or
 * any Python 3 ("3"): `CONNAUTH_PYTHON_3_12` overrides, then pyenv's
 * versions folder, then `python3.12` on PATH.
 */
export function findPython(version: string): string | null {
  const override = Deno.env.get(
    `CONNAUTH_PYTHON_${version.replaceAll(".", "_")}`,
  );
  if (override) return isFile(override) ? override : null;
  if (version === "3") return onPath("python3");
  const root = pyenvRoot();
  if (root) {
    try {
      const names = [...Deno.readDirSync(`${root}/versions`)]
        .map((entry) => entry.name)
        .filter((name) => name.startsWith(`${version}.`))
        .sort();
      for (const name of names.reverse()) {
        const exe = `${root}/versions/${name}/bin/python${version}`;
        if (isFile(exe)) return exe;
      }
    } catch {
      // no pyenv
    }
  }
  return onPath(`python${version}`);
}

/** Finds a command on PATH (for `openssl`). */
export function findTool(name: string): string | null {
  return onPath(name);
}

/**
 * Declares a test that needs a real peer. When the peer is missing it is
 * ignored outside CI, and fails with a message naming the peer in CI
 * (`CONNAUTH_REQUIRE_PEERS=1`, set by `.ci/run`).
 */
export function peerTest(
  name: string,
  peer: { label: string; path: string | null },
  fn: (path: string) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: peer.path === null && !REQUIRE_PEERS,
    async fn() {
      if (peer.path === null) {
        throw new Error(
          `Cannot run interop test: the peer ${peer.label} is missing; install it (pyenv install, apt-get install openssl) or unset CONNAUTH_REQUIRE_PEERS to skip`,
        );
      }
      await fn(peer.path);
    },
  });
}

/** Path of a file in tests/interop/. */
export function interopScript(name: string): string {
  return new URL(`./interop/${name}`, import.meta.url).pathname;
}

/**
 * Starts a child process with piped stdio and a hard kill after `timeout` ms.
 * Read `stdout` lines with {@linkcode lines}.
 */
export function spawn(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; timeout?: number } = {},
): Deno.ChildProcess {
  return new Deno.Command(command, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
    signal: AbortSignal.timeout(options.timeout ?? 30_000),
  }).spawn();
}

/** A finished child process: its exit code and its output as text. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `command` to its end with no stdin and a hard kill after `timeout` ms
 * (30 s), and returns its exit code and output; `trim` trims both.
 */
export async function runCommand(
  command: string,
  args: string[],
  options: {
    cwd?: string;
    env?: Record<string, string>;
    timeout?: number;
    trim?: boolean;
  } = {},
): Promise<CommandResult> {
  const output = await new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeout ?? 30_000),
  }).output();
  const text = (bytes: Uint8Array) => {
    const decoded = new TextDecoder().decode(bytes);
    return options.trim ? decoded.trim() : decoded;
  };
  return {
    code: output.code,
    stdout: text(output.stdout),
    stderr: text(output.stderr),
  };
}

/**
 * The subject line (`CN = a.test`) of the certificate a TLS server on
 * 127.0.0.1:`port` sends to `openssl s_client` trusting `caFile`, with
 * `args` such as `-servername a.test`; checks that it verified.
 */
export async function opensslSubject(
  openssl: string,
  port: number,
  caFile: string,
  args: string[] = [],
): Promise<string | undefined> {
  const { stdout } = await runCommand(
    openssl,
    ["s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", caFile, ...args],
    { timeout: 10_000 },
  );
  const subject = stdout.match(/^subject=(.*)$/m)?.[1];
  if (subject !== undefined && !/Verify return code: 0 \(ok\)/.test(stdout)) {
    throw new Error(`the certificate of ${subject} did not verify:\n${stdout}`);
  }
  return subject;
}

/**
 * `promise`, or a rejection after `ms` (the timer is cleared either way):
 * keeps a call that might never settle from hanging a test or a benchmark.
 * The error says `${what} took over ${ms} ms`.
 */
export async function within<T>(
  promise: Promise<T>,
  ms: number,
  what = "the call",
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} took over ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads a stream as UTF-8 lines. */
export async function* lines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let index;
    while ((index = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, index);
      rest = rest.slice(index + 1);
    }
  }
  if (rest) yield rest;
}

/** An example program started by {@linkcode startExample}. */
export interface RunningExample extends AsyncDisposable {
  /** The child process. */
  readonly child: Deno.ChildProcess;
  /** The port it printed in its "listening on" line. */
  readonly port: number;
  /** Every stderr line so far (complete after {@linkcode stop}). */
  readonly log: string[];
  /** Sends SIGTERM, waits for the exit and the rest of the log. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Runs `deno <args>` (an example server started on port 0) and waits for the
 * stderr line matching `listening` (first group: the port), reading at most
 * 20 lines. Stdout is discarded. Dispose (or `stop()`) to end it.
 */
export async function startExample(
  args: string[],
  options: { env?: Record<string, string>; listening?: RegExp } = {},
): Promise<RunningExample> {
  const listening = options.listening ?? /listening on 127\.0\.0\.1:(\d+)/;
  const child = spawn(Deno.execPath(), args, { env: options.env });
  child.stdin.close();
  await child.stdout.cancel();
  const log: string[] = [];
  const stderr = lines(child.stderr);
  let port = 0;
  for (let i = 0; i < 20 && port === 0; i++) {
    const { value, done } = await stderr.next();
    if (done) break;
    log.push(value);
    port = Number(value.match(listening)?.[1] ?? 0);
  }
  const rest = (async () => {
    for await (const line of stderr) log.push(line);
  })();
  let status: Promise<Deno.CommandStatus> | undefined;
  const stop = () => {
    status ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      const result = await child.status;
      await rest;
      return result;
    })();
    return status;
  };
  if (port === 0) {
    await stop();
    throw new Error(
      `Cannot start ${args.at(-1)}: no "listening on" line\n${log.join("\n")}`,
    );
  }
  return {
    child,
    port,
    log,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}
