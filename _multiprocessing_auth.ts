// Private: the mutual HMAC authentication of multiprocessing.connection
// (CPython's deliver_challenge() and answer_challenge()) on a FrameWire:
// the messages, the digest names a peer may ask for, and the check of each
// MAC in constant time (against each authkey of a listener's list, for key
// rotation: the one the peer proved is the one we answer with). See
// multiprocessing.ts for the protocol. About 330
// lines, most of them the message each failure gets (what went wrong and
// how to fix it); the steps themselves are short.
import { concat, utf8 } from "./_bytes.ts";
import { raceSignal } from "./_deadline.ts";
import { AuthenticationError, ProtocolError } from "./errors.ts";
import type { HmacKey } from "./handshake.ts";
import type { MultiprocessingDigest } from "./multiprocessing.ts";
import type { FrameWire } from "./_multiprocessing_frame.ts";
import type { Keys } from "./_multiprocessing_options.ts";
import { verifyEach } from "./_hmac_keyring.ts";

/** Largest handshake message, as in CPython (`recv_bytes(256)`). */
export const AUTH_MESSAGE_LIMIT = 256;
/**
 * The read buffer while authenticating: two whole handshake messages. A
 * peer that has not authenticated (and may never send a byte) costs no more.
 */
export const HANDSHAKE_READ_BUFFER = 2 * (12 + AUTH_MESSAGE_LIMIT);
/** Random bytes in a challenge we deliver (CPython's `MESSAGE_LENGTH`). */
const CHALLENGE_RANDOM_LENGTH = 40;
/** A legacy (Python 3.11 and older) challenge is exactly this long. */
const LEGACY_CHALLENGE_LENGTH = 20;
/** A legacy answer is a bare HMAC-MD5 digest. */
const MD5_LENGTH = 16;
/** Longest digest name CPython knows (`sha3_256`). */
const MAX_DIGEST_NAME = 8;

const CHALLENGE = utf8("#CHALLENGE#");
const WELCOME = utf8("#WELCOME#");
const FAILURE = utf8("#FAILURE#");
const SHA3 = new Set(["sha3_256", "sha3_384"]);

const LEGACY_HINT =
  "pass legacyMd5: true to allow it (HMAC-MD5), or run the peer on Python 3.12 or later";

function handshakeTooLarge(size: number | bigint): ProtocolError {
  return new ProtocolError(
    `Cannot authenticate: the peer's handshake message is ${size} bytes, over the ${AUTH_MESSAGE_LIMIT}-byte limit; is it a multiprocessing peer?`,
    "too-large",
  );
}

async function readAuthMessage(
  wire: FrameWire,
  what: string,
  signal: AbortSignal,
): Promise<Uint8Array<ArrayBuffer>> {
  const message = await raceSignal(
    wire.readFrame(AUTH_MESSAGE_LIMIT, what, handshakeTooLarge),
    signal,
  );
  if (message === null) {
    throw new ProtocolError(
      `Cannot read ${what}: the peer closed the connection before sending it`,
      "closed",
    );
  }
  return message;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.byteLength < prefix.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) {
    if (bytes[i] !== prefix[i]) return false;
  }
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && startsWith(a, b);
}

/**
 * Splits `{name}rest` as CPython does; returns null without a prefix.
 * The name is only reported when it looks like a digest name (else `"?"`).
 */
export function splitDigest(
  message: Uint8Array<ArrayBuffer>,
): { name: string; rest: Uint8Array<ArrayBuffer> } | null {
  if (message[0] !== 0x7b /* { */) return null;
  const end = message.subarray(0, MAX_DIGEST_NAME + 2).indexOf(0x7d /* } */);
  if (end < 1) return null;
  const name = new TextDecoder().decode(message.subarray(1, end));
  return {
    name: /^[a-z0-9_]{1,8}$/.test(name) ? name : "?",
    rest: message.slice(end + 1),
  };
}

