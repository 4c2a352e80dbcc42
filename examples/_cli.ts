// Shared command-line handling for the examples: flags, the shared key, help,
// and the small helpers every example uses (fail, ports, secret files, env,
// addresses and a rate-limited stderr log for the servers' lines). Examples
// import only public modules of the library: what they need beyond those is
// written here.
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { type HashName, parseHashName } from "../handshake.ts";

/** Flags every authenticated example understands. */
export interface CommonFlags {
  hostname: string;
  port: number;
  hash: HashName;
  key: string | Uint8Array;
  /** True when neither CONNAUTH_SECRET nor --secret-file was given. */
  demoKey: boolean;
}

/** The key the examples use when none is configured. Never for production. */
export const DEMO_KEY = "connauth demo key: do not use in production";

/** Extra flags an example declares, in node:util parseArgs form. */
export type ExtraOptions = Record<
  string,
  { type: "string" | "boolean"; short?: string; default?: string | boolean }
>;

/** Prints `message` to stderr and exits with `code`. */
export function fail(message: string, code = 1): never {
  console.error(message);
  Deno.exit(code);
}

/** What {@linkcode parseArgsOrExit} returns for the flags `O`. */
export type ParsedFlags<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean }>
>;

/**
 * Parses Deno.args with node:util parseArgs. On --help (declare it in
 * `options`) prints `usage` and exits 0; on a bad flag prints the message
 * and `usage` to stderr and exits 2.
 */
export function parseArgsOrExit<const O extends ParseArgsOptionsConfig>(
  usage: string,
  options: O,
  { allowPositionals = true }: { allowPositionals?: boolean } = {},
): ParsedFlags<O> {
  let parsed: ParsedFlags<O>;
  try {
    parsed = parseArgs({ args: Deno.args, allowPositionals, options });
  } catch (error) {
    fail(`${(error as Error).message}\n\n${usage}`, 2);
  }
  if ((parsed.values as { help?: unknown }).help) {
    console.log(usage);
    Deno.exit(0);
  }
  return parsed;
}

/** `text` (else `fallback`) as a TCP port; exits 2 when it is not 0 to 65535. */
export function parsePort(text: string | undefined, fallback: number): number {
  const port = Number(text ?? fallback);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`Cannot use --port "${text}": expected 0 to 65535`, 2);
  }
  return port;
}

/**
 * `text` (else 10000) as a --timeout in milliseconds; exits 2 when it is not
 * above 0. `unit` is how the error message names milliseconds.
 */
export function parseTimeout(
  text: string | undefined,
  unit = "milliseconds",
): number {
  const timeout = Number(text ?? 10_000);
  if (!(timeout > 0)) {
    fail(
      `Cannot use --timeout "${text}": expected a number of ${unit} above 0`,
      2,
    );
  }
  return timeout;
}

/**
 * The bytes of the secret file `path` given with `--flagName`; exits 2 with
 * the --allow-read hint when it cannot be read.
 */
export function readSecretFile(
  path: string,
  flagName: string,
): Uint8Array<ArrayBuffer> {
  try {
    return Deno.readFileSync(path);
  } catch (error) {
    fail(
      `Cannot read --${flagName} "${path}": ${
        (error as Error).message
      } (run with --allow-read=${path})`,
      2,
    );
  }
}

/**
 * The text of `name` in the folder `dir` that `deno task certs` wrote; exits
 * 1 saying to run it (or pass --certs DIR) when it cannot be read.
 */
export function readCertsFile(dir: string, name: string): string {
  const path = `${dir}/${name}`;
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    fail(
      `Cannot read ${path}: ${
        (error as Error).message
      }; run \`deno task certs\` first (or pass --certs DIR)`,
    );
  }
}

/** The environment variable `name`, or undefined when unset or not permitted. */
export function envOrUndefined(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // No env permission: treated as not set.
    return undefined;
  }
}

