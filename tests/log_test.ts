// Tests for _log.ts: the rate-limited logger, on a fake clock.
import assert from "node:assert/strict";
import { LOG_LINES_PER_SECOND, RateLimitedLog, safeLogText } from "../_log.ts";

function fakeLog(perSecond?: number) {
  const clock = { now: 0 };
  const lines: string[] = [];
  const log = new RateLimitedLog({
    prefix: "connauth: ",
    perSecond,
    now: () => clock.now,
    write: (line) => lines.push(line),
  });
  return { clock, lines, log };
}

Deno.test("RateLimitedLog prints at most perSecond lines a second and sums up the rest in the next window", () => {
  const { clock, lines, log } = fakeLog(3);
  for (let i = 0; i < 10; i++) log.line(`line ${i}`);
  assert.deepEqual(lines, [
    "connauth: line 0",
    "connauth: line 1",
    "connauth: line 2",
  ]);
  assert.equal(log.suppressed, 7);
  // Still the same window 999 ms later: counted, not printed.
  clock.now = 999;
  log.line("line 10");
  assert.equal(lines.length, 3);
  // The next window opens with the summary, then the line.
  clock.now = 1000;
  log.line("line 11");
  assert.deepEqual(lines.slice(3), [
    "connauth: 8 more lines suppressed (over 3 a second); use the hooks to see every event",
    "connauth: line 11",
  ]);
  assert.equal(log.suppressed, 0);
});

Deno.test("RateLimitedLog formats a line given as a function only when it prints it", () => {
  const { lines, log } = fakeLog(1);
  let calls = 0;
  const format = () => `call ${++calls}`;
  log.line(format);
  log.line(format);
  log.line(format);
  assert.equal(calls, 1);
  assert.deepEqual(lines, ["connauth: call 1"]);
  assert.equal(log.suppressed, 2);
});

Deno.test("RateLimitedLog.flush() prints the summary once, and nothing when nothing was suppressed", () => {
  const { lines, log } = fakeLog(1);
  log.flush();
  assert.deepEqual(lines, []);
  log.line("a");
  log.line("b");
  log.line("c");
  log.flush();
  log.flush();
  assert.deepEqual(lines, [
    "connauth: a",
    "connauth: 2 more lines suppressed (over 1 a second); use the hooks to see every event",
  ]);
});

Deno.test("RateLimitedLog writes to console.error by default, looked up per line", () => {
  const seen: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => seen.push(args.join(" "));
  try {
    const log = new RateLimitedLog({ prefix: "x: " });
    for (let i = 0; i < LOG_LINES_PER_SECOND + 5; i++) log.line(String(i));
    log.flush();
  } finally {
    console.error = original;
  }
  assert.equal(seen.length, LOG_LINES_PER_SECOND + 1);
  assert.equal(seen[0], "x: 0");
  assert.match(
    seen.at(-1)!,
    /^x: 5 more lines suppressed \(over 20 a second\)/,
  );
});

Deno.test("RateLimitedLog prints peer-chosen text as one entry: control characters and bidi overrides escaped, later lines indented", () => {
  const { lines, log } = fakeLog();
  // A custom authenticator's error may quote what the peer sent.
  log.line(
    "refused 127.0.0.1:5: bad hello \x1b[2J\rserve: accepted admin\u202e\nconnauth: fake entry",
  );
  assert.deepEqual(lines, [
    "connauth: refused 127.0.0.1:5: bad hello \\x1b[2J\\x0dserve: accepted admin\\u202e\n  connauth: fake entry",
  ]);
  // A stack keeps its shape: its "    at" lines are indented already.
  log.line(() => "handler failed: Error: boom\n    at handler (file.ts:1:1)");
  assert.equal(
    lines[1],
    "connauth: handler failed: Error: boom\n    at handler (file.ts:1:1)",
  );
  assert.equal(safeLogText("plain ünïcode ok"), "plain ünïcode ok");
});
