// Noise next to the Cookbook handshake and TLS, measured side by side in one
// run over loopback TCP:
//
// - handshakes/s: connect + accept + the handshake, one connection at a time;
// - transport MB/s: one client sends N MiB, the server reads all of it.
//
// Run with `deno task bench:noise` (options: --handshakes N and --mib N per
// round, --json bench/results/noise.json to also write the numbers). TLS uses
// a development CA and server certificate made by certs.ts at start (ECDSA
// P-256, TLS 1.3).
import { parseArgs } from "node:util";
import { generateCertificates } from "../certs.ts";
import {
  clientAuthenticate,
  HmacKey,
  serverAuthenticate,
} from "../handshake.ts";
import {
  acceptNoise,
  connectNoise,
  generateNoisePsk,
  NOISE_MAX_PAYLOAD_LENGTH,
} from "../noise.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    handshakes: { type: "string", default: "200" },
    mib: { type: "string", default: "32" },
    json: { type: "string" },
  },
});
const HANDSHAKES = Number(values.handshakes);
const MIB = Number(values.mib);
const CHUNK = NOISE_MAX_PAYLOAD_LENGTH; // the same write size for everyone
const TOTAL = MIB * 1024 * 1024;

const psk = generateNoisePsk();
const hmacKey = await HmacKey.import("bench key");
const certs = await generateCertificates();

interface Pair {
  client: Deno.Conn;
  server: Deno.Conn;
}

async function tcpPair(listener: Deno.Listener): Promise<Pair> {
  const { port } = listener.addr as Deno.NetAddr;
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port }),
    listener.accept(),
  ]);
  return { client, server };
}

async function tlsPair(
  listener: Deno.TlsListener,
  noDelay: boolean,
): Promise<Pair> {
  const { port } = listener.addr as Deno.NetAddr;
  const connect = async (): Promise<Deno.TlsConn> => {
    if (!noDelay) {
      return await Deno.connectTls({
        hostname: "localhost",
        port,
        caCerts: [certs.ca.cert],
      });
    }
    // Deno.connectTls leaves Nagle's algorithm on (no setNoDelay on a
    // TlsConn): each handshake then waits ~40 ms for a delayed ACK.
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
    tcp.setNoDelay(true);
    return await Deno.startTls(tcp, {
      hostname: "localhost",
      caCerts: [certs.ca.cert],
    });
  };
  const [client, server] = await Promise.all([connect(), listener.accept()]);
  await Promise.all([client.handshake(), server.handshake()]);
  return { client, server };
}

/** One way of getting an authenticated (and maybe encrypted) channel. */
interface Contender {
  name: string;
  /** Connect + handshake; returns a sender and a receiver. */
  open(): Promise<{
    send(data: Uint8Array): Promise<void>;
    finish(): Promise<void>;
    /** Reads everything to the end; returns the byte count. */
    drain(): Promise<number>;
    close(): void;
  }>;
  dispose(): void;
}

function rawChannel(pair: Pair) {
  const buffer = new Uint8Array(256 * 1024);
  return {
    async send(data: Uint8Array) {
      let offset = 0;
      while (offset < data.length) {
        offset += await pair.client.write(data.subarray(offset));
      }
    },
    async finish() {
      await pair.client.closeWrite();
    },
    async drain() {
      let total = 0;
      for (;;) {
        const n = await pair.server.read(buffer);
        if (n === null) return total;
        total += n;
      }
    },
    close() {
      pair.client.close();
      pair.server.close();
    },
  };
}

function tcpContender(name: string, cookbook: boolean): Contender {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return {
    name,
    async open() {
      const pair = await tcpPair(listener);
      if (cookbook) {
        await Promise.all([
          serverAuthenticate(pair.server, hmacKey),
          clientAuthenticate(pair.client, hmacKey),
        ]);
      }
      return rawChannel(pair);
    },
    dispose: () => listener.close(),
  };
}

