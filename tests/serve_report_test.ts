// Tests for _serve_report.ts and _serve_connection.ts: serve()'s hooks
// guarded one by one, its default log (lazy, rate limited, key-free), and
// the list of live connections that shutdown walks.
import assert from "node:assert/strict";
import { ServeReporter } from "../_serve_report.ts";
import { Connection, LiveConnections } from "../_serve_connection.ts";
import { AuthenticationError } from "../errors.ts";
import type { ServeErrorInfo, ServerConn } from "../server.ts";

const remoteAddr: Deno.NetAddr = {
  transport: "tcp",
  hostname: "192.0.2.7",
  port: 5000,
};
const localAddr: Deno.NetAddr = {
  transport: "tcp",
  hostname: "127.0.0.1",
  port: 7000,
};
const peer = { remoteAddr, localAddr };

/** Runs `fn` with console.error captured. */
function captureStderr(fn: () => void): string[] {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    fn();
  } finally {
    console.error = original;
  }
  return lines;
}

Deno.test("ServeReporter reports a throwing hook to onError as phase hook, and a throwing onError to stderr", () => {
  const errors: [unknown, ServeErrorInfo][] = [];
  const reporter = new ServeReporter({
    onRefuse: () => {
      throw new Error("refuse hook broke");
    },
    onError: (error, info) => errors.push([error, info]),
  }, false);
  reporter.refused(peer, "banned");
  assert.equal(errors.length, 1);
  assert.equal((errors[0][0] as Error).message, "refuse hook broke");
  assert.deepEqual(errors[0][1], { phase: "hook" });

  const stderr = captureStderr(() => {
    const broken = new ServeReporter({
      onError: () => {
        throw new TypeError("onError broke");
      },
    }, false);
    broken.error(new Error("reset"), { phase: "handshake", remoteAddr });
  });
  assert.deepEqual(stderr, [
    "connauth: the onError hook threw: TypeError: onError broke",
  ]);
});

Deno.test("ServeReporter calls each hook with what happened, and skips missing or null ones", () => {
  const seen: string[] = [];
  const reporter = new ServeReporter({
    onConnection: (info) => seen.push(`connection ${info.id}`),
    onAuthFailure: (info) =>
      seen.push(`failure ${info.failures} ${info.delay} ${info.error.reason}`),
    onRefuse: (info) =>
      seen.push(`refuse ${info.reason} ${info.localAddr === localAddr}`),
    onError: (error, info) => seen.push(`error ${info.phase} ${error}`),
  }, false);
  reporter.connected({
    id: 7,
    remoteAddr,
    localAddr,
    handshakeTime: 1,
    signal: new AbortController().signal,
  });
  const error = new AuthenticationError("Cannot authenticate: wrong");
  reporter.authFailed({ ...peer, error, failures: 2, delay: 500 }, "192.0.2.7");
  reporter.refused(peer, "evicted", () => "made room");
  reporter.error("boom", { phase: "accept" });
  assert.deepEqual(seen, [
    "connection 7",
    "failure 2 500 wrong-key",
    "refuse evicted true",
    "error accept boom",
  ]);
  // A null hook is no hook: calling it would report a TypeError.
  const reported: unknown[] = [];
  const quiet = new ServeReporter({
    onConnection: null as never,
    onRefuse: null as never,
    onError: (error) => reported.push(error),
  }, false);
  quiet.connected({
    id: 1,
    remoteAddr,
    localAddr,
    handshakeTime: 1,
    signal: new AbortController().signal,
  });
  quiet.refused(peer, "banned");
  assert.deepEqual(reported, []);
});

Deno.test("ServeReporter logs one line per event and formats details only when logging", () => {
  let formatted = 0;
  const detail = () => {
    formatted += 1;
    return "3 connections from 192.0.2.7 already open";
  };
  captureStderr(() => {
    new ServeReporter({}, false).refused(peer, "max-per-address", detail);
  });
  assert.equal(formatted, 0);

  const lines = captureStderr(() => {
    const reporter = new ServeReporter({}, true);
    assert.equal(reporter.logging, true);
    reporter.refused(peer, "max-per-address", detail);
    reporter.authFailed({
      ...peer,
      error: new AuthenticationError("Cannot authenticate: wrong"),
      failures: 1,
      delay: 250,
    }, "192.0.2.7");
    const thrown = new Error("handler broke");
    reporter.error(thrown, { phase: "handler", remoteAddr }, "closing");
    reporter.error(new Error("reset"), { phase: "accept" }, "skipping it");
  });
  assert.equal(formatted, 1);
  assert.equal(
    lines[0],
    "connauth: 192.0.2.7:5000: refused: 3 connections from 192.0.2.7 already open",
  );
  assert.equal(
    lines[1],
    "connauth: 192.0.2.7:5000: authentication failed (wrong-key); closing (failure 1 from 192.0.2.7; its next handshake waits 250 ms)",
  );
  // A handler's error comes with its stack.
  assert.match(
    lines[2],
    /^connauth: 192\.0\.2\.7:5000: handler failed: Error: handler broke\n\s+at /,
  );
  assert.match(lines[2], /; closing$/);
  assert.equal(
    lines[3],
    "connauth: accept failed: Error: reset; skipping it",
  );
});

Deno.test("ServeReporter's log prints at most 20 lines a second and sums up the rest on flush", () => {
  const lines = captureStderr(() => {
    const reporter = new ServeReporter({}, true);
    for (let i = 0; i < 50; i++) reporter.refused(peer, "banned", `${i}`);
    reporter.flush();
  });
  assert.equal(lines.length, 21);
  assert.match(lines[20], /^connauth: 30 more lines suppressed/);
});

function connection(): Connection {
  return new Connection({} as ServerConn);
}

Deno.test("LiveConnections keeps the running tasks, ends idle() with the last one, and gives up on all at once", async () => {
  const live = new LiveConnections();
  await live.idle(); // empty: at once
  const [a, b, c] = [connection(), connection(), connection()];
  live.add(a);
  live.add(b);
  live.add(c);
  const order = [];
  for (let x = live.first; x !== undefined; x = x.nextLive) order.push(x);
  assert.deepEqual(order, [c, b, a]);
  let idle = false;
  const waiting = live.idle().then(() => idle = true);
  live.remove(b);
  live.remove(c);
  await Promise.resolve();
  assert.equal(idle, false);
  assert.equal(live.size, 1);
  live.remove(a);
  await waiting;
  assert.equal(live.first, undefined);

  const [d, e] = [connection(), connection()];
  live.add(d);
  live.add(e);
  const given: Connection[] = [];
  const done = live.idle();
  live.abandonAll((x) => given.push(x));
  await done;
  assert.deepEqual(given, [e, d]);
  assert.ok(d.abandoned && e.abandoned);
  assert.equal(live.size, 0);
  // A task that ends after it was abandoned is not counted twice.
  live.remove(d);
  assert.equal(live.size, 0);
});

Deno.test("Connection remembers a turn given before it waits, and an end while it waits", async () => {
  const early = connection();
  early.onTurn("admitted");
  assert.equal(await early.waitTurn(), "admitted");
  const waiting = connection();
  const outcome = waiting.waitTurn();
  waiting.onTurn("ended");
  waiting.onTurn("admitted");
  assert.equal(await outcome, "ended");
});
