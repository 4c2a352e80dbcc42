// Private: what serve() remembers about addresses that failed to
// authenticate, for throttling (see ThrottleOptions in server.ts): failures
// per address with a pause that doubles with each (up to maxDelay), an
// optional ban after banAfter failures, and forgetting: an address quiet for
// forgetAfter is dropped, and past maxAddresses the least recently failing
// one goes first, so memory stays bounded under a spoofed or distributed
// flood. Pure bookkeeping on the times it is given (tests/admission_test.ts).

/** Failure throttling settings (all in ms but the counts). */
export interface FailureOptions {
  delay: number;
  maxDelay: number;
  banAfter: number;
  banFor: number;
  forgetAfter: number;
  maxAddresses: number;
}

/** What is on record for an address that failed to authenticate. */
export interface FailureRecord {
  failures: number;
  last: number;
  /** No handshake from the address starts before this time. */
  pausedUntil: number;
  bannedUntil: number;
}

/** Failures per address, bounded: least recently failing forgotten first. */
export class FailureTable {
  #records = new Map<string, FailureRecord>();
  #options: FailureOptions;

  constructor(options: FailureOptions) {
    this.#options = options;
  }

  /** Addresses on record. */
  get size(): number {
    return this.#records.size;
  }

  /** The record of `key`, or undefined once forgotten. */
  lookup(key: string, now: number): FailureRecord | undefined {
    const record = this.#records.get(key);
    if (!record) return undefined;
    if (
      now - record.last > this.#options.forgetAfter &&
      now >= record.bannedUntil && now >= record.pausedUntil
    ) {
      this.#records.delete(key);
      return undefined;
    }
    return record;
  }

  /** Counts a failure and pauses the address; returns the record and pause. */
  fail(key: string, now: number): { record: FailureRecord; delay: number } {
    const record = this.lookup(key, now) ??
      { failures: 0, last: now, pausedUntil: 0, bannedUntil: 0 };
    this.#records.delete(key);
    record.failures += 1;
    record.last = now;
    if (record.failures >= this.#options.banAfter) {
      record.bannedUntil = now + this.#options.banFor;
    }
    this.#records.set(key, record);
    while (this.#records.size > this.#options.maxAddresses) {
      const oldest = this.#records.keys().next().value as string;
      this.#records.delete(oldest);
    }
    const { delay, maxDelay } = this.#options;
    const pause = Math.min(
      delay * 2 ** Math.min(record.failures - 1, 52),
      maxDelay,
    );
    record.pausedUntil = Math.max(record.pausedUntil, now + pause);
    return { record, delay: pause };
  }
}