function tlsContender(noDelay: boolean): Contender {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: certs.server.cert,
    key: certs.server.key,
  });
  return {
    name: noDelay
      ? "TLS 1.3, ECDSA P-256 (startTls + setNoDelay)"
      : "TLS 1.3, ECDSA P-256 (Deno.connectTls as is)",
    async open() {
      return rawChannel(await tlsPair(listener, noDelay));
    },
    dispose: () => listener.close(),
  };
}

function noiseContender(): Contender {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return {
    name: "Noise NNpsk0 (noise.ts)",
    async open() {
      const pair = await tcpPair(listener);
      const [client, server] = await Promise.all([
        connectNoise(pair.client, psk),
        acceptNoise(pair.server, psk),
      ]);
      return {
        send: (data) => client.send(data),
        finish: () => client.closeWrite(),
        async drain() {
          let total = 0;
          for (;;) {
            const message = await server.receive();
            if (message === null) return total;
            total += message.length;
          }
        },
        close() {
          client.close();
          server.close();
        },
      };
    },
    dispose: () => listener.close(),
  };
}

async function handshakesPerSecond(contender: Contender): Promise<number> {
  for (let i = 0; i < 50; i++) (await contender.open()).close(); // warm up
  const start = performance.now();
  for (let i = 0; i < HANDSHAKES; i++) (await contender.open()).close();
  return HANDSHAKES / ((performance.now() - start) / 1000);
}

async function megabytesPerSecond(contender: Contender): Promise<number> {
  const channel = await contender.open();
  const chunk = new Uint8Array(CHUNK).fill(0x61);
  const start = performance.now();
  const draining = channel.drain();
  for (let sent = 0; sent < TOTAL; sent += CHUNK) {
    await channel.send(
      sent + CHUNK > TOTAL ? chunk.subarray(0, TOTAL - sent) : chunk,
    );
  }
  await channel.finish();
  const received = await draining;
  const seconds = (performance.now() - start) / 1000;
  channel.close();
  if (received !== TOTAL) {
    throw new Error(`Cannot measure: got ${received} of ${TOTAL} bytes`);
  }
  return TOTAL / (1024 * 1024) / seconds;
}

const contenders = [
  tcpContender("plain TCP (no authentication)", false),
  tcpContender("Cookbook HMAC handshake (plaintext after)", true),
  noiseContender(),
  tlsContender(true),
  tlsContender(false),
];

// Rounds interleave the contenders so that a noisy neighbour on the machine
// hits them all alike; each figure is the median of the rounds.
const ROUNDS = 3;
const results = contenders.map(() => ({
  handshakes: [] as number[],
  mbps: [] as number[],
}));
for (let round = 0; round < ROUNDS; round++) {
  for (const [i, contender] of contenders.entries()) {
    results[i].handshakes.push(await handshakesPerSecond(contender));
    results[i].mbps.push(await megabytesPerSecond(contender));
  }
}
for (const contender of contenders) contender.dispose();
const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const rows = contenders.map((contender, i) => ({
  name: contender.name,
  handshakes: median(results[i].handshakes),
  mbps: median(results[i].mbps),
}));

console.log(
  `loopback TCP, Deno ${Deno.version.deno}, median of ${ROUNDS} rounds of ${HANDSHAKES} sequential handshakes and ${MIB} MiB in ${CHUNK}-byte writes\n`,
);
console.log("| channel | handshakes/s | MiB/s |");
console.log("| --- | ---: | ---: |");
for (const row of rows) {
  console.log(
    `| ${row.name} | ${row.handshakes.toFixed(0)} | ${row.mbps.toFixed(0)} |`,
  );
}
if (values.json) {
  const dir = values.json.replace(/\/[^/]*$/, "");
  if (dir !== values.json) await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    values.json,
    JSON.stringify(
      { deno: Deno.version.deno, handshakes: HANDSHAKES, mib: MIB, rows },
      null,
      2,
    ) + "\n",
  );
}
