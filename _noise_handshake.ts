// Private: the NNpsk0 handshake on a connection, for both roles: the two
// handshake messages (driven by the HandshakeState of _noise_state.ts), the
// initiator's first transport message that proves the PSK to the responder
// (see "When the responder trusts the initiator" in noise.ts), and the
// errors each failure becomes.
import { deadline, raceSignal } from "./_deadline.ts";
import { AuthenticationError, ProtocolError } from "./errors.ts";
import { type CipherState, DecryptError, TAG_LENGTH } from "./_noise_cipher.ts";
import { createNoiseConn } from "./_noise_conn.ts";
import { DH_LENGTH } from "./_noise_crypto.ts";
import { FrameIO } from "./_noise_frames.ts";
import { type NoiseSettings, resolveSettings } from "./_noise_options.ts";
import { HandshakeState, PROTOCOL_NAME } from "./_noise_state.ts";
import type { ConnectNoiseOptions, NoiseConn, NoisePsk } from "./noise.ts";
import type { Duplex } from "./types.ts";

/** Handshake message length: an ephemeral key and an empty payload's tag. */
const HANDSHAKE_MESSAGE_LENGTH = DH_LENGTH + TAG_LENGTH;

/**
 * The read buffer during the handshake: one handshake message and the
 * length of the next frame. A peer that has not authenticated (and may never
 * send a byte) costs no more; a larger first transport message grows it as
 * its bytes arrive.
 */
const HANDSHAKE_READ_BUFFER = 2 + HANDSHAKE_MESSAGE_LENGTH + 2;

const EMPTY = new Uint8Array(0);

/**
 * Reads one handshake frame. Only empty payloads are taken, so the message
 * is exactly 48 bytes; anything else is refused before it is read.
 */
async function readHandshakeMessage(
  io: FrameIO,
  initiator: boolean,
): Promise<Uint8Array<ArrayBuffer>> {
  const peer = initiator ? "responder" : "initiator";
  const what = initiator
    ? "the Noise responder's reply"
    : "the Noise initiator's first message";
  const length = await io.readLength(what);
  if (length === null) {
    if (initiator) {
      throw new AuthenticationError(
        "Cannot complete the Noise handshake: the responder closed the connection without answering; it most likely rejected our pre-shared key or prologue (or it does not speak Noise)",
        "rejected",
      );
    }
    throw new ProtocolError(
      "Cannot complete the Noise handshake: the initiator closed the connection before its first message",
      "closed",
    );
  }
  if (length !== HANDSHAKE_MESSAGE_LENGTH) {
    throw new ProtocolError(
      `Cannot complete the Noise handshake: ${what} is ${length} bytes, expected ${HANDSHAKE_MESSAGE_LENGTH} (an ephemeral key and an empty payload); the ${peer} does not speak ${PROTOCOL_NAME}`,
      length > HANDSHAKE_MESSAGE_LENGTH ? "too-large" : "malformed",
    );
  }
  return (await io.readBody(length, what)).slice();
}

/** What the responder calls the initiator's first transport message. */
const CONFIRMATION = "the Noise initiator's first transport message";

/**
 * The responder's last step: reads and decrypts the initiator's first
 * transport message and returns its data.
 *
 * In NNpsk0 the initiator's first handshake message proves that someone
 * held the PSK, not that this peer does: anyone who recorded it can replay
 * it, and it decrypts just the same. Only a transport message, under keys
 * mixed from our fresh ephemeral key, proves both the PSK and freshness. So
 * anything but a message that decrypts (a close, a reset, garbage, a frame
 * shorter than a tag) is an {@linkcode AuthenticationError}, which `serve()`
 * counts toward its throttle like a wrong key.
 */
async function readConfirmation(
  io: FrameIO,
  receive: CipherState,
): Promise<Uint8Array<ArrayBuffer>> {
  const unproven =
    "which proves it holds the pre-shared key (a replayed first message ends this way)";
  let body: Uint8Array<ArrayBuffer>;
  try {
    const length = await io.readLength(CONFIRMATION);
    if (length === null) {
      throw new AuthenticationError(
        `Cannot authenticate the Noise initiator: it closed the connection before its first transport message, ${unproven}`,
        "wrong-key",
      );
    }
    if (length < TAG_LENGTH) {
      throw new AuthenticationError(
        `Cannot authenticate the Noise initiator: its first transport message is ${length} bytes, less than the ${TAG_LENGTH}-byte tag; it did not prove it holds the pre-shared key`,
        "wrong-key",
      );
    }
    body = await io.readBody(length, CONFIRMATION);
  } catch (error) {
    if (error instanceof AuthenticationError) throw error;
    const closed = error instanceof ProtocolError && error.reason === "closed";
    throw new AuthenticationError(
      closed
        ? `Cannot authenticate the Noise initiator: it closed the connection in the middle of its first transport message, ${unproven}`
        : `Cannot authenticate the Noise initiator: the connection failed before its first transport message arrived, ${unproven}`,
      "wrong-key",
      { cause: error },
    );
  }
  try {
    return await receive.decryptWithAd(EMPTY, body);
  } catch (error) {
    throw new AuthenticationError(
      "Cannot authenticate the Noise initiator: its first transport message does not decrypt (its first message was replayed, or this one modified); it did not prove it holds the pre-shared key",
      "wrong-key",
      { cause: error },
    );
  }
}

