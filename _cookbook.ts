// Private: the rules of the Cookbook handshake that serverAuthenticate(),
// clientAuthenticate() and serve()'s own server side share: the challenge
// length (default and bounds, public through handshake.ts, and its check),
// the rest of a reply that arrived in pieces, and the verdicts on a peer
// that is not what we expect, each naming the likely mix-up and its fix
// (a wrong key; a TLS client; a digest of another hash; a server that sent
// no challenge, or a TLS record). No verdict says anything about the key.
import { checkInteger } from "./_options.ts";
import { raceSignal } from "./_deadline.ts";
import { closedEarly, type DenoConnLike } from "./_conn_io.ts";
import { AuthenticationError, ProtocolError } from "./errors.ts";
import { DIGEST_LENGTH, type HashName } from "./_hmac_key.ts";

/** Default challenge length in bytes (the recipe's `os.urandom(32)`). */
export const DEFAULT_CHALLENGE_LENGTH = 32;
/** Smallest challenge length allowed. */
export const MIN_CHALLENGE_LENGTH = 16;
/** Largest challenge length allowed. */
export const MAX_CHALLENGE_LENGTH = 1024;

/**
 * How long, in ms, the server waits for the rest of a reply that stopped
 * short of a whole digest (at 16 bytes or more) before it calls it a
 * digest of another hash. The rest of an honest reply (one write, one
 * segment) comes within a round trip, or a retransmission (200 ms at the
 * least on Linux).
 */
export const SHORT_REPLY_WAIT = 1000;

/** The shortest digest of any hash we know (MD5). */
const SHORTEST_DIGEST = 16;

/**
 * Checks a `challengeLength` option: a whole number of bytes from 16 to
 * 1024; the default (32) when it is not set.
 */
export function checkChallengeLength(length: number | undefined): number {
  return checkInteger(
    length,
    DEFAULT_CHALLENGE_LENGTH,
    "challengeLength",
    [MIN_CHALLENGE_LENGTH, MAX_CHALLENGE_LENGTH],
    "a whole number of bytes",
  );
}

/**
 * Whether `bytes` start like a TLS record of `types` (22, a handshake:
 * a ClientHello; 21, an alert): the type, then major version 3 and a minor
 * version up to 4.
 */
export function isTlsRecord(
  bytes: Uint8Array,
  types: readonly number[] = [0x16],
): boolean {
  return bytes.length >= 3 && types.includes(bytes[0]) && bytes[1] === 0x03 &&
    bytes[2] <= 0x04;
}

/**
 * The {@linkcode AuthenticationError} for a client whose reply did not
 * verify under any of our keys with `hash`: a TLS ClientHello gets its own
 * (reason `"tls-client"`), anything else is `"wrong-key"`. Built, not
 * thrown, so that the hot path pays no extra call frame or promise. Only
 * called once the reply failed to verify: a right digest that happens to
 * start like a TLS record passes.
 */
export function wrongReply(
  hash: HashName,
  reply: Uint8Array,
): AuthenticationError {
  if (isTlsRecord(reply)) {
    return new AuthenticationError(
      "Cannot authenticate the client: it speaks TLS (a TLS ClientHello arrived where its digest was expected); connect without TLS, or serve with listenTls",
      "tls-client",
    );
  }
  return new AuthenticationError(
    `Cannot authenticate the client: its reply does not match the challenge under our key (wrong key, or a hash other than ${hash})`,
    "wrong-key",
  );
}

const PYTHON_NAME: Readonly<Record<HashName, string>> = {
  "SHA-256": "sha256",
  "SHA-1": "sha1",
  "SHA-384": "sha384",
  "SHA-512": "sha512",
  "MD5": "md5",
};

/** The hash, other than ours, whose digest is `length` bytes. */
function otherHash(length: number, ours: HashName): HashName | undefined {
  for (const hash of Object.keys(DIGEST_LENGTH) as HashName[]) {
    if (hash !== ours && DIGEST_LENGTH[hash] === length) return hash;
  }
  return undefined;
}

/**
 * The error for a reply that stopped after `got` bytes, short of our
 * digest, and then `ended` (the client closed, or sent nothing more for
 * {@linkcode SHORT_REPLY_WAIT} ms). A length that fits another hash is an
 * {@linkcode AuthenticationError} of reason `"wrong-hash"` naming it and
 * the fix; a stall at another length (16 bytes or more) is one too, naming
 * the shorter hashes; a close at another length is the
 * {@linkcode ProtocolError} of a reply cut short.
 */
