// Private: the options of listenMultiprocessing() and
// connectMultiprocessing(), checked once: the authkey (a listener's may be
// a list, for key rotation) imported as an HMAC key for each digest we may
// use (then wiped), the digest we ask for, the
// limits and the deadline (Keys), a listener's budgets (ListenLimits), and
// where to listen or connect (a TCP host and port, or a Unix socket path).
import {
  checkIpv6Prefix,
  checkKeyCount,
  checkLimit,
  checkPort,
  checkTimeout,
} from "./_options.ts";
import { utf8 } from "./_bytes.ts";
import { DEFAULT_TIMEOUT } from "./_deadline.ts";
import { type HashName, HmacKey } from "./handshake.ts";
import type {
  MultiprocessingAuthOptions,
  MultiprocessingDigest,
} from "./multiprocessing.ts";

/** Default largest message a connection receives: 64 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;

/** Default `maxPending` of a listener. */
export const DEFAULT_MAX_PENDING = 64;

/** Default `ipv6Prefix` of a listener: a host's usual /64. */
export const DEFAULT_IPV6_PREFIX = 64;

/** A listener's checked budgets. */
export interface ListenLimits {
  /**
   * Most connections not yet authenticated (more evict one), and most
   * authenticated ones waiting for accept() (more pause the accept loop).
   */
  readonly maxPending: number;
  /** Leading bits of an IPv6 address that name one peer for fairness. */
  readonly ipv6Prefix: number;
}

/** Checks `maxPending` and `ipv6Prefix` of listenMultiprocessing(). */
export function listenLimits(
  options: { maxPending?: number; ipv6Prefix?: number },
): ListenLimits {
  return {
    maxPending: checkLimit(
      options.maxPending,
      DEFAULT_MAX_PENDING,
      "maxPending",
    ),
    ipv6Prefix: checkIpv6Prefix(options.ipv6Prefix, DEFAULT_IPV6_PREFIX),
  };
}

const HASHES: Readonly<Record<MultiprocessingDigest, HashName>> = {
  sha256: "SHA-256",
  sha384: "SHA-384",
  md5: "MD5",
};

/** The checked authentication options, with the authkey imported. */
export interface Keys {
  readonly legacyMd5: boolean;
  /** The digest named in the challenges we deliver. */
  readonly digest: "sha256" | "sha384";
  readonly maxMessageSize: number;
  /** The handshake's deadline, in ms. */
  readonly timeout: number;
  /**
   * The authkeys for `name`, in the order given (one for a client);
   * undefined for MD5 unless `legacyMd5`.
   */
  get(name: MultiprocessingDigest): readonly HmacKey[] | undefined;
}

function typeOf(value: unknown): string {
  return value === null ? "null" : typeof value;
}

/** Most authkeys a listener accepts at once. */
export const MAX_AUTHKEYS = 8;

/**
 * Copies the authkey, or a listener's list of them (`list`), into bytes of
 * our own (wiped once imported).
 */
function authkeyList(
  authkey: unknown,
  list: boolean,
): Uint8Array<ArrayBuffer>[] {
  if (!Array.isArray(authkey)) return [authkeyBytes(authkey, "the authkey")];
  if (!list) {
    throw new TypeError(
      "Cannot use the authkey: a list of authkeys is for a listener (key rotation); a client proves one, so pass one authkey",
    );
  }
  checkKeyCount(authkey.length, MAX_AUTHKEYS, {
    plural: "authkeys",
    one: "authkey",
    current: "authkey",
  });
  const raws: Uint8Array<ArrayBuffer>[] = [];
  try {
    for (let i = 0; i < authkey.length; i++) {
      raws.push(authkeyBytes(authkey[i], `authkey[${i}]`));
    }
  } catch (error) {
    for (const raw of raws) raw.fill(0);
    throw error;
  }
  return raws;
}

/** Copies one authkey into bytes of our own (wiped once imported). */
function authkeyBytes(authkey: unknown, name: string): Uint8Array<ArrayBuffer> {
  const raw = typeof authkey === "string"
    ? utf8(authkey)
    : authkey instanceof Uint8Array
    ? new Uint8Array(authkey)
    : undefined;
  if (raw === undefined) {
    throw new TypeError(
      `Cannot use ${name}: expected a string or Uint8Array, got ${
        typeOf(authkey)
      }`,
    );
  }
  if (raw.byteLength === 0) {
    throw new TypeError(
      `Cannot use ${name}: it is empty; give the same non-empty authkey as the Python side`,
    );
  }
  return raw;
}

/**
 * Checks the options both functions share and imports the authkey (or,
 * for a listener, `list`, each of the list) for every digest allowed.
 */
export async function importKeys(
  options: MultiprocessingAuthOptions,
  list = false,
): Promise<Keys> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot use the options: expected an object, got ${typeOf(options)}`,
    );
  }
  const raws = authkeyList(options.authkey, list);
  try {
    const legacyMd5 = options.legacyMd5 ?? false;
    if (typeof legacyMd5 !== "boolean") {
      throw new TypeError(
        `Cannot use legacyMd5: expected a boolean, got ${typeof legacyMd5}`,
      );
    }
    const digest = options.digest ?? "sha256";
    if (digest !== "sha256" && digest !== "sha384") {
      throw new TypeError(
        `Cannot use digest "${digest}": expected "sha256" or "sha384"`,
      );
    }
    const maxMessageSize = checkLimit(
      options.maxMessageSize,
      DEFAULT_MAX_MESSAGE_SIZE,
      "maxMessageSize",
    );
    const timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
    const keys = new Map<MultiprocessingDigest, HmacKey[]>();
    for (const name of ["sha256", "sha384", "md5"] as const) {
      if (name === "md5" && !legacyMd5) continue;
      const imported: HmacKey[] = [];
      for (const raw of raws) {
        imported.push(await HmacKey.import(raw, { hash: HASHES[name] }));
      }
      keys.set(name, imported);
    }
    return {
      legacyMd5,
      digest,
      maxMessageSize,
      timeout,
      get: (name) => keys.get(name),
    };
  } finally {
    for (const raw of raws) raw.fill(0);
  }
}

/** Where to listen or connect, and how to name it in messages. */
export type Target =
  | { readonly path: string; readonly where: string }
  | {
    readonly hostname: string;
    readonly port: number;
    readonly where: string;
  };

/**
 * The Unix socket path or the TCP host and port in `options`. A path given
 * together with `hostname` or `port` is refused; `listen` allows port 0 (a
 * free one) and makes 0 the default.
 */
export function resolveTarget(options: object, listen: boolean): Target {
  const action = listen ? "listen" : "connect";
  const { path, hostname, port } = options as {
    path?: unknown;
    hostname?: unknown;
    port?: unknown;
  };
  if (path === undefined) {
    const host = (hostname as string | undefined) ?? "127.0.0.1";
    const checked = checkPort(
      port as number | undefined,
      listen ? 0 : undefined,
      "port",
      listen,
    );
    return { hostname: host, port: checked, where: `${host}:${checked}` };
  }
  if (typeof path !== "string" || path === "") {
    throw new TypeError(
      `Cannot ${action}: expected path to be a non-empty string, got ${
        path === "" ? "an empty string" : typeOf(path)
      }`,
    );
  }
  if (hostname !== undefined || port !== undefined) {
    throw new TypeError(
      `Cannot ${action}: give either path (a Unix socket) or hostname and port (TCP), not both`,
    );
  }
  return { path, where: `unix:${path}` };
}
