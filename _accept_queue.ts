// Private: the queue between a listener's handshakes and its accept()
// calls, shared by listenTls() and listenMultiprocessing(). Connections that
// finished their handshake wait here for accept(); accept() calls wait here
// for connections.
//
// The queue holds at most `limit` connections: those queued plus those
// reserved, that is, still in a step that will end in push() or release()
// (a multiprocessing handshake, a TLS authorize hook). A listener asks
// hasRoom() before it takes on more, so a slow application pushes back on
// its clients instead of growing the queue. On close, waiting accept()
// calls reject with `Deno.errors.BadResource`, as `Deno.Listener` does, and
// queued connections are disposed of.

/** What an {@linkcode AcceptQueue} needs to know. */
export interface AcceptQueueOptions<C> {
  /** Most connections held at once, queued plus reserved. */
  limit: number;
  /** Closes a connection the queue drops (when the queue is closed). */
  dispose(conn: C): void;
  /** Called when a slot frees, so a paused accept loop can go on. */
  onSpace?(): void;
}

interface Waiter<C> {
  resolve(conn: C): void;
  reject(error: unknown): void;
}

/** A bounded hand-over of connections from handshakes to accept() calls. */
export class AcceptQueue<C> {
  #limit: number;
  #dispose: (conn: C) => void;
  #onSpace: (() => void) | undefined;
  #queue: C[] = [];
  #reserved = 0;
  #waiters: Waiter<C>[] = [];
  #closed = false;

  constructor(options: AcceptQueueOptions<C>) {
    this.#limit = options.limit;
    this.#dispose = options.dispose;
    this.#onSpace = options.onSpace;
  }

  /** Connections held: queued plus reserved. */
  get size(): number {
    return this.#queue.length + this.#reserved;
  }

  /** Connections waiting for accept(). */
  get queued(): number {
    return this.#queue.length;
  }

  /** True once {@linkcode AcceptQueue.close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Whether one more connection may be taken on. */
  hasRoom(): boolean {
    return !this.#closed && this.size < this.#limit;
  }

  /**
   * Takes a slot for a connection still in a step before push() (its
   * handshake, an authorize hook). False when the queue is full or closed.
   */
  reserve(): boolean {
    if (!this.hasRoom()) return false;
    this.#reserved++;
    return true;
  }

  /** Gives back a slot taken by {@linkcode AcceptQueue.reserve}. */
  release(): void {
    if (this.#reserved === 0) return;
    this.#reserved--;
    this.#space();
  }

  /**
   * Hands a connection to the oldest waiting accept(), or queues it.
   * `reserved` says it holds a slot from reserve(), which it keeps while
   * queued. Returns false, and leaves the connection to the caller, when
   * the queue is full; after close() the connection is disposed of (and
   * true returned).
   */
  push(conn: C, reserved = false): boolean {
    if (this.#closed) {
      if (reserved) this.#reserved = Math.max(0, this.#reserved - 1);
      this.#dispose(conn);
      return true;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      if (reserved) this.release();
      waiter.resolve(conn);
      return true;
    }
    if (reserved) {
      this.#reserved--;
    } else if (this.size >= this.#limit) {
      return false;
    }
    this.#queue.push(conn);
    return true;
  }

  /**
   * The next connection. Rejects with `Deno.errors.BadResource` once the
   * queue is closed, and with the signal's reason when `signal` aborts (the
   * wait then takes nothing: the next connection goes to the next call).
   */
  take(signal?: AbortSignal): Promise<C> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const queued = this.#queue.shift();
    if (queued !== undefined) {
      this.#space();
      return Promise.resolve(queued);
    }
    if (this.#closed) return Promise.reject(closedError());
    return new Promise<C>((resolve, reject) => {
      const waiter: Waiter<C> = {
        resolve: (conn) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(conn);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      const onAbort = () => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /**
   * Closes the queue: waiting accept() calls reject with
   * `Deno.errors.BadResource`, queued connections are disposed of. Safe to
   * call more than once.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(closedError());
    for (const conn of this.#queue.splice(0)) {
      try {
        this.#dispose(conn);
      } catch {
        // a connection that fails to close is closed enough
      }
    }
  }

  #space(): void {
    if (this.#onSpace === undefined) return;
    try {
      this.#onSpace();
    } catch {
      // a throwing callback must not lose the connection being handed over
    }
  }
}

function closedError(): Deno.errors.BadResource {
  return new Deno.errors.BadResource(
    "Cannot accept a connection: the listener is closed",
  );
}
