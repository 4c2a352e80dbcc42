// Private: SNI for listenTls(): the `sni` option read and checked (names
// normalised, each certificate and key checked as the default pair is),
// the table that picks a certificate by the server name a client asks for
// (exact name first, then a `*.` wildcard one label deep), and the guarded
// callback node:tls calls with that name.
//
// On Deno 2.9.6 a throw inside node:tls's SNI callback is uncaught and ends
// the process, so the callback never throws: a fault refuses that one
// handshake (node:tls then reports it as a client error, which
// _tls_server.ts reports through onError).
//
// Also on Deno 2.9.6: with an SNI callback installed, node:tls parses the
// ClientHello in a way that stalls on one larger than about 4 KiB (it never
// answers; the handshake deadline closes it). The callback is therefore
// installed only while names exist (_tls_credentials.ts).
import * as nodeTls from "node:tls";
import type { SniCertificate } from "./tls.ts";
import { parseIp } from "./_ip.ts";
import { type KeyPair, readKeyPair } from "./_pem.ts";
import { clip, errorText } from "./_tls_diagnosis.ts";

/** One checked `sni` entry: its normalised name and its pair. */
export interface SniEntry {
  /** Lower case, no trailing dot; `*.` first for a wildcard. */
  readonly name: string;
  readonly pair: KeyPair;
}

const DNS_LABEL = /^([a-z0-9]|[a-z0-9][a-z0-9-]{0,61}[a-z0-9])$/;

/**
 * A server name as the table keys it: lower case, without one trailing
 * dot. What a client sends is normalised the same way before the lookup.
 */
export function normaliseServerName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/** Checks one `sni` name; returns it normalised. */
function checkName(name: string, action: string): string {
  const shown = JSON.stringify(clip(name));
  if (parseIp(name) !== null) {
    throw new TypeError(
      `Cannot ${action}: \`sni\` name ${shown} is an IP address, which clients never send as a server name; leave it out: a client that connects by address gets the default \`cert\``,
    );
  }
  const normal = normaliseServerName(name);
  const labels = normal.split(".");
  const ok = normal.length > 0 && normal.length <= 253 &&
    labels.every((label, i) =>
      DNS_LABEL.test(label) || (i === 0 && label === "*" && labels.length > 2)
    );
  if (!ok) {
    throw new TypeError(
      `Cannot ${action}: \`sni\` name ${shown} is not a DNS name; use ASCII letters, digits, hyphens and dots (an internationalised name in its "xn--" form), and "*." only as the first label of a name with at least two more`,
    );
  }
  return normal;
}

/**
 * Reads and checks the `sni` option: an object of server names to
 * {@linkcode SniCertificate}s, each pair read and checked as the default
 * one (PEM text or files, the key matching its certificate).
 *
 * @throws {TypeError} When `sni` is not an object, a name is not a DNS
 *   name or appears twice once normalised, an entry is not an object or
 *   misses its certificate or key; as `readKeyPair`. Other fields of an
 *   entry are ignored (an `IssuedCertificate` from certs.ts fits).
 * @throws {TlsError} `"key-mismatch"`.
 */
