// Shared command-line handling for the Noise examples: flags and the PSK.
import type { NoisePsk } from "../noise.ts";
import {
  fail,
  parseArgsOrExit,
  parsePort,
  parseTimeout,
  readEnv,
  readSecretFile,
} from "./_cli.ts";

export { fail };

/** Names an address for the log: `127.0.0.1:18002`, `[::1]:18002`. */
export function describeAddr(addr: Deno.Addr): string {
  if (addr.transport !== "tcp" && addr.transport !== "udp") {
    return addr.transport;
  }
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return `${host}:${addr.port}`;
}

/** The Noise examples' default port. */
export const NOISE_PORT = 18002;

/** Flags both Noise examples understand. */
export interface NoiseFlags {
  hostname: string;
  port: number;
  psk: NoisePsk;
  prologue: string;
  timeout: number;
  positionals: string[];
}

/**
 * The PSK the examples use when none is configured: public, so anyone can
 * connect. Never for production.
 */
export const DEMO_PSK =
  "636f6e6e617574682064656d6f206b65793a206e6f7420666f72207573652121";

/**
 * Help lines for the flags {@linkcode parseNoiseFlags} reads; `timeout` is
 * the line for --timeout, which means something else to each program.
 */
export function noiseHelp(timeout: string): string {
  return `  --hostname NAME   address to use (default 127.0.0.1)
  --port N          TCP port (default 18002; 0 picks a free one for the server)
  --psk-file PATH   read the pre-shared key from PATH: 64 hex digits or 32 raw bytes
                    (else CONNAUTH_PSK, 64 hex digits; else a public demo key)
  --prologue TEXT   bind this text into the handshake; both ends must agree
                    (default "connauth noise echo")
  --timeout MS      ${timeout} (default 10000)
  -h, --help        show this help

Make a key with: openssl rand -hex 32`;
}

function loadPsk(pskFile: string | undefined): NoisePsk {
  if (pskFile !== undefined) {
    const data = readSecretFile(pskFile, "psk-file");
    if (data.length === 32) return data;
    const text = new TextDecoder().decode(data).trim();
    if (/^[0-9a-fA-F]{64}$/.test(text)) return text;
    fail(
      `Cannot use --psk-file "${pskFile}": expected 64 hexadecimal digits or 32 raw bytes, got ${data.length} bytes; make one with: openssl rand -hex 32 > ${pskFile}`,
      2,
    );
  }
  const fromEnv = readEnv("CONNAUTH_PSK", "--psk-file");
  if (fromEnv !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(fromEnv.trim())) {
      fail(
        "Cannot use CONNAUTH_PSK: expected 64 hexadecimal digits; make one with: openssl rand -hex 32",
        2,
      );
    }
    return fromEnv.trim();
  }
  console.error(
    "warning: using the public demo pre-shared key; anyone can connect. Set CONNAUTH_PSK (openssl rand -hex 32) or pass --psk-file",
  );
  return DEMO_PSK;
}

/** Parses Deno.args; prints `usage` and exits on --help or a bad flag. */
export function parseNoiseFlags(usage: string): NoiseFlags {
  const parsed = parseArgsOrExit(usage, {
    help: { type: "boolean", short: "h" },
    hostname: { type: "string" },
    port: { type: "string" },
    "psk-file": { type: "string" },
    prologue: { type: "string" },
    timeout: { type: "string" },
  });
  const { values } = parsed;
  const port = parsePort(values.port, NOISE_PORT);
  const timeout = parseTimeout(values.timeout, "ms");
  return {
    hostname: values.hostname ?? "127.0.0.1",
    port,
    psk: loadPsk(values["psk-file"]),
    prologue: values.prologue ?? "connauth noise echo",
    timeout,
    positionals: parsed.positionals,
  };
}