/** How {@linkcode handshake} treats what it is given. */
export interface HandshakeOptions {
  /** Ends the handshake; it rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Close the connection when the handshake fails (connectNoise(),
   * acceptNoise()); serve() closes it itself, after its throttling delay.
   */
  closeOnFailure: boolean;
  /**
   * Wipe `settings.psk` once the handshake state holds its own copy: the
   * settings belong to this one call.
   */
  wipePsk: boolean;
}

/**
 * Runs the Noise handshake on `conn` as the initiator or the responder and
 * returns the channel. The responder waits for the initiator's first
 * transport message (see readConfirmation) before it returns.
 */
export async function handshake(
  conn: Duplex,
  settings: NoiseSettings,
  initiator: boolean,
  options: HandshakeOptions,
): Promise<NoiseConn> {
  const io = new FrameIO(conn, HANDSHAKE_READ_BUFFER);
  using limit = deadline(
    settings.timeout,
    options.signal,
    initiator
      ? "complete the Noise handshake with the responder"
      : "complete the Noise handshake with the initiator",
  );
  try {
    limit.signal.throwIfAborted();
    // Disposed (its PSK copy wiped) however the handshake ends.
    using state = await HandshakeState.initialize(initiator, settings.psk, {
      prologue: settings.prologue,
    });
    if (options.wipePsk) settings.psk.fill(0);
    if (initiator) {
      await raceSignal(io.writeFrame(await state.writeMessage()), limit.signal);
    }
    const message = await raceSignal(
      readHandshakeMessage(io, initiator),
      limit.signal,
    );
    try {
      await state.readMessage(message);
    } catch (error) {
      if (error instanceof DecryptError) {
        throw new AuthenticationError(
          initiator
            ? "Cannot authenticate the Noise responder: its reply does not decrypt under our pre-shared key (a different key or prologue, or the message was modified)"
            : "Cannot authenticate the Noise initiator: its first message does not decrypt under our pre-shared key (a different key or prologue, or the message was modified)",
          "wrong-key",
          { cause: error },
        );
      }
      throw new ProtocolError(
        `Cannot complete the Noise handshake: the ${
          initiator ? "responder" : "initiator"
        } sent an invalid ephemeral public key`,
        "malformed",
        { cause: error },
      );
    }
    if (!initiator) {
      let reply: Uint8Array;
      try {
        reply = await state.writeMessage();
      } catch (error) {
        throw new ProtocolError(
          "Cannot complete the Noise handshake: the initiator sent an invalid ephemeral public key",
          "malformed",
          { cause: error },
        );
      }
      await raceSignal(io.writeFrame(reply), limit.signal);
    }
    const session = state.result;
    let first: Uint8Array<ArrayBuffer> | undefined;
    if (initiator) {
      // The first transport message, empty: it proves to the responder
      // that we hold the PSK in this very session (see readConfirmation).
      await raceSignal(
        io.writeFrame(await session.send.encryptWithAd(EMPTY, EMPTY)),
        limit.signal,
      );
    } else {
      first = await raceSignal(
        readConfirmation(io, session.receive),
        limit.signal,
      );
    }
    io.enlarge();
    return createNoiseConn(io, initiator, session, settings.gracePeriod, first);
  } catch (error) {
    if (options.closeOnFailure) io.close();
    if (limit.signal.aborted) throw limit.signal.reason;
    throw error;
  } finally {
    if (options.wipePsk) settings.psk.fill(0);
  }
}

/**
 * connectNoise() and acceptNoise(): one handshake with settings of its own,
 * checked here (a bad one rejects), its PSK copy wiped when it ends, the
 * connection closed when it fails.
 */
export async function handshakeOnce(
  conn: Duplex,
  psk: NoisePsk,
  options: ConnectNoiseOptions,
  initiator: boolean,
): Promise<NoiseConn> {
  return await handshake(conn, resolveSettings(psk, options), initiator, {
    signal: options.signal,
    closeOnFailure: true,
    wipePsk: true,
  });
}
