// How an example tells its user to run it: its `deno run` line with the
// permissions its task gives, the one-line answer to a missing permission
// (the exact command that has it) and to a port in use, and a last guard
// that turns those errors into one line wherever they are thrown: a user's
// mistake never ends in a stack trace.

/** An example program: how its task runs it. */
export interface Program {
  /** The script from the repository root: `examples/echo_server.ts`. */
  script: string;
  /** The `deno task` that runs it. */
  task: string;
  /** The task's `deno run` flags: `["--allow-net=127.0.0.1", ...]`. */
  flags: string[];
}

let current: Program | undefined;

/** Prints `message` to stderr and exits with `code`. */
export function fail(message: string, code = 1): never {
  console.error(message);
  Deno.exit(code);
}

/**
 * Declares the running example. From then on a missing permission or a port
 * in use that nothing caught ends the program with one line, not a stack.
 *
 * @returns Its `deno run` line, for the help: `deno run --allow-... script`.
 */
export function setProgram(program: Program): string {
  current = program;
  const guard = (error: unknown): boolean => {
    const line = explain(error, "continue");
    if (line === null) return false;
    fail(line);
  };
  addEventListener("unhandledrejection", (event) => {
    if (guard(event.reason)) event.preventDefault();
  });
  addEventListener("error", (event) => {
    if (guard(event.error)) event.preventDefault();
  });
  return ["deno run", ...program.flags, program.script].join(" ");
}

/** `deno task NAME` of the running example ("deno task" if undeclared). */
export function taskName(): string {
  return current ? `deno task ${current.task}` : "deno task";
}

/** `text` quoted for a POSIX shell when it needs to be. */
export function shellQuote(text: string): string {
  if (/^[\w@%+=:,./-]+$/.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * The `deno run` line of the running example with the same arguments,
 * granting each `[kind, target]` (kind: net, read, write, env) besides
 * what its task grants.
 */
export function runLine(...grants: [kind: string, target: string][]): string {
  const program = current ?? { script: "<script>", task: "", flags: [] };
  const flags = [...program.flags];
  for (const [kind, target] of grants) {
    // Servers and clients get a host, not one port: any --port then works.
    const wanted = kind === "net" ? target.replace(/:\d+$/, "") : target;
    const index = flags.findIndex((flag) =>
      flag === `--allow-${kind}` || flag.startsWith(`--allow-${kind}=`)
    );
    if (index < 0) {
      flags.push(`--allow-${kind}=${wanted}`);
    } else if (flags[index].includes("=")) {
      const list = flags[index].slice(flags[index].indexOf("=") + 1).split(
        ",",
      );
      if (!list.includes(wanted)) list.push(wanted);
      flags[index] = `--allow-${kind}=${list.join(",")}`;
    }
  }
  return ["deno run", ...flags.map(shellQuote), program.script]
    .concat(Deno.args.map(shellQuote)).join(" ");
}

/**
 * One line for a missing permission or a port in use (`Cannot <action>:
 * <cause>; <fix>`), or null for any other error.
 */
export function explain(error: unknown, action: string): string | null {
  if (error instanceof Deno.errors.NotCapable) {
    const found = /Requires (\w+) access to "([^"]*)"/.exec(error.message);
    if (found === null) {
      return `Cannot ${action}: ${error.message}`;
    }
    const [, kind, target] = found;
    return `Cannot ${action}: no ${kind} permission for ${target}; run: ${
      runLine([kind, target])
    }`;
  }
  if (
    error instanceof Deno.errors.AddrInUse ||
    (error as { code?: unknown })?.code === "EADDRINUSE"
  ) {
    return `Cannot ${action}: the address is in use (another server?); choose another port with --port N (--port 0 picks a free one)`;
  }
  return null;
}

/**
 * Exits 1 with one line for an error of listening on `hostname:port`: the
 * port in use (with the --port fix), a missing permission (with the
 * command that has it), an address this machine does not have.
 */
export function failListen(
  error: unknown,
  hostname: string,
  port: number,
): never {
  const where = `${
    hostname.includes(":") ? `[${hostname}]` : hostname
  }:${port}`;
  // node:tls (listenTls, serveHttps) reports by code, Deno.listen by class.
  const code = (error as { code?: unknown })?.code;
  if (error instanceof Deno.errors.AddrInUse || code === "EADDRINUSE") {
    fail(
      `Cannot listen on ${where}: the port is in use (is a server already running?); choose another with --port, e.g. ${taskName()} --port ${
        port === 65535 ? port - 1 : port + 10
      } (--port 0 picks a free one)`,
    );
  }
  if (
    error instanceof Deno.errors.AddrNotAvailable || code === "EADDRNOTAVAIL"
  ) {
    fail(
      `Cannot listen on ${where}: this machine has no such address; pass --hostname 127.0.0.1 (or an address of this machine)`,
    );
  }
  fail(
    explain(error, `listen on ${where}`) ??
      `Cannot listen on ${where}: ${(error as Error)?.message ?? error}`,
  );
}
