// Private: the settings of a Noise handshake, checked and copied once: the
// pre-shared key (32 bytes or 64 hex digits; never put in a message), the
// prologue, the handshake deadline and the grace period of the connection.
// connectNoise() and acceptNoise() resolve them per call,
// createNoiseAuthenticator() once for all its handshakes.
import { utf8 } from "./_bytes.ts";
import { DEFAULT_TIMEOUT } from "./_deadline.ts";
import { checkDuration, checkTimeout } from "./_options.ts";
import { PSK_LENGTH } from "./_noise_state.ts";
import type { NoisePsk } from "./noise.ts";

/** Default `gracePeriod` of a Noise connection, in milliseconds. */
export const DEFAULT_GRACE_PERIOD = 5_000;

/** What a handshake needs, checked. */
export interface NoiseSettings {
  /** Our copy of the PSK. */
  readonly psk: Uint8Array<ArrayBuffer>;
  readonly prologue: Uint8Array<ArrayBuffer>;
  /** The handshake's deadline, in ms. */
  readonly timeout: number;
  /** How long asyncDispose waits for pending writes, in ms. */
  readonly gracePeriod: number;
}

/** The options a Noise handshake takes (those of each public function). */
export interface NoiseSettingsOptions {
  prologue?: Uint8Array | string;
  timeout?: number;
  gracePeriod?: number;
}

/**
 * Checks and copies the PSK and options; throws a TypeError or RangeError
 * for a bad one.
 */
export function resolveSettings(
  psk: NoisePsk,
  options: NoiseSettingsOptions,
): NoiseSettings {
  const key = parsePsk(psk);
  try {
    return {
      psk: key,
      prologue: parsePrologue(options.prologue),
      timeout: checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout"),
      gracePeriod: checkDuration(
        options.gracePeriod,
        DEFAULT_GRACE_PERIOD,
        "gracePeriod",
      ),
    };
  } catch (error) {
    key.fill(0);
    throw error;
  }
}

/** Checks and copies a PSK; never puts its value in a message. */
function parsePsk(psk: NoisePsk): Uint8Array<ArrayBuffer> {
  if (typeof psk === "string") {
    const text = psk.trim();
    if (!/^[0-9a-fA-F]*$/.test(text)) {
      throw new TypeError(
        "Cannot use the pre-shared key: a string must be 64 hexadecimal digits (for example from `openssl rand -hex 32`)",
      );
    }
    if (text.length !== PSK_LENGTH * 2) {
      throw new RangeError(
        `Cannot use the pre-shared key: expected 64 hexadecimal digits, got ${text.length}`,
      );
    }
    const bytes = new Uint8Array(PSK_LENGTH);
    for (let i = 0; i < PSK_LENGTH; i++) {
      bytes[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
    }
    return bytes;
  }
  if (!(psk instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot use the pre-shared key: expected a Uint8Array or a hex string, got ${
        psk === null ? "null" : typeof psk
      }`,
    );
  }
  if (psk.byteLength !== PSK_LENGTH) {
    throw new RangeError(
      `Cannot use the pre-shared key: expected exactly ${PSK_LENGTH} bytes, got ${psk.byteLength}; make one with generateNoisePsk()`,
    );
  }
  return new Uint8Array(psk);
}

function parsePrologue(
  prologue: Uint8Array | string | undefined,
): Uint8Array<ArrayBuffer> {
  if (prologue === undefined) return new Uint8Array(0);
  if (typeof prologue === "string") return utf8(prologue);
  if (prologue instanceof Uint8Array) return new Uint8Array(prologue);
  throw new TypeError(
    `Cannot use the prologue: expected a string or Uint8Array, got ${
      prologue === null ? "null" : typeof prologue
    }`,
  );
}
