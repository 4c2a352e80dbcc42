// Tests for _tls_authorize.ts: the race of listenTls()'s authorize hook
// against its deadline, a disconnect and an overflow, with fake hooks.
import assert from "node:assert/strict";
import {
  authorizeClient,
  type AuthorizeEnds,
  type AuthorizeHook,
} from "../_tls_authorize.ts";
import type { PeerIdentity } from "../tls.ts";

const REMOTE: Deno.NetAddr = {
  transport: "tcp",
  hostname: "127.0.0.1",
  port: 4433,
};
const ALICE: PeerIdentity = {
  cn: "alice",
  subject: "CN = alice",
  san: [],
  issuer: "CN = test CA",
  validFrom: new Date(0),
  validTo: new Date(0),
  fingerprint256: "AB:CD",
  serialNumber: "01",
};

/** Records how a wait ended, in order. */
function recorder() {
  const events: string[] = [];
  let settledOnce: () => void = () => {};
  const settledNow = new Promise<void>((resolve) => settledOnce = resolve);
  const ends: AuthorizeEnds = {
    settled: () => {
      events.push("settled");
      settledOnce();
    },
    accept: () => events.push("accept"),
    refuse: (reason, message) => events.push(`refuse ${reason}: ${message}`),
    fault: (error) => events.push(`fault ${(error as Error).message}`),
  };
  return { events, ends, settled: settledNow };
}

function ask(hook: AuthorizeHook, timeout = 1000, ends?: AuthorizeEnds) {
  const record = recorder();
  const wait = authorizeClient(hook, {
    identity: ALICE,
    remoteAddr: REMOTE,
    timeout,
    readBufferLimit: 1024,
  }, ends ?? record.ends);
  return { ...record, wait };
}

/** Lets pending promise callbacks run. */
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("authorizeClient() delivers a client the hook accepts, with its identity and address", async () => {
  const seen: unknown[] = [];
  let signal: AbortSignal | undefined;
  const { events, settled } = ask((identity, remoteAddr, s) => {
    seen.push(identity, remoteAddr);
    signal = s;
    return Promise.resolve(true);
  });
  await settled;
  await turn();
  assert.deepEqual(events, ["settled", "accept"]);
  assert.deepEqual(seen, [ALICE, REMOTE]);
  assert.equal(signal?.aborted, false);
});

Deno.test("authorizeClient() refuses when the hook says no, returns a non-true value or throws", async () => {
  for (
    const [hook, message] of [
      [
        () => false,
        'client "CN = alice" (SHA-256 AB:CD) was refused by the authorize hook',
      ],
      [
        () => "yes" as unknown as boolean,
        'client "CN = alice" (SHA-256 AB:CD) was refused by the authorize hook',
      ],
      [
        () => {
          throw new Error("no such user");
        },
        'client "CN = alice" (SHA-256 AB:CD) was refused: the authorize hook threw: no such user',
      ],
      [
        () => Promise.reject(new Error("db down")),
        'client "CN = alice" (SHA-256 AB:CD) was refused: the authorize hook threw: db down',
      ],
    ] as [AuthorizeHook, string][]
  ) {
    const { events, settled } = ask(hook);
    await settled;
    await turn();
    assert.deepEqual(events, ["settled", `refuse not-allowed: ${message}`]);
  }
});

Deno.test("authorizeClient() refuses a hook that does not answer in time and aborts its signal", async () => {
  let signal: AbortSignal | undefined;
  const { events, settled } = ask((_identity, _addr, s) => {
    signal = s;
    return new Promise<boolean>(() => {});
  }, 20);
  await settled;
  assert.deepEqual(events, [
    "settled",
    'refuse authorize-timeout: client "CN = alice" (SHA-256 AB:CD) was refused: the authorize hook did not answer within 20 ms; make it answer sooner (it gets an AbortSignal) or raise `authorizeTimeout`',
  ]);
  assert.equal((signal?.reason as DOMException).name, "TimeoutError");
});

Deno.test("authorizeClient() ends quietly on a disconnect and ignores the hook's late answer", async () => {
  let answer: (ok: boolean) => void = () => {};
  let signal: AbortSignal | undefined;
  const { events, wait } = ask((_identity, _addr, s) => {
    signal = s;
    return new Promise<boolean>((resolve) => answer = resolve);
  });
  wait.disconnected();
  assert.deepEqual(events, ["settled"]);
  assert.equal((signal?.reason as DOMException).name, "AbortError");
  answer(true);
  wait.overflowed();
  wait.disconnected();
  await turn();
  assert.deepEqual(events, ["settled"]);
});

Deno.test("authorizeClient() refuses a client that overflows while the hook runs", async () => {
  let signal: AbortSignal | undefined;
  const { events, wait } = ask((_identity, _addr, s) => {
    signal = s;
    return new Promise<boolean>(() => {});
  });
  wait.overflowed();
  assert.deepEqual(events, [
    "settled",
    'refuse too-large: client "CN = alice" (SHA-256 AB:CD) sent more than 1024 bytes while the authorize hook ran; it was closed (raise `readBufferLimit` if clients may send that much before the hook answers)',
  ]);
  assert.equal((signal?.reason as DOMException).name, "AbortError");
  await turn();
  assert.equal(events.length, 2);
});

Deno.test("authorizeClient() turns a throwing step into a fault of this client only", async () => {
  const faults: unknown[] = [];
  let settledCount = 0;
  authorizeClient(() => true, {
    identity: null,
    remoteAddr: REMOTE,
    timeout: Infinity,
    readBufferLimit: 1024,
  }, {
    settled: () => settledCount++,
    accept: () => {
      throw new Error("queue broke");
    },
    refuse: () => assert.fail("not refused"),
    fault: (error) => faults.push(error),
  });
  await turn();
  assert.equal(settledCount, 1);
  assert.deepEqual(faults.map((error) => (error as Error).message), [
    "queue broke",
  ]);
});