export async function readSni(
  sni: Record<string, SniCertificate>,
  action: string,
): Promise<SniEntry[]> {
  if (typeof sni !== "object" || sni === null || Array.isArray(sni)) {
    throw new TypeError(
      `Cannot ${action}: \`sni\` must be an object of server names to certificates (\`{ "a.example": { cert, key } }\`), got ${
        Array.isArray(sni) ? "an array" : sni === null ? "null" : typeof sni
      }`,
    );
  }
  const entries: SniEntry[] = [];
  const seen = new Map<string, string>();
  for (const [given, value] of Object.entries(sni)) {
    const name = checkName(given, action);
    const earlier = seen.get(name);
    if (earlier !== undefined) {
      throw new TypeError(
        `Cannot ${action}: \`sni\` names ${JSON.stringify(earlier)} and ${
          JSON.stringify(given)
        } are the same name (names are compared in lower case, without a trailing dot); keep one`,
      );
    }
    seen.set(name, given);
    const option = `sni[${JSON.stringify(given)}]`;
    if (typeof value !== "object" || value === null) {
      throw new TypeError(
        `Cannot ${action}: \`${option}\` must be an object with \`cert\`/\`key\` (PEM text) or \`certFile\`/\`keyFile\` (paths)`,
      );
    }
    const missing =
      `\`${option}\` needs a certificate and its private key; pass \`cert\`/\`key\` (PEM text) or \`certFile\`/\`keyFile\` (paths)`;
    const pair = await readKeyPair(
      value,
      {
        cert: `the certificate for ${JSON.stringify(given)}`,
        key: `the private key for ${JSON.stringify(given)}`,
      },
      action,
      missing,
      `${option}.`,
    );
    if (pair === undefined) {
      throw new TypeError(`Cannot ${action}: ${missing}`);
    }
    entries.push({ name, pair });
  }
  return entries;
}

/**
 * The certificates by server name: a secure context for each, holding the
 * client CAs too (a context picked by SNI replaces the default one whole,
 * client verification included).
 */
export class SniTable {
  #exact = new Map<string, nodeTls.SecureContext>();
  #wildcard = new Map<string, nodeTls.SecureContext>();

  constructor(entries: readonly SniEntry[], clientCa: string | undefined) {
    for (const { name, pair } of entries) {
      const context = nodeTls.createSecureContext({
        cert: pair.cert,
        key: pair.key,
        ca: clientCa,
      });
      if (name.startsWith("*.")) this.#wildcard.set(name.slice(2), context);
      else this.#exact.set(name, context);
    }
  }

  /** How many names the table holds. */
  get size(): number {
    return this.#exact.size + this.#wildcard.size;
  }

  /**
   * The context for a server name a client sent; undefined for the
   * default (no name, or one the table does not hold). A wildcard covers
   * one label: `*.example.com` covers `a.example.com`, not
   * `example.com` nor `a.b.example.com`.
   */
  select(servername: unknown): nodeTls.SecureContext | undefined {
    if (typeof servername !== "string" || servername === "") return undefined;
    const name = normaliseServerName(servername);
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    return dot > 0 ? this.#wildcard.get(name.slice(dot + 1)) : undefined;
  }
}

/** A failure inside the SNI callback, handed to node:tls to refuse. */
export class SniFault extends Error {
  constructor(servername: unknown, cause: unknown) {
    super(
      `the connection was closed after an internal error choosing the certificate for server name ${
        typeof servername === "string"
          ? JSON.stringify(clip(servername))
          : "(none)"
      }: ${errorText(cause)}`,
      { cause },
    );
    this.name = "SniFault";
  }
}

/** node:tls's SNI callback. */
export type SniCallback = (
  servername: string,
  done: (error: Error | null, context?: nodeTls.SecureContext) => void,
) => void;

/**
 * The SNI callback for node:tls over `table`, guarded: it never throws. A
 * throw while choosing refuses that handshake with an {@linkcode SniFault}
 * (node:tls reports it as a client error); a throw from node:tls's own
 * continuation goes to `onFault` (the handshake then ends at its
 * deadline).
 */
export function sniCallback(
  table: SniTable,
  onFault: (error: unknown) => void,
): SniCallback {
  const fault = (error: unknown) => {
    try {
      onFault(error);
    } catch {
      // the report must not throw either
    }
  };
  return (servername, done) => {
    let context: nodeTls.SecureContext | undefined;
    try {
      context = table.select(servername);
    } catch (error) {
      try {
        done(new SniFault(servername, error));
      } catch (thrown) {
        fault(thrown);
      }
      return;
    }
    try {
      done(null, context);
    } catch (error) {
      fault(error);
    }
  };
}
