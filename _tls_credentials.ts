// Private: a listenTls() listener's credentials: the default certificate
// and key, the client CAs and the SNI certificates (_tls_sni.ts). They are
// read and checked as a whole, at listen and on every setCredentials()
// (nothing changes unless all of it is good), then put in force at once
// for new connections: node:tls on Deno 2.9.6 takes the server's default
// context (`setSecureContext`) and its SNI callback (`_SNICallback`, not a
// public field) when it accepts a connection, so a handshake under way and
// the connections already established keep what they started with. The
// state each connection started with is kept (`pin`), so its client
// certificate is explained against the CAs its handshake used, and checked
// again when a client CA was taken out since (`trustedNow`): a client that
// opened its TCP connection before the call must not pass with a CA the
// call removed.
import type * as nodeTls from "node:tls";
import { X509Certificate } from "node:crypto";
import type { TlsCredentials } from "./tls.ts";
import {
  fingerprintOf,
  parseCert,
  readKeyPair,
  readPem,
  requireCerts,
} from "./_pem.ts";
import { readSni, sniCallback, type SniEntry, SniTable } from "./_tls_sni.ts";

/** The credentials a listener hands out, checked. */
export interface CredentialState {
  readonly cert: string;
  readonly key: string;
  /** The client CAs' PEM text; undefined for plain TLS. */
  readonly clientCa: string | undefined;
  readonly clientCas: readonly X509Certificate[];
  readonly sni: readonly SniEntry[];
  /** `sni`'s contexts, made with `clientCa`. */
  readonly sniTable: SniTable;
}

/** The fields of {@linkcode TlsCredentials}, as listenTls() options. */
export const CREDENTIAL_FIELDS = [
  "cert",
  "key",
  "certFile",
  "keyFile",
  "clientCa",
  "clientCaFile",
  "sni",
] as const;

const MISSING_SERVER_PAIR =
  "a certificate and its private key are required; pass `cert`/`key` (PEM text) or `certFile`/`keyFile` (paths); for development, `deno task certs` writes certs/server.pem and certs/server-key.pem";

/**
 * Reads credentials: all of them at listen (`base` undefined: a pair is
 * required), or the fields given on top of `base` (setCredentials: a field
 * left out keeps its value; `sni` replaces the whole map).
 *
 * @throws {TypeError} As readKeyPair, readPem and readSni; for no field
 *   given to setCredentials, or a client CA given to a listener
 *   opened without one.
 * @throws {TlsError} `"key-mismatch"`.
 * @throws {Deno.errors.NotFound} When a `*File` option names no file.
 */
export async function readCredentials(
  input: TlsCredentials,
  action: string,
  base?: CredentialState,
): Promise<CredentialState> {
  if (base !== undefined) checkUpdate(input, action, base);
  const pair = await readKeyPair(
    input,
    { cert: "the server certificate", key: "the private key" },
    action,
    MISSING_SERVER_PAIR,
  );
  if (pair === undefined && base === undefined) {
    throw new TypeError(`Cannot ${action}: ${MISSING_SERVER_PAIR}`);
  }
  const clientCa = await readPem(input.clientCa, input.clientCaFile, {
    what: "the client CA certificates",
    textOption: "clientCa",
    fileOption: "clientCaFile",
  }, action);
  const clientCas = clientCa === undefined
    ? undefined
    : requireCerts(clientCa, action, "clientCa").map((pem) =>
      parseCert(pem, action, "clientCa")
    );
  const sni = input.sni === undefined
    ? undefined
    : await readSni(input.sni, action);
  const entries = sni ?? base?.sni ?? [];
  const ca = clientCa ?? base?.clientCa;
  return {
    cert: pair?.cert ?? base!.cert,
    key: pair?.key ?? base!.key,
    clientCa: ca,
    clientCas: clientCas ?? base?.clientCas ?? [],
    sni: entries,
    // The SNI contexts are made here, with the client CAs they must hold,
    // so that one node:tls cannot load throws now, before anything changes.
    sniTable: new SniTable(entries, ca),
  };
}

/**
 * setCredentials()'s own checks: an object with at least one field (other
 * fields are ignored, as listenTls() ignores them), and client CAs only
 * for a listener that has them.
 */
function checkUpdate(
  input: TlsCredentials,
  action: string,
  base: CredentialState,
): void {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new TypeError(
      `Cannot ${action}: expected a credentials object (\`{ cert, key }\`, \`{ clientCa }\`, \`{ sni }\`, ...), got ${
        input === null
          ? "null"
          : Array.isArray(input)
          ? "an array"
          : typeof input
      }`,
    );
  }
  const given = CREDENTIAL_FIELDS.filter((field) => input[field] !== undefined);
  if (given.length === 0) {
    throw new TypeError(
      `Cannot ${action}: no credentials given; pass \`cert\`/\`key\` (or \`certFile\`/\`keyFile\`), \`clientCa\` (or \`clientCaFile\`) or \`sni\``,
    );
  }
  if (
    base.clientCa === undefined &&
    (input.clientCa !== undefined || input.clientCaFile !== undefined)
  ) {
    throw new TypeError(
      `Cannot ${action}: the listener was opened without \`clientCa\`, so it asks for no client certificate; open a new listener with \`clientCa\` to turn on mutual TLS`,
    );
  }
}

