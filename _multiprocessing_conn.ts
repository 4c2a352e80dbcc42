// Private: an authenticated multiprocessing connection (the class behind
// the MultiprocessingConnection interface of multiprocessing.ts) and
// openConnection(), which authenticates a socket and wraps it. The public
// interface documents every method.
import { checkTimeout } from "./_options.ts";
import { utf8 } from "./_bytes.ts";
import { plainAddr } from "./_address.ts";
import { optionalDeadline, raceSignal } from "./_deadline.ts";
import { ProtocolError } from "./errors.ts";
import type {
  MultiprocessingConnection,
  MultiprocessingDigest,
  MultiprocessingIoOptions,
} from "./multiprocessing.ts";
import { FrameWire } from "./_multiprocessing_frame.ts";
import {
  authenticate,
  HANDSHAKE_READ_BUFFER,
} from "./_multiprocessing_auth.ts";
import type { Keys } from "./_multiprocessing_options.ts";

/** Bytes read ahead of the current frame, at most, once authenticated. */
const READ_AHEAD = 64 * 1024;

/**
 * Authenticates `conn` both ways (in the order of `role`) within `signal`,
 * and returns the connection; on failure `conn` is closed.
 */
export async function openConnection(
  conn: Deno.Conn,
  role: "listener" | "client",
  keys: Keys,
  signal: AbortSignal,
): Promise<MultiprocessingConnection> {
  const wire = new FrameWire(conn, HANDSHAKE_READ_BUFFER);
  try {
    const { digest, index } = await authenticate(wire, role, keys, signal);
    // Authenticated: now the peer may read ahead as far as we do.
    wire.enlarge(READ_AHEAD);
    return new Connection(wire, conn, digest, index, keys.maxMessageSize);
  } catch (error) {
    wire.close();
    await wire.settled();
    throw error;
  }
}

class Connection implements MultiprocessingConnection {
  readonly localAddr: Deno.Addr;
  readonly remoteAddr: Deno.Addr;
  #wire: FrameWire;
  #maxMessageSize: number;
  #frame: Promise<Uint8Array<ArrayBuffer> | null> | undefined;
  #turn: Promise<void> = Promise.resolve();

  constructor(
    wire: FrameWire,
    { localAddr, remoteAddr }: Deno.Conn,
    readonly peerDigest: MultiprocessingDigest,
    readonly authkeyIndex: number,
    maxMessageSize: number,
  ) {
    this.#wire = wire;
    // Copies: Deno's addresses print as [Object: null prototype].
    this.localAddr = plainAddr(localAddr);
    this.remoteAddr = plainAddr(remoteAddr);
    this.#maxMessageSize = maxMessageSize;
  }

  #throwIfClosed(action: string): void {
    if (this.#wire.closed) {
      throw new Deno.errors.BadResource(
        `Cannot ${action}: the connection is closed`,
      );
    }
  }

  async sendBytes(
    data: Uint8Array,
    options: MultiprocessingIoOptions = {},
  ): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot send the message: expected a Uint8Array, got ${
          data === null ? "null" : typeof data
        }`,
      );
    }
    this.#throwIfClosed("send the message");
    using limit = optionalDeadline(
      options.timeout ?? Infinity,
      options.signal,
      "send the message",
    );
    await raceSignal(this.#wire.writeFrame(data), limit?.signal);
  }

  sendText(
    text: string,
    options: MultiprocessingIoOptions = {},
  ): Promise<void> {
    return this.sendBytes(utf8(String(text)), options);
  }

  #tooLarge = (size: number | bigint): ProtocolError =>
    new ProtocolError(
      `Cannot receive a message: the peer announced ${size} bytes, over the maxMessageSize limit of ${this.#maxMessageSize} bytes; raise maxMessageSize if such messages are expected`,
      "too-large",
    );

  async recvBytes(
    options: MultiprocessingIoOptions = {},
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    const timeout = checkTimeout(options.timeout, Infinity, "timeout");
    this.#throwIfClosed("receive a message");
    const previous = this.#turn;
    let release!: () => void;
    this.#turn = new Promise<void>((resolve) => release = resolve);
    const limit = optionalDeadline(
      timeout,
      options.signal,
      "receive a message",
    );
    try {
      await raceSignal(previous, limit?.signal);
      this.#throwIfClosed("receive a message");
      if (this.#frame === undefined) {
        this.#frame = this.#wire.readFrame(
          this.#maxMessageSize,
          "the message",
          this.#tooLarge,
        );
        this.#frame.catch(() => {});
      }
      const frame = this.#frame;
      const message = await raceSignal(frame, limit?.signal);
      this.#throwIfClosed("receive a message");
      // Keep the end of stream (and errors, by not getting here) sticky.
      if (message !== null) this.#frame = undefined;
      return message;
    } catch (error) {
      // After close(), whatever the read ended with, the news is the close.
      if (this.#wire.closed && !(error instanceof Deno.errors.BadResource)) {
        throw new Deno.errors.BadResource(
          "Cannot receive a message: the connection is closed",
          { cause: error },
        );
      }
      throw error;
    } finally {
      limit?.[Symbol.dispose]();
      // The next caller goes after us and after whoever we queued behind.
      previous.then(release);
    }
  }

  async recvText(
    options: MultiprocessingIoOptions = {},
  ): Promise<string | null> {
    const message = await this.recvBytes(options);
    if (message === null) return null;
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(message);
    } catch (cause) {
      throw new ProtocolError(
        "Cannot decode the message: it is not valid UTF-8",
        "malformed",
        { cause },
      );
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array<ArrayBuffer>> {
    while (true) {
      const message = await this.recvBytes();
      if (message === null) return;
      yield message;
    }
  }

  close(): void {
    this.#wire.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#wire.close();
    await this.#wire.settled();
  }
}