export function shortReply(
  got: number,
  ours: HashName,
  ended: "closed" | "stalled",
): AuthenticationError | ProtocolError {
  const length = DIGEST_LENGTH[ours];
  const then = ended === "closed"
    ? "the client closed the connection"
    : `nothing more for ${SHORT_REPLY_WAIT} ms`;
  const py = PYTHON_NAME[ours];
  const other = otherHash(got, ours);
  if (other !== undefined) {
    const fix = other === "MD5"
      ? `Python before 3.8 defaults hmac.new to MD5; pass digestmod='${py}' or set hash: 'MD5'`
      : `the client uses ${other}; have it use ${ours} (Python: digestmod='${py}') or set hash: '${other}'`;
    return new AuthenticationError(
      `Cannot authenticate the client: ${got} bytes arrived, the length of ${
        other === "MD5" ? "an" : "a"
      } ${other} digest (${ours} needs ${length}), then ${then}: ${fix}`,
      "wrong-hash",
    );
  }
  if (ended === "closed") return closedEarly("the client's reply", got, length);
  return new AuthenticationError(
    `Cannot authenticate the client: ${got} of the ${length} bytes of a ${ours} digest arrived, then ${then}; a client on a shorter hash (MD5: 16 bytes, as Python before 3.8 defaults hmac.new to; SHA-1: 20) that sends data right after its digest looks like this: have it use ${ours} (Python: digestmod='${py}')`,
    "wrong-hash",
  );
}

const STALLED = Symbol("stalled");

/** `read`, or {@linkcode STALLED} when it takes over SHORT_REPLY_WAIT ms. */
function orStall<T>(read: Promise<T>): Promise<T | typeof STALLED> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stall = new Promise<typeof STALLED>((resolve) => {
    timer = setTimeout(() => resolve(STALLED), SHORT_REPLY_WAIT);
  });
  // A read left pending fails when the caller closes the connection.
  read.catch(() => {});
  return Promise.race([read, stall]).finally(() => clearTimeout(timer));
}

/**
 * Reads the rest of a reply that arrived in pieces, `got` bytes of it
 * already in `reply`, straight from the socket. Once 16 bytes or more are
 * in, a pause of {@linkcode SHORT_REPLY_WAIT} ms or a close ends the wait
 * with {@linkcode shortReply}. Without `signal` (serve()'s hot path) the
 * deadline is the caller's: it closes the socket, which ends a pending
 * read.
 */
export async function readRestOfReply(
  conn: DenoConnLike,
  reply: Uint8Array,
  got: number,
  hash: HashName,
  signal?: AbortSignal,
): Promise<void> {
  while (got < reply.length) {
    const read = raceSignal(conn.read(reply.subarray(got)), signal);
    const count = got >= SHORTEST_DIGEST ? await orStall(read) : await read;
    if (count === STALLED) throw shortReply(got, hash, "stalled");
    if (count === null) {
      if (got === 0) throw closedEarly("the client's reply", 0, reply.length);
      throw shortReply(got, hash, "closed");
    }
    got += count;
  }
}

/**
 * What to throw for `error`, which ended the wait for the server's
 * challenge after the bytes `partial` of it (undefined when not known): a
 * close or a deadline with nothing read says that no challenge arrived, so
 * the server may expect TLS (or be holding this address back); a TLS
 * record says the server speaks TLS. Other errors (an abort of the
 * caller's, a reset), and waits that read a challenge's first bytes, are
 * thrown as they are.
 */
export function noChallenge(
  error: unknown,
  partial: Uint8Array | undefined,
): unknown {
  let hint: string;
  if (partial === undefined) return error;
  if (partial.length === 0) {
    hint =
      "no challenge arrived; the server may expect TLS (use connectTls), or it refused or holds back this address (too many connections, or failed handshakes)";
  } else if (isTlsRecord(partial, [0x15, 0x16])) {
    hint =
      "the server sent a TLS record, not a challenge: it expects TLS (use connectTls)";
  } else {
    return error;
  }
  if (error instanceof ProtocolError) {
    return new ProtocolError(`${error.message}; ${hint}`, error.reason);
  }
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return new DOMException(`${error.message}; ${hint}`, "TimeoutError");
  }
  return error;
}