function digestFor(
  name: string,
  keys: Keys,
  action: string,
): { digest: MultiprocessingDigest; list: readonly HmacKey[] } {
  if (name === "sha256" || name === "sha384" || name === "md5") {
    const list = keys.get(name);
    if (list) return { digest: name, list };
    throw new AuthenticationError(
      `Cannot ${action}: the peer uses HMAC-MD5; ${LEGACY_HINT}`,
      "unsupported",
    );
  }
  if (SHA3.has(name)) {
    throw new AuthenticationError(
      `Cannot ${action}: the peer asks for HMAC-${name}, which WebCrypto cannot compute; configure the peer to use sha256 or sha384`,
      "unsupported",
    );
  }
  throw new AuthenticationError(
    `Cannot ${action}: the peer asks for the unknown digest "${name}"; expected sha256 or sha384`,
    "unsupported",
  );
}

/** What a peer proved: the digest it used, and which authkey (an index). */
export interface Proof {
  readonly digest: MultiprocessingDigest;
  readonly index: number;
}

/** Sends a challenge, checks the answer, sends the verdict. */
export async function deliverChallenge(
  wire: FrameWire,
  keys: Keys,
  signal: AbortSignal,
): Promise<Proof> {
  const action = "authenticate the peer";
  const message = concat(
    utf8(`{${keys.digest}}`),
    crypto.getRandomValues(new Uint8Array(CHALLENGE_RANDOM_LENGTH)),
  );
  await raceSignal(wire.writeFrame(concat(CHALLENGE, message)), signal);
  const answer = await readAuthMessage(
    wire,
    "the peer's answer to our challenge",
    signal,
  );
  let proof: Proof;
  try {
    proof = await checkAnswer(answer, message, keys, action);
  } catch (error) {
    // The verdict is best effort after a failure; the failure is the news.
    await raceSignal(wire.writeFrame(FAILURE), signal).catch(() => {});
    throw error;
  }
  await raceSignal(wire.writeFrame(WELCOME), signal);
  return proof;
}

/**
 * Refuses a MAC of the wrong length as malformed (CPython: "expected 'sha256'
 * of length 32 got 20"): no key makes it right, so it says nothing about the
 * authkey.
 */
function checkMacLength(
  mac: Uint8Array,
  expected: number,
  name: string,
  action: string,
): void {
  if (mac.byteLength !== expected) {
    throw new ProtocolError(
      `Cannot ${action}: expected a ${expected}-byte MAC (${name}), got ${mac.byteLength} bytes; is it a multiprocessing peer?`,
      "malformed",
    );
  }
}

/** The legacy HMAC-MD5 keys, or the error that says how to allow them. */
function legacyKeys(
  keys: Keys,
  action: string,
  what: string,
): readonly HmacKey[] {
  const md5 = keys.get("md5");
  if (md5) return md5;
  throw new AuthenticationError(
    `Cannot ${action}: ${what}; ${LEGACY_HINT}`,
    "unsupported",
  );
}

/**
 * Verifies the peer's answer to `message` against every authkey; returns
 * the digest it used and the authkey it proved.
 */
async function checkAnswer(
  answer: Uint8Array<ArrayBuffer>,
  message: Uint8Array<ArrayBuffer>,
  keys: Keys,
  action: string,
): Promise<Proof> {
  let digest: MultiprocessingDigest;
  let list: readonly HmacKey[];
  let mac: Uint8Array<ArrayBuffer>;
  if (
    answer.byteLength === MD5_LENGTH ||
    answer.byteLength === LEGACY_CHALLENGE_LENGTH
  ) {
    // A legacy peer: a bare HMAC-MD5 (CPython reads 20 bytes the same way,
    // and refuses them for their length).
    checkMacLength(answer, MD5_LENGTH, "HMAC-MD5", action);
    list = legacyKeys(
      keys,
      action,
      "it answered with legacy HMAC-MD5, as Python 3.11 and older do",
    );
    [digest, mac] = ["md5", answer];
  } else {
    const split = splitDigest(answer);
    if (split === null) {
      throw new ProtocolError(
        `Cannot ${action}: its answer has no {digest} prefix; is it a multiprocessing peer?`,
        "malformed",
      );
    }
    ({ digest, list } = digestFor(split.name, keys, action));
    mac = split.rest;
    checkMacLength(
      mac,
      list[0].digestLength,
      `HMAC-${digest.toUpperCase()}`,
      action,
    );
  }
  const index = await verifyEach(list, mac, message);
  if (index === -1) {
    throw new AuthenticationError(
      `Cannot ${action}: its answer does not match our challenge under our authkey (the authkeys differ)`,
      "wrong-key",
    );
  }
  return { digest, index };
}