/** Prints `usage` and exits 0 on --help; exits 2 with a message on bad flags. */
export function parseFlags<E extends ExtraOptions>(
  usage: string,
  extra: E = {} as E,
  defaults: { port?: number } = {},
): {
  common: CommonFlags;
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
} {
  const parsed = parseArgsOrExit(usage, {
    help: { type: "boolean", short: "h" },
    port: { type: "string", short: "p" },
    hostname: { type: "string" },
    hash: { type: "string" },
    "secret-file": { type: "string" },
    ...extra,
  });
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const port = parsePort(
    values.port as string | undefined,
    defaults.port ?? 18000,
  );
  let hash: HashName = "SHA-256";
  try {
    if (values.hash !== undefined) hash = parseHashName(String(values.hash));
  } catch (error) {
    fail((error as Error).message, 2);
  }
  const { key, demoKey } = loadKey(values["secret-file"] as string | undefined);
  return {
    common: {
      hostname: String(values.hostname ?? "127.0.0.1"),
      port,
      hash,
      key,
      demoKey,
    },
    values,
    positionals: parsed.positionals,
  };
}

/**
 * {@linkcode parseFlags} for the examples whose only flag of their own is
 * `--timeout MS` (default 10000): prints the demo-key warning when no
 * secret is configured, then checks the timeout (exits 2 when it is bad).
 */
export function parseTimedFlags(
  usage: string,
  defaults: { port?: number } = {},
): { common: CommonFlags; timeout: number; positionals: string[] } {
  const { common, values, positionals } = parseFlags(
    usage,
    { timeout: { type: "string" } },
    defaults,
  );
  if (common.demoKey) warnDemoKey();
  const timeout = parseTimeout(values.timeout as string | undefined);
  return { common, timeout, positionals };
}

function loadKey(
  keyFile: string | undefined,
): { key: string | Uint8Array; demoKey: boolean } {
  if (keyFile !== undefined) {
    const bytes = readSecretFile(keyFile, "secret-file");
    // A trailing newline from `echo secret > file` is not part of the key.
    let end = bytes.length;
    while (end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d)) {
      end--;
    }
    if (end === 0) {
      fail(`Cannot use --secret-file "${keyFile}": it is empty`, 2);
    }
    return { key: bytes.subarray(0, end), demoKey: false };
  }
  const fromEnv = envOrUndefined("CONNAUTH_SECRET");
  if (fromEnv) return { key: fromEnv, demoKey: false };
  return { key: DEMO_KEY, demoKey: true };
}

/** Prints the demo-key warning to stderr. */
export function warnDemoKey(): void {
  console.error(
    "warning: using the built-in demo key; anyone can authenticate. Set CONNAUTH_SECRET or pass --secret-file for a real key",
  );
}

/** Common flag help lines. */
export const COMMON_HELP =
  `  --hostname NAME   address to use (default 127.0.0.1)
  --port N          TCP port (default 18000; 0 picks a free one)
  --hash NAME       HMAC hash: SHA-256 (default), SHA-1, SHA-384, SHA-512, MD5 (legacy)
  --secret-file PATH   read the shared key from PATH, minus trailing CR/LF bytes
                    (else CONNAUTH_SECRET, else a demo key)
  -h, --help        show this help`;

/** An address for a log line: `127.0.0.1:5000`, `[::1]:5000`, `unix:/path`. */
export function formatAddr(addr: Deno.Addr | undefined): string {
  if (addr === undefined) return "unknown";
  if ("hostname" in addr) {
    const host = addr.hostname.includes(":")
      ? `[${addr.hostname}]`
      : addr.hostname;
    return `${host}:${addr.port}`;
  }
  return "path" in addr ? `${addr.transport}:${addr.path}` : addr.transport;
}

/** What {@linkcode rateLimitedLog} returns. */
export interface RateLimitedLog {
  /** Prints a line, or counts it when over the rate; `text` runs only if printed. */
  line(text: () => string): void;
  /** Prints how many lines were held back, if any (call before exiting). */
  flush(): void;
}

/**
 * A stderr log that prints at most `perSecond` lines a second, as the
 * library's own default log of serve() does: a flood of clients cannot
 * flood the terminal, nor cost the server a formatted write per
 * connection. The lines held back are counted in one line.
 */
export function rateLimitedLog(perSecond = 20): RateLimitedLog {
  let second = -Infinity;
  let printed = 0;
  let held = 0;
  const flush = () => {
    if (held === 0) return;
    console.error(`${held} more lines suppressed (over ${perSecond} a second)`);
    held = 0;
  };
  return {
    line(text) {
      const now = Date.now();
      if (now - second >= 1000) {
        flush();
        second = now;
        printed = 0;
      }
      if (printed < perSecond) {
        printed += 1;
        console.error(text());
      } else {
        held += 1;
      }
    },
    flush,
  };
}
