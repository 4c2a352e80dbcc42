/**
 * Interactive client for `examples/upper_server.ts`: the recipe's
 * `input('>>: ')` loop.
 *
 * Connects and authenticates with {@linkcode connect}, then reads lines from
 * standard input: empty lines are skipped, `quit` exits, anything else is
 * sent and the server's reply printed. The `>>: ` prompt is shown when
 * standard input is a terminal; from a pipe the client reads line by line
 * and prints only the replies, so it can be scripted:
 *
 *     deno task chat-client
 *     printf 'hello\nquit\n' | deno run --allow-net=127.0.0.1 --allow-env=CONNAUTH_SECRET examples/chat_client.ts
 *
 * Exits 0 on `quit` or end of input; 130 on Ctrl-C (SIGINT), as a shell
 * reports a program it interrupted; 1 when the server rejects the key or
 * goes away.
 *
 * @module
 */
import { connect } from "../server.ts";
import { commonHelp, fail, HELP_LINE, parseTimedFlags } from "./_cli.ts";
import { explain, setProgram } from "./_program.ts";
import { shutdownSignal } from "./_shutdown.ts";

const RUN = setProgram({
  script: "examples/chat_client.ts",
  task: "chat-client",
  flags: ["--allow-net=127.0.0.1", "--allow-env=CONNAUTH_SECRET"],
});

const USAGE = `Usage: deno task chat-client [options]
   or: ${RUN} [options]

Sends each line typed (or piped) to the upper-case server and prints the reply.
An empty line is skipped; "quit" exits.

Options:
${commonHelp(18001, { client: true })}
  --timeout MS      deadline in milliseconds to connect, authenticate and for
                    each reply (default 10000)
${HELP_LINE}`;

const { common, timeout } = parseTimedFlags(USAGE, { port: 18001 });

const address = `${common.hostname}:${common.port}`;
/** The exit status of a program stopped by Ctrl-C (128 + SIGINT's 2). */
const INTERRUPTED = 130;
using stop = shutdownSignal();
let conn: Deno.TcpConn;
try {
  conn = await connect({
    hostname: common.hostname,
    port: common.port,
    secret: common.key,
    hash: common.hash,
    timeout,
    signal: stop.signal,
  });
} catch (error) {
  if (stop.signal.aborted) Deno.exit(INTERRUPTED);
  fail(
    explain(error, `connect to ${address}`) ??
      `Cannot connect to ${address}: ${(error as Error).message}`,
  );
}

const encoder = new TextEncoder();
const interactive = Deno.stdin.isTerminal();

/** Lines of a byte stream, without their line endings. */
async function* readLines(
  stream: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<string> {
  let pending = "";
  const text = stream.pipeThrough(new TextDecoderStream(), { signal });
  for await (const chunk of text) {
    pending += chunk;
    let end: number;
    while ((end = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, end).replace(/\r$/, "");
      pending = pending.slice(end + 1);
    }
  }
  if (pending) yield pending;
}

const replies = readLines(conn.readable);
const input = readLines(Deno.stdin.readable, stop.signal);
// Ctrl-C also ends the wait for a reply, not only the wait for input.
const stopped = new Promise<"stopped">((resolve) => {
  if (stop.signal.aborted) resolve("stopped");
  stop.signal.addEventListener("abort", () => resolve("stopped"), {
    once: true,
  });
});
let code = 0;
try {
  while (true) {
    if (interactive) await Deno.stdout.write(encoder.encode(">>: "));
    const next = await input.next();
    if (next.done) break;
    const message = next.value.trim();
    if (!message) continue;
    if (message === "quit") break;
    try {
      await conn.write(encoder.encode(`${message}\n`));
    } catch (error) {
      // In Deno the reply stream reaching its end closes the socket, so a
      // server that went away shows here as a bad resource.
      if (
        error instanceof Deno.errors.BadResource ||
        error instanceof Deno.errors.BrokenPipe ||
        error instanceof Deno.errors.ConnectionReset
      ) {
        throw new Error(
          "the server closed the connection (a wrong key, or the server stopped)",
          { cause: error },
        );
      }
      throw error;
    }
    using deadline = replyTimer(timeout);
    const reply = await Promise.race([
      replies.next(),
      deadline.expired,
      stopped,
    ]);
    if (reply === "stopped") break;
    if (reply === "timeout") {
      throw new Error(`no reply within ${timeout} ms`);
    }
    if (reply.done) {
      throw new Error(
        "the server closed the connection (a wrong key, or the server stopped)",
      );
    }
    console.log(reply.value);
  }
} catch (error) {
  if (!stop.signal.aborted) {
    console.error(`Cannot talk to ${address}: ${(error as Error).message}`);
    code = 1;
  }
} finally {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
if (interactive) console.log();
Deno.exit(stop.signal.aborted ? INTERRUPTED : code);

function replyTimer(
  ms: number,
): { expired: Promise<"timeout"> } & Disposable {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  return { expired, [Symbol.dispose]: () => clearTimeout(timer) };
}