/**
 * Our answer to the challenge `message` (what follows `#CHALLENGE#`), under
 * the authkey at `index`.
 */
async function answerFor(
  message: Uint8Array<ArrayBuffer>,
  keys: Keys,
  action: string,
  index: number,
): Promise<Uint8Array<ArrayBuffer>> {
  if (message.byteLength === LEGACY_CHALLENGE_LENGTH) {
    const md5 = legacyKeys(
      keys,
      action,
      "it is a legacy HMAC-MD5 challenge, as Python 3.11 and older send",
    );
    return await md5[index].sign(message);
  }
  const split = splitDigest(message);
  if (split === null) {
    throw new ProtocolError(
      `Cannot ${action}: the challenge has no {digest} prefix; is it a multiprocessing peer?`,
      "malformed",
    );
  }
  const { digest, list } = digestFor(split.name, keys, action);
  // The MAC covers the whole challenge, its {digest} prefix included.
  return concat(utf8(`{${digest}}`), await list[index].sign(message));
}

/**
 * Reads a challenge, answers it under the authkey at `index` (a listener:
 * the one its peer proved), reads the verdict.
 */
export async function answerChallenge(
  wire: FrameWire,
  keys: Keys,
  signal: AbortSignal,
  index = 0,
): Promise<void> {
  const action = "answer the peer's challenge";
  const challenge = await readAuthMessage(wire, "the peer's challenge", signal);
  if (!startsWith(challenge, CHALLENGE)) {
    throw new ProtocolError(
      `Cannot ${action}: its message is not a challenge; is it a multiprocessing peer?`,
      "malformed",
    );
  }
  const message = challenge.slice(CHALLENGE.byteLength);
  if (message.byteLength < LEGACY_CHALLENGE_LENGTH) {
    throw new ProtocolError(
      `Cannot ${action}: the challenge is ${message.byteLength} bytes, under the ${LEGACY_CHALLENGE_LENGTH}-byte minimum`,
      "malformed",
    );
  }
  const answer = await answerFor(message, keys, action, index);
  await raceSignal(wire.writeFrame(answer), signal);
  const verdict = await readAuthMessage(wire, "the peer's verdict", signal);
  if (sameBytes(verdict, WELCOME)) return;
  if (sameBytes(verdict, FAILURE)) {
    throw new AuthenticationError(
      "Cannot authenticate to the peer: it rejected our answer (the authkeys differ)",
      "rejected",
    );
  }
  throw new ProtocolError(
    "Cannot authenticate to the peer: its verdict is neither #WELCOME# nor #FAILURE#",
    "malformed",
  );
}

/**
 * Runs both directions in the order of `role`: the listener delivers its
 * challenge first (and answers the peer's under the authkey the peer
 * proved), the client answers first. Returns the digest the peer proved
 * the authkey with, and which authkey.
 */
export async function authenticate(
  wire: FrameWire,
  role: "listener" | "client",
  keys: Keys,
  signal: AbortSignal,
): Promise<Proof> {
  if (role === "listener") {
    const proof = await deliverChallenge(wire, keys, signal);
    await answerChallenge(wire, keys, signal, proof.index);
    return proof;
  }
  await answerChallenge(wire, keys, signal);
  return await deliverChallenge(wire, keys, signal);
}
