/**
 * A Deno worker for a Python `multiprocessing` coordinator: connects to its
 * `multiprocessing.connection.Listener`, authenticates with the shared
 * authkey, then answers jobs until the coordinator closes the connection.
 *
 *     CONNAUTH_SECRET=secret python3 examples/python_coordinator.py --port 18050
 *     CONNAUTH_SECRET=secret deno task python-worker --port 18050
 *     (add --legacy-md5 to the worker when python3 is 3.11 or older)
 *
 * A job is UTF-8 JSON `{"id": 1, "text": "..."}`; the reply is
 * `{"id": 1, "words": 2, "upper": "..."}`. Exits 1 with a clear message when
 * the authkey is wrong, or when the coordinator runs Python 3.11 or older
 * and --legacy-md5 was not given.
 *
 * @module
 */
import { AuthenticationError } from "../errors.ts";
import {
  connectMultiprocessing,
  type MultiprocessingConnection,
} from "../multiprocessing.ts";
import { fail, parseFlags, warnDemoKey } from "./_cli.ts";
import { explain, setProgram } from "./_program.ts";

const RUN = setProgram({
  script: "examples/python_worker.ts",
  task: "python-worker",
  flags: ["--allow-net=127.0.0.1", "--allow-env=CONNAUTH_SECRET"],
});

const USAGE = `Usage: deno task python-worker [options]
   or: ${RUN} [options]

Connects to a Python multiprocessing Listener (examples/python_coordinator.py)
and answers its jobs until it closes the connection.

Options:
  --hostname NAME   the coordinator's address (default 127.0.0.1)
  --port N          the coordinator's port (default 18050)
  --secret-file PATH   read the authkey from PATH (else CONNAUTH_SECRET, else a demo key)
  --legacy-md5      allow a Python 3.11 or older coordinator (HMAC-MD5)
  -h, --help        show this help`;

interface Job {
  id: number;
  text: string;
}

const { common, values } = parseFlags(USAGE, {
  "legacy-md5": { type: "boolean" },
}, { port: 18050 });
if (common.demoKey) warnDemoKey();

let conn: MultiprocessingConnection;
try {
  conn = await connectMultiprocessing({
    hostname: common.hostname,
    port: common.port,
    authkey: common.key,
    legacyMd5: values["legacy-md5"] === true,
  });
} catch (error) {
  // The library's legacy hint names its legacyMd5 option; here it is a flag.
  if (
    error instanceof AuthenticationError && error.reason === "unsupported" &&
    error.message.includes("legacyMd5")
  ) {
    fail(
      "Cannot authenticate to the coordinator: it speaks the legacy HMAC-MD5 handshake of Python 3.11 and older; rerun with --legacy-md5 (or run the coordinator on Python 3.12+)",
    );
  }
  if (
    error instanceof AuthenticationError &&
    (error.reason === "rejected" || error.reason === "wrong-key")
  ) {
    fail(
      `${error.message}; check CONNAUTH_SECRET / --secret-file against the coordinator's authkey`,
    );
  }
  if (error instanceof AuthenticationError) fail(error.message);
  fail(
    explain(
      error,
      `connect to the coordinator at ${common.hostname}:${common.port}`,
    ) ??
      `Cannot connect to the coordinator at ${common.hostname}:${common.port}: ${
        (error as Error).message
      }; is it running?`,
  );
}

let done = 0;
try {
  // Each message is one job; the loop ends when the coordinator closes.
  for await (const message of conn) {
    const job = JSON.parse(new TextDecoder().decode(message)) as Job;
    const words = job.text.split(/\s+/).filter(Boolean).length;
    await conn.sendText(
      JSON.stringify({ id: job.id, words, upper: job.text.toUpperCase() }),
    );
    done++;
  }
  console.log(`worker: answered ${done} jobs; the coordinator closed`);
} catch (error) {
  fail(`Cannot finish the jobs: ${(error as Error).message}`);
} finally {
  await conn[Symbol.asyncDispose]();
}