/** A node:tls server's fields this file sets; `_SNICallback` is private. */
type SniServer = nodeTls.Server & { _SNICallback?: unknown };

/**
 * The credentials in force on a node:tls server, replaced whole for new
 * connections by {@linkcode ServerCredentials.set}.
 */
export class ServerCredentials {
  #server: SniServer;
  #state: CredentialState;
  #onFault: (error: unknown) => void;
  #pinned = new WeakMap<object, CredentialState>();
  /** setCredentials() calls, one after the other in call order. */
  #queue: Promise<unknown> = Promise.resolve();

  /**
   * Takes over a server created with `state`'s certificate, key and client
   * CAs, and installs its SNI callback when `state` has names.
   * `onFault` reports a throw from node:tls inside the SNI callback.
   */
  constructor(
    server: nodeTls.Server,
    state: CredentialState,
    onFault: (error: unknown) => void,
  ) {
    this.#server = server;
    this.#state = state;
    this.#onFault = onFault;
    this.#installSni(state);
  }

  /** What a new connection gets now. */
  get current(): CredentialState {
    return this.#state;
  }

  /** Notes the state a TCP socket node:tls just accepted started with. */
  pin(raw: object): void {
    this.#pinned.set(raw, this.#state);
  }

  /**
   * The state a TLS socket's handshake started with (node:tls keeps the
   * TCP socket it wraps as `_parent`), else the current one.
   */
  of(socket: unknown): CredentialState {
    try {
      const raw = (socket as { _parent?: unknown } | undefined)?._parent;
      if (typeof raw === "object" && raw !== null) {
        return this.#pinned.get(raw) ?? this.#state;
      }
    } catch {
      // not a node:tls socket as we know it
    }
    return this.#state;
  }

  /**
   * Reads and checks `input` on top of what is in force, then puts it in
   * force for new connections; a bad input throws and changes nothing.
   * Calls take effect one after the other, in call order.
   */
  set(input: TlsCredentials, action: string): Promise<void> {
    const run = this.#queue.then(async () => {
      const state = await readCredentials(input, action, this.#state);
      this.#checkSni(state, action);
      this.#server.setSecureContext({
        cert: state.cert,
        key: state.key,
        ca: state.clientCa,
      });
      this.#state = state;
      this.#installSni(state);
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** SNI needs the runtime's per-server hook (Deno 2.9.6 has it). */
  #checkSni(state: CredentialState, action: string): void {
    if (state.sni.length > 0 && !Object.hasOwn(this.#server, "_SNICallback")) {
      throw new TypeError(
        `Cannot ${action}: this runtime's node:tls server has no SNI hook connauth knows (made for Deno 2.9.6); leave out \`sni\` or use Deno 2.9.6`,
      );
    }
  }

  /**
   * The SNI callback for `state`, or none when it has no names: with one
   * installed, node:tls on Deno 2.9.6 stalls on a ClientHello over about
   * 4 KiB (see _tls_sni.ts).
   */
  #installSni(state: CredentialState): void {
    this.#checkSni(state, "listen with TLS");
    this.#server._SNICallback = state.sni.length === 0
      ? undefined
      : sniCallback(state.sniTable, this.#onFault);
  }
}

/**
 * Whether a client certificate the runtime verified against `pinned`'s
 * client CAs (those in force when its connection was accepted) is trusted
 * by `current`'s too: yes when no CA was taken out since; else only when
 * one of `current`'s CAs issued it. One issued by an intermediate the
 * client sent is not tied to a CA here, and is refused while a CA was
 * taken out (the client may reconnect: it is then verified against the
 * CAs in force).
 */
export function trustedNow(
  der: Uint8Array,
  pinned: CredentialState,
  current: CredentialState,
): boolean {
  if (pinned === current || pinned.clientCa === current.clientCa) return true;
  const fingerprint = (ca: X509Certificate) =>
    fingerprintOf(new Uint8Array(ca.raw));
  const now = new Set(current.clientCas.map(fingerprint));
  if (pinned.clientCas.every((ca) => now.has(fingerprint(ca)))) return true;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return false;
  }
  return current.clientCas.some((ca) => {
    try {
      return cert.checkIssued(ca) && cert.verify(ca.publicKey);
    } catch {
      return false;
    }
  });
}
