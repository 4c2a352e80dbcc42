// TlsListener.setCredentials() (_tls_credentials.ts) given a credentials
// file that never finishes reading: a named pipe nobody writes to. The
// calls run one after the other, so one read that never ends held every
// later rotation for ever. Regression: it failed before the read got its
// deadline (_pem.ts).
import assert from "node:assert/strict";
import { listenTls } from "../../tls.ts";
import { generateCertificates } from "../../certs.ts";
import { readPem } from "../../_pem.ts";
import { within } from "../_helpers.ts";

/** A named pipe in a new directory, removed (and unblocked) at dispose. */
async function fifo(): Promise<AsyncDisposable & { path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "connauth-fifo-" });
  const path = `${dir}/cert.pem`;
  const made = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(made.success, "mkfifo failed");
  return {
    path,
    async [Symbol.asyncDispose]() {
      // A reader the deadline gave up on still waits in open(): a writer
      // that comes and goes lets it end.
      try {
        using writer = await within(
          Deno.open(path, { write: true }),
          5000,
          "open the pipe for writing",
        );
        void writer;
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}

Deno.test("readPem() gives up on a file that does not finish reading within its deadline", async () => {
  await using pipe = await fifo();
  const started = performance.now();
  const read = readPem(
    undefined,
    pipe.path,
    {
      what: "the server certificate",
      textOption: "cert",
      fileOption: "certFile",
    },
    "set the TLS credentials",
    300,
  );
  await assert.rejects(
    within(read, 5000, "the read"),
    (error) => {
      assert.ok(error instanceof Deno.errors.TimedOut, String(error));
      assert.equal(
        error.message,
        `Cannot set the TLS credentials: the server certificate file "${pipe.path}" was not read within 300 ms (a named pipe nobody writes to, or a stalled network file system?); check \`certFile\``,
      );
      return true;
    },
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 250 && elapsed < 5000, `gave up after ${elapsed} ms`);
});

Deno.test("TlsListener.setCredentials() with a file that never reads fails, and later calls still apply", async () => {
  const set = await generateCertificates({ clients: [] });
  const next = await generateCertificates({ clients: [] });
  await using pipe = await fifo();
  await using listener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
    onError: () => {},
  });
  const stuck = listener.setCredentials({
    certFile: pipe.path,
    key: next.server.key,
  });
  stuck.catch(() => {});
  const later = listener.setCredentials({
    cert: next.server.cert,
    key: next.server.key,
  });
  await within(
    assert.rejects(stuck, Deno.errors.TimedOut),
    20_000,
    "the stuck call",
  );
  await within(later, 20_000, "the call after it");
});
