// Shared helpers for the tests of the HTTP/1.1 server pieces (_http1_*.ts)
// and of serveHttps(): byte streams cut into pieces, serveHttp1() on an
// in-memory connection, one raw exchange over TLS.
import type { HttpRefusal } from "../_http1_parse.ts";
import { type Http1Conn, serveHttp1 } from "../_http1_session.ts";
import { within } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A stream of `chunks`; it then closes, or (`end: false`) stays open with
 * nothing more to read, as a client that waits.
 */
export function streamOf(
  chunks: Iterable<Uint8Array>,
  end = true,
): ReadableStream<Uint8Array> {
  const it = chunks[Symbol.iterator]();
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = it.next();
      if (!next.done) return controller.enqueue(next.value);
      if (end) return controller.close();
      return new Promise<void>(() => {}); // no more bytes, no EOF
    },
  });
}

/** `bytes` in pieces of `size` bytes (the last one shorter). */
export function* pieces(
  bytes: Uint8Array,
  size: number,
): Generator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) {
    yield bytes.slice(i, i + size);
  }
}

/**
 * serveHttp1() on an in-memory connection: `client` writes what the server
 * reads (or `readable` is read instead) and reads what it writes, to its end
 * when the server closes; `refuseAll` as serveHttp1() takes it.
 */
export function servePair(
  options: Partial<Parameters<typeof serveHttp1>[1]> = {},
  handler: Parameters<typeof serveHttp1>[2] = async (request) => ({
    status: 200,
    headers: [],
    body: encoder.encode(`${request.method} ${await request.text()}`),
  }),
  readable?: ReadableStream<Uint8Array>,
  refuseAll: HttpRefusal | null = null,
) {
  const fromClient = new TransformStream<Uint8Array, Uint8Array>();
  let toClient!: ReadableStreamDefaultController<Uint8Array>;
  const end = () => {
    try {
      toClient.close();
    } catch {
      // already closed
    }
  };
  const client = {
    readable: new ReadableStream<Uint8Array>({
      start(controller) {
        toClient = controller;
      },
    }),
    writable: fromClient.writable,
  };
  let closes = 0;
  const conn: Http1Conn = {
    readable: readable ?? fromClient.readable,
    writable: new WritableStream<Uint8Array>({
      write(chunk) {
        toClient.enqueue(chunk.slice());
      },
      close: end,
    }),
    close() {
      closes++;
      end();
    },
  };
  const session = serveHttp1(
    conn,
    {
      maxHeaderSize: 1024,
      maxHeaderCount: 10,
      maxBodySize: 100,
      keepAliveTimeout: 5000,
      requestTimeout: 5000,
      base: "https://127.0.0.1:1/",
      ...options,
    },
    handler,
    refuseAll,
  );
  return { session, client, closes: () => closes };
}

export async function readText(
  readable: ReadableStream<Uint8Array>,
  limit = 5000,
): Promise<string> {
  let text = "";
  const reader = readable.getReader();
  const end = performance.now() + limit;
  try {
    while (performance.now() < end) {
      const { value, done } = await within(reader.read(), limit);
      if (done) break;
      text += decoder.decode(value);
    }
  } catch {
    // aborted by the server's close: the end
  } finally {
    reader.releaseLock();
  }
  return text;
}
/**
 * Sends `request` on a fresh TLS connection and reads until the server
 * closes it (at most `limit` ms): the whole text, and whether it closed.
 */
export async function exchange(
  port: number,
  caCert: string,
  request: string | Uint8Array,
  limit = 5000,
): Promise<{ text: string; closed: boolean }> {
  using conn = await Deno.connectTls({
    hostname: "localhost",
    port,
    caCerts: [caCert],
  });
  await conn.write(
    typeof request === "string" ? new TextEncoder().encode(request) : request,
  );
  const decoder = new TextDecoder();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), limit);
  });
  const buffer = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await Promise.race([
        conn.read(buffer).catch(() => null),
        timeout,
      ]);
      if (n === "timeout") return { text, closed: false };
      if (n === null) return { text, closed: true };
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
  } finally {
    clearTimeout(timer);
  }
}
