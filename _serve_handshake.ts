// Private: serve()'s handshake step. How a server authenticates is settled
// once, at start (prepareAuth: the Cookbook handshake with the secret
// imported once (one key, or several for key rotation: _hmac_keyring.ts),
// or the caller's authenticator); then each connection takes
// one of two paths:
//
// - the hot path (cookbook): the Cookbook handshake on a Deno.Conn, read and
//   written directly, with no timer, signal or promise of its own beyond
//   the socket's: its deadline is the server's one deadline sweep, which
//   closes the socket (and so ends a pending read). It was tuned against
//   `deno task bench:server`: keep it free of per-connection allocations
//   and awaits beyond the ones it has.
// - the signal path (withSignal): a custom authenticator, or the Cookbook
//   handshake on a connection that is only streams; these get an
//   AbortSignal, aborted at the deadline, on eviction and on shutdown, and
//   the server stops waiting for them then.
import { raceSignal } from "./_deadline.ts";
import { closedEarly, type DenoConnLike } from "./_conn_io.ts";
import {
  checkChallengeLength,
  readRestOfReply,
  wrongReply,
} from "./_cookbook.ts";
import { checkServerSecret, HmacKeyRing } from "./_hmac_keyring.ts";
import { serverAuthenticate } from "./handshake.ts";
import type { Connection } from "./_serve_connection.ts";
import { withReadWrite } from "./_served_conn.ts";
import type { Authenticator, ServeOptions } from "./server.ts";

/** How the server authenticates, once the secrets are imported. */
export type Auth<T> =
  | {
    keys: HmacKeyRing;
    challengeLength: number;
    authenticate?: undefined;
  }
  | {
    keys?: undefined;
    challengeLength?: undefined;
    authenticate: Authenticator<T>;
  };

/**
 * Checks `secret` or `authenticate` (exactly one), and for the Cookbook
 * handshake the secret and `challengeLength`, synchronously; then imports
 * the secret. The promise rejects when the import fails (a `CryptoKey` for
 * another hash); the server reports that through `finished`.
 */
export function prepareAuth<T>(options: ServeOptions<T>): Promise<Auth<T>> {
  const hasSecret = options.secret !== undefined;
  const hasAuth = options.authenticate !== undefined;
  if (hasSecret === hasAuth) {
    throw new TypeError(
      hasSecret
        ? "Cannot serve: give either secret or authenticate, not both"
        : "Cannot serve: no authentication given; pass secret (the Cookbook handshake) or authenticate (your own)",
    );
  }
  if (hasAuth) {
    const authenticate = options.authenticate;
    if (typeof authenticate !== "function") {
      throw new TypeError(
        `Cannot serve: expected authenticate to be a function, got ${typeof authenticate}`,
      );
    }
    return Promise.resolve({ authenticate });
  }
  const secret = options.secret!;
  checkServerSecret(secret);
  const challengeLength = checkChallengeLength(options.challengeLength);
  const ready = HmacKeyRing.import(secret, { hash: options.hash }).then(
    (keys) => ({ keys, challengeLength }),
  );
  // Handled by the server (it rejects `finished`); avoid an unhandled
  // rejection before the server awaits it.
  ready.catch(() => {});
  return ready;
}

/**
 * The Cookbook handshake on a socket read and written directly (the hot
 * path): a fresh challenge, exactly one digest back, verified in constant
 * time by `HmacKey.verify` (WebCrypto's `crypto.subtle.verify`) against
 * every key. Its deadline is the sweep's: a connection past it is closed,
 * which ends a pending read.
 *
 * @returns The index of the key the client proved.
 */
export async function cookbook(
  conn: DenoConnLike,
  keys: HmacKeyRing,
  challengeLength: number,
): Promise<number> {
  // One backing store for both: a connection holds it until its reply
  // arrives, and a held flood is thousands of them.
  const bytes = new Uint8Array(challengeLength + keys.digestLength);
  const challenge = crypto.getRandomValues(
    bytes.subarray(0, challengeLength),
  );
  let offset = await conn.write(challenge);
  while (offset < challenge.length) {
    offset += await conn.write(challenge.subarray(offset));
  }
  const reply = bytes.subarray(challengeLength);
  // One read takes an honest reply whole (one write, one segment); the rest
  // of one in pieces, or of a digest of a shorter hash, is read off the
  // hot path.
  const count = await conn.read(reply);
  if (count === null) throw closedEarly("the client's reply", 0, reply.length);
  if (count < reply.length) {
    await readRestOfReply(conn, reply, count, keys.hash);
  }
  // One key (no rotation) is one verify (verifyEach).
  const index = await keys.verify(reply, challenge);
  if (index === -1) throw wrongReply(keys.hash, reply);
  return index;
}

/**
 * A custom authenticator, or the Cookbook handshake on a connection that is
 * only streams: these get a signal (kept on the connection, for the server
 * to abort at the deadline, on eviction and on shutdown), and the server
 * stops waiting for them when it aborts. Resolves to what the handler gets
 * and, for the Cookbook handshake, the index of the key the client proved.
 */
export async function withSignal<T>(
  c: Connection,
  auth: Auth<T>,
): Promise<{ result: T; secretIndex: number | undefined }> {
  const controller = new AbortController();
  c.controller = controller;
  const { signal } = controller;
  let result: Promise<{ result: T; secretIndex: number | undefined }>;
  if (auth.keys !== undefined) {
    result = serverAuthenticate(c.conn, auth.keys.keys, {
      challengeLength: auth.challengeLength,
      timeout: Infinity,
      signal,
    }).then(({ secretIndex }) => ({
      // A stream-only connection gets read() and write() for the handler.
      result: withReadWrite(c.conn) as unknown as T,
      secretIndex,
    }));
  } else {
    result = Promise.resolve(
      auth.authenticate(c.conn, { remoteAddr: c.remoteAddr!, signal }),
    ).then((value) => ({ result: value, secretIndex: undefined }));
  }
  // raceSignal also silences a late rejection.
  return await raceSignal(result, signal);
}
