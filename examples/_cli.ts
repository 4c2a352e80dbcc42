// Shared command-line handling for the examples: the common flags, ports,
// timeouts, the shared key from a file or the environment, and reading
// files the flags name (parsing itself is in _args.ts). Examples import
// only public modules of the library: what they need beyond those is
// written here.
import { type HashName, parseHashName } from "../handshake.ts";
import { parseArgsOrExit } from "./_args.ts";
import { explain, fail, runLine } from "./_program.ts";

export { fail, parseArgsOrExit };

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

/** `text` (else `fallback`) as a TCP port; exits 2 when it is not 0 to 65535. */
export function parsePort(text: string | undefined, fallback: number): number {
  const port = text === undefined ? fallback : Number(text);
  if (!/^\d+$/.test(text ?? "0") || !(port >= 0 && port <= 65535)) {
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
 * the cause (and, for a missing permission, the command that has it) when
 * it cannot be read.
 */
export function readSecretFile(
  path: string,
  flagName: string,
): Uint8Array<ArrayBuffer> {
  try {
    return Deno.readFileSync(path);
  } catch (error) {
    fail(
      explain(error, `read --${flagName} "${path}"`) ??
        `Cannot read --${flagName} "${path}": ${(error as Error).message}`,
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
    if (error instanceof Deno.errors.NotCapable) {
      fail(
        `Cannot read ${path}: no read permission for ${dir}; run: ${
          runLine(["read", dir])
        }`,
      );
    }
    fail(
      `Cannot read ${path}: ${
        (error as Error).message
      }; run \`deno task certs\` first (or pass --certs DIR)`,
    );
  }
}

/**
 * The environment variable `name`, or undefined when it is unset. Exits 2
 * when it cannot be read (no --allow-env for it: it may be set, and a set
 * key must never be swapped for the public demo one), or when it is empty.
 * `fileFlag` is the flag that reads the key from a file instead.
 */
export function readEnv(name: string, fileFlag: string): string | undefined {
  let value: string | undefined;
  try {
    value = Deno.env.get(name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    fail(
      `Cannot read ${name}: no env permission for it (a key that is set is never replaced by the public demo key); run: ${
        runLine(["env", name])
      } (or pass ${fileFlag} PATH)`,
      2,
    );
  }
  if (value === "") {
    fail(
      `Cannot use ${name}: it is set but empty; set it to the key (or unset it to run with the public demo key)`,
      2,
    );
  }
  return value;
}

/**
 * Parses the common flags and `extra`. Prints `usage` and exits 0 on --help;
 * exits 2 with one line on a bad flag. The key is read (from --secret-file,
 * else CONNAUTH_SECRET) when `needsKey(values)` says so (always by default);
 * otherwise `common.key` is the demo key, unused.
 */
export function parseFlags<E extends ExtraOptions>(
  usage: string,
  extra: E = {} as E,
  defaults: {
    port?: number;
    needsKey?: (values: Record<string, unknown>) => boolean;
  } = {},
): {
  common: CommonFlags;
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
} {
  const parsed = parseArgsOrExit(usage, {
    help: { type: "boolean", short: "h" },
    port: { type: "string" },
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
    fail(
      `Cannot use --hash "${values.hash}": ${
        (error as Error).message.replace(/^Cannot [^:]*: /, "")
      }`,
      2,
    );
  }
  const needsKey = defaults.needsKey?.(values) ?? true;
  const { key, demoKey } = needsKey
    ? loadKey(values["secret-file"] as string | undefined)
    : { key: DEMO_KEY, demoKey: true };
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
 * `--timeout MS` (default 10000): checks the timeout (exits 2 when it is
 * bad), then prints the demo-key warning when no secret is configured.
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
  const timeout = parseTimeout(values.timeout as string | undefined);
  if (common.demoKey) warnDemoKey();
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
  const fromEnv = readEnv("CONNAUTH_SECRET", "--secret-file");
  if (fromEnv !== undefined) return { key: fromEnv, demoKey: false };
  return { key: DEMO_KEY, demoKey: true };
}

/** Prints the demo-key warning to stderr. */
export function warnDemoKey(): void {
  console.error(
    "warning: using the built-in demo key; anyone can authenticate. Set CONNAUTH_SECRET or pass --secret-file for a real key",
  );
}

/**
 * Help lines of the common flags (end the options with
 * {@linkcode HELP_LINE}): `port` is the default port; `hostname`
 * the line for --hostname; `client` leaves out that port 0 picks a free
 * one (a server's choice).
 */
export function commonHelp(
  port: number,
  { hostname = "address to use (default 127.0.0.1)", client = false }: {
    hostname?: string;
    client?: boolean;
  } = {},
): string {
  return `  --hostname NAME   ${hostname}
  --port N          TCP port (default ${port}${
    client ? "" : "; 0 picks a free one"
  })
  --hash NAME       HMAC hash: SHA-256 (default), SHA-1, SHA-384, SHA-512, MD5 (legacy)
  --secret-file PATH   read the shared key from PATH, minus trailing CR/LF bytes
                    (else CONNAUTH_SECRET, else a demo key)`;
}

/** The help line of -h, --help: the last line of an example's options. */
export const HELP_LINE = "  -h, --help        show this help";
