// Private: the connections of a listenTls() listener still in their TLS
// handshake (accepted by node:tls, not yet secure). They are counted per
// address (`maxPerAddress`) and in all (`maxHandshakes`): past the budget
// the handshake the fairness rule of _admission.ts picks is closed (the
// oldest of the address holding the most), as serve() does. Their deadlines
// (`handshakeTimeout`) are kept here by one timer for all, not by node:tls:
// on Deno 2.9.6 its per-socket timer keeps a failed socket alive until it
// fires. A handshake ends when node:tls reports the connection secure (it
// is never evicted after that) or its TCP socket closes.
import type { TlsFailure } from "./tls.ts";
import { Admission, Slot } from "./_admission.ts";
import { DeadlineSweep } from "./_deadline_sweep.ts";
import { addressKey } from "./_address.ts";
import { netAddr, type RawSocket } from "./_tls_server_conn.ts";

/** A connection in its TLS handshake, as `maxHandshakes` counts it. */
class Handshake extends Slot {
  /** Its TCP socket. */
  readonly raw: RawSocket;
  /** Its address. */
  readonly remoteAddr: Deno.NetAddr | undefined;
  /** Set once the listener closed it: the handshake's failure is not news. */
  silenced = false;

  constructor(raw: RawSocket, remoteAddr: Deno.NetAddr | undefined) {
    super();
    this.raw = raw;
    this.remoteAddr = remoteAddr;
  }
}

/** What a {@linkcode Handshakes} reports a connection it closed with. */
export type HandshakeReport = (
  reason: TlsFailure,
  message: string,
  remoteAddr: Deno.NetAddr | undefined,
) => void;

/** The limits {@linkcode Handshakes} keeps. */
export interface HandshakeLimits {
  maxHandshakes: number;
  maxPerAddress: number;
  ipv6Prefix: number;
  handshakeTimeout: number;
}

/** At most this many handshakes are closed for their deadline at once... */
const SWEEP_BATCH = 64;
/** ...in one window of this many ms (the rest in the next window). */
const SWEEP_WINDOW = 10;
/** A deadline this near (ms) is due when the sweep's timer fires. */
const SWEEP_SLACK = 1;

/**
 * The connections in their TLS handshake: counted per address
 * (`maxPerAddress`), bounded in all (`maxHandshakes`, evicting by the
 * fairness rule of `_admission.ts`: the oldest of the address holding the
 * most) and closed at their deadline (`handshakeTimeout`) by one timer for
 * all. A handshake ends when node:tls reports the connection secure (then
 * it is never evicted) or its TCP socket closes.
 */
export class Handshakes {
  #admission: Admission<Handshake>;
  #sweep: DeadlineSweep<Handshake>;
  #byRaw = new WeakMap<object, Handshake>();
  #limits: HandshakeLimits;
  #report: HandshakeReport;

  constructor(limits: HandshakeLimits, report: HandshakeReport) {
    this.#limits = limits;
    this.#report = report;
    this.#admission = new Admission<Handshake>({
      maxPerAddress: limits.maxPerAddress,
      handshakeTimeout: limits.handshakeTimeout,
    });
    this.#sweep = new DeadlineSweep<Handshake>({
      admission: this.#admission,
      expire: (slot) =>
        this.#close(
          slot,
          "handshake",
          `the client did not complete the TLS handshake within ${limits.handshakeTimeout} ms`,
        ),
      batch: SWEEP_BATCH,
      window: SWEEP_WINDOW,
      slack: SWEEP_SLACK,
    });
  }

  /**
   * Counts a TCP socket node:tls accepted. Closes it at once past
   * `maxPerAddress`; past `maxHandshakes`, closes the handshake the
   * fairness rule picks (maybe this one). False when `raw` was closed.
   */
  accept(raw: RawSocket, remoteAddr: Deno.NetAddr | undefined): boolean {
    const slot = new Handshake(raw, remoteAddr);
    this.#byRaw.set(raw, slot);
    const { maxHandshakes, maxPerAddress, ipv6Prefix } = this.#limits;
    const key = addressKey(
      remoteAddr ?? netAddr(undefined, undefined),
      ipv6Prefix,
    );
    const verdict = this.#admission.admit(slot, key);
    raw.once("close", () => this.#admission.release(slot));
    if (verdict === "max-per-address") {
      this.#close(
        slot,
        "max-per-address",
        `${maxPerAddress} connections from ${key} are in their TLS handshake already; this one was closed (maxPerAddress ${maxPerAddress})`,
      );
      return false;
    }
    this.#sweep.watch(slot.deadline);
    while (this.#admission.pendingCount > maxHandshakes) {
      const victim = this.#admission.victim();
      if (victim === undefined) break;
      const { pending, key } = victim.entry!;
      const age = Math.round(this.#admission.clock.now() - victim.since);
      this.#close(
        victim,
        "evicted",
        `closed in its TLS handshake after ${age} ms to make room: ${key} held ${pending} of the ${maxHandshakes} connections in their handshake, the most of any address (maxHandshakes ${maxHandshakes})`,
      );
    }
    return !slot.silenced;
  }

  /** The TLS socket over `raw` completed its handshake: no longer counted. */
  completed(socket: unknown): void {
    const slot = this.#of(socket);
    if (slot !== undefined) this.#admission.release(slot);
  }

  /**
   * Whether the failed handshake of a TLS socket was closed here, and
   * reported then.
   */
  closedHere(socket: unknown): boolean {
    return this.#of(socket)?.silenced === true;
  }

  /** Closes every handshake under way, without a report; stops the timer. */
  close(): void {
    this.#sweep.stop();
    for (let slot; (slot = this.#admission.firstPending()) !== undefined;) {
      slot.silenced = true;
      this.#admission.release(slot);
      slot.raw.destroy();
    }
  }

  #close(slot: Handshake, reason: TlsFailure, message: string): void {
    slot.silenced = true;
    this.#admission.release(slot);
    slot.raw.destroy();
    this.#report(reason, message, slot.remoteAddr);
  }

  /**
   * The handshake of a TLS socket: node:tls keeps the TCP socket it wraps
   * as `_parent` (not a public field), the object its 'connection' event
   * gave.
   */
  #of(socket: unknown): Handshake | undefined {
    try {
      const raw = (socket as { _parent?: unknown } | undefined)?._parent;
      return typeof raw === "object" && raw !== null
        ? this.#byRaw.get(raw)
        : undefined;
    } catch {
      return undefined;
    }
  }
}
