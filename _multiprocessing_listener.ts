// Private: the multiprocessing listener (the class behind the
// MultiprocessingListener interface of multiprocessing.ts). Its accept loop
// (_accept.ts) hands each connection to its own handshake task; the
// authenticated ones wait in an AcceptQueue (_accept_queue.ts) for
// accept(). A slot of the queue is reserved for each handshake, so at most
// `maxPending` connections are handshaking or waiting at once, and the loop
// pauses (new clients wait in the kernel's backlog) until one frees. The
// public interface documents every method.
import { AcceptLoop } from "./_accept.ts";
import { AcceptQueue } from "./_accept_queue.ts";
import { formatAddr } from "./_address.ts";
import { closeQuietly } from "./_conn_io.ts";
import { deadline, optionalDeadline } from "./_deadline.ts";
import type {
  MultiprocessingConnection,
  MultiprocessingErrorInfo,
  MultiprocessingIoOptions,
  MultiprocessingListener,
  MultiprocessingListenerOptions,
} from "./multiprocessing.ts";
import { openConnection } from "./_multiprocessing_conn.ts";
import type { Keys } from "./_multiprocessing_options.ts";

type Addr = Deno.NetAddr | Deno.UnixAddr;

/** Starts serving `listener`: its accept loop runs until closed. */
export function createListener<A extends Addr>(
  listener: Deno.Listener<Deno.Conn, A>,
  keys: Keys,
  maxPending: number,
  options: Pick<MultiprocessingListenerOptions, "onError" | "signal">,
): MultiprocessingListener<A> {
  return new Listener(listener, keys, maxPending, options);
}

class Listener<A extends Addr> implements MultiprocessingListener<A> {
  readonly addr: A;
  #keys: Keys;
  #onError: MultiprocessingListenerOptions["onError"];
  #signal: AbortSignal | undefined;
  #onAbort = () => this.close();
  /** Aborts the handshakes in progress when the listener closes. */
  #closer = new AbortController();
  #queue: AcceptQueue<MultiprocessingConnection>;
  #loop: AcceptLoop<Deno.Conn>;
  /** Handshakes and closes still running, for asyncDispose. */
  #tasks = new Set<Promise<void>>();
  #closed = false;

  constructor(
    listener: Deno.Listener<Deno.Conn, A>,
    keys: Keys,
    maxPending: number,
    options: Pick<MultiprocessingListenerOptions, "onError" | "signal">,
  ) {
    this.addr = listener.addr;
    this.#keys = keys;
    this.#onError = options.onError;
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#queue = new AcceptQueue({
      limit: maxPending,
      dispose: (conn) => this.#track(conn[Symbol.asyncDispose]()),
      onSpace: () => this.#loop.wake(),
    });
    // Skips a connection reset before accept at once, backs off when the
    // process is out of file descriptors, ends when the listener closes.
    this.#loop = new AcceptLoop<Deno.Conn>({
      listener,
      ready: () => this.#queue.hasRoom(),
      onConnection: (conn) => {
        if (!this.#queue.reserve()) {
          closeQuietly(conn); // closed meanwhile
          return;
        }
        this.#track(this.#authenticate(conn));
      },
      onError: (error) => this.#report(error, { phase: "accept" }),
    });
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    const done = () => this.#tasks.delete(task);
    task.then(done, done);
  }

  #report(error: unknown, info: MultiprocessingErrorInfo): void {
    if (this.#closed) return;
    try {
      this.#onError?.(error, info);
    } catch {
      // a failing hook must not stop the listener
    }
  }

  async #authenticate(conn: Deno.Conn): Promise<void> {
    const remoteAddr = conn.remoteAddr as Addr;
    // A Unix socket's clients have no address of their own: name ours.
    const from = remoteAddr.transport === "unix"
      ? `unix:${(this.addr as Deno.UnixAddr).path}`
      : formatAddr(remoteAddr);
    let authenticated: MultiprocessingConnection;
    try {
      using limit = deadline(
        this.#keys.timeout,
        this.#closer.signal,
        `authenticate the client at ${from}`,
      );
      authenticated = await openConnection(
        conn,
        "listener",
        this.#keys,
        limit.signal,
      );
    } catch (error) {
      this.#queue.release();
      this.#report(error, { phase: "handshake", remoteAddr });
      return;
    }
    // Keeps its slot while queued; disposed of when the queue is closed.
    this.#queue.push(authenticated, true);
  }

  async accept(
    options: MultiprocessingIoOptions = {},
  ): Promise<MultiprocessingConnection> {
    using limit = optionalDeadline(
      options.timeout ?? Infinity,
      options.signal,
      "accept a connection",
    );
    return await this.#queue.take(limit?.signal);
  }

  [Symbol.asyncIterator](): AsyncIterator<MultiprocessingConnection> {
    return {
      next: async (): Promise<IteratorResult<MultiprocessingConnection>> => {
        try {
          return { done: false, value: await this.#queue.take() };
        } catch (error) {
          if (this.#queue.closed) return { done: true, value: undefined };
          throw error;
        }
      },
      return: (): Promise<IteratorResult<MultiprocessingConnection>> =>
        Promise.resolve({ done: true, value: undefined }),
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#closer.abort(
      new DOMException(
        "Cannot authenticate the client: the listener was closed",
        "AbortError",
      ),
    );
    this.#loop.stop();
    this.#queue.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#loop.done;
    // A handshake that ends now hands its connection to the closed queue,
    // which closes it: a new task.
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}
