// Shared command-line handling for the examples: flags, the shared key, help.
import { parseArgs } from "node:util";
import { type HashName, parseHashName } from "../handshake.ts";

/** Flags every authenticated example understands. */
export interface CommonFlags {
  hostname: string;
  port: number;
  hash: HashName;
  key: string | Uint8Array;
  /** True when neither CONNAUTH_KEY nor --key-file was given. */
  demoKey: boolean;
}

/** The key the examples use when none is configured. Never for production. */
export const DEMO_KEY = "connauth demo key: do not use in production";

/** Extra flags an example declares, in node:util parseArgs form. */
export type ExtraOptions = Record<
  string,
  { type: "string" | "boolean"; short?: string; default?: string | boolean }
>;

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
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        help: { type: "boolean", short: "h" },
        port: { type: "string", short: "p" },
        hostname: { type: "string" },
        hash: { type: "string" },
        "key-file": { type: "string" },
        ...extra,
      },
    });
  } catch (error) {
    fail(`${(error as Error).message}\n\n${usage}`, 2);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  const port = Number(values.port ?? defaults.port ?? 18000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`Cannot use --port "${values.port}": expected 0 to 65535`, 2);
  }
  let hash: HashName = "SHA-256";
  try {
    if (values.hash !== undefined) hash = parseHashName(String(values.hash));
  } catch (error) {
    fail((error as Error).message, 2);
  }
  const { key, demoKey } = loadKey(values["key-file"] as string | undefined);
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

function loadKey(
  keyFile: string | undefined,
): { key: string | Uint8Array; demoKey: boolean } {
  if (keyFile !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(keyFile);
    } catch (error) {
      fail(
        `Cannot read --key-file "${keyFile}": ${
          (error as Error).message
        } (run with --allow-read=${keyFile})`,
        2,
      );
    }
    // A trailing newline from `echo secret > file` is not part of the key.
    let end = bytes.length;
    while (end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d)) {
      end--;
    }
    if (end === 0) fail(`Cannot use --key-file "${keyFile}": it is empty`, 2);
    return { key: bytes.subarray(0, end), demoKey: false };
  }
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("CONNAUTH_KEY");
  } catch {
    // No env permission: treated as not set.
  }
  if (fromEnv) return { key: fromEnv, demoKey: false };
  return { key: DEMO_KEY, demoKey: true };
}

/** Prints the demo-key warning to stderr. */
export function warnDemoKey(): void {
  console.error(
    "warning: using the built-in demo key; anyone can authenticate. Set CONNAUTH_KEY or pass --key-file for a real key",
  );
}

/** Prints `message` to stderr and exits with `code`. */
export function fail(message: string, code = 1): never {
  console.error(message);
  Deno.exit(code);
}

/** Common flag help lines. */
export const COMMON_HELP =
  `  --hostname NAME   address to use (default 127.0.0.1)
  --port N          TCP port (default 18000; 0 picks a free one)
  --hash NAME       HMAC hash: SHA-256 (default), SHA-1, SHA-384, SHA-512, MD5 (legacy)
  --key-file PATH   read the shared key from PATH (else CONNAUTH_KEY, else a demo key)
  -h, --help        show this help`;
