// Hostile TLS peers: nothing a client sends before it is authorized may
// crash, stall or bloat a listenTls() server. A corpus of malformed client
// certificates, built with the project's own DER writer and signed both by
// the trusted CA and by themselves, is presented from Deno.connectTls
// (rustls sends whatever DER it is given), with and without a write right
// after the handshake.
import assert from "node:assert/strict";
import {
  listenTls,
  type ListenTlsOptions,
  type PeerIdentity,
  type TlsFailure,
  type TlsListener,
} from "../../tls.ts";
import { type Refusal, refusal } from "../_tls_refusal.ts";
import { type HttpsErrorInfo, serveHttps } from "../../https.ts";
import { generateCertificates, writeCertificates } from "../../certs.ts";
import * as asn1 from "../../_asn1.ts";
import { pemDecode, pemEncode, signCertificate } from "../../_x509.ts";
import { readCertificate } from "../../_tls_identity.ts";
import { readExact, writeAll } from "../../_conn_io.ts";
import { utf8 } from "../../_bytes.ts";
import {
  findPython,
  findTool,
  interopScript,
  lines,
  peerTest,
  REQUIRE_PEERS,
  startExample,
  within,
} from "../_helpers.ts";

// ---------------------------------------------------------------------------
// Certificates

const set = await generateCertificates({ clients: ["alice"] });
const alice = set.clients.alice;
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const caKey = await crypto.subtle.importKey(
  "pkcs8",
  pemDecode(set.ca.key, "PRIVATE KEY", "CA key"),
  EC,
  false,
  ["sign"],
);
/** The CA's subject Name, as it must appear as the issuer of its leaves. */
const caSubject = (() => {
  const der = pemDecode(set.ca.cert, "CERTIFICATE", "CA certificate");
  const tbs = asn1.children(der, asn1.readNode(der, 0))[0];
  return asn1.raw(der, asn1.children(der, tbs)[5]).slice();
})();
const clientKeys = await crypto.subtle.generateKey(EC, true, ["sign"]);
const clientSpki = new Uint8Array(
  await crypto.subtle.exportKey("spki", clientKeys.publicKey),
);
const clientKey = pemEncode(
  "PRIVATE KEY",
  new Uint8Array(await crypto.subtle.exportKey("pkcs8", clientKeys.privateKey)),
);

const OID = {
  cn: "2.5.4.3",
  o: "2.5.4.10",
  keyUsage: "2.5.29.15",
  san: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  eku: "2.5.29.37",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  upn: "1.3.6.1.4.1.311.20.2.3",
};
/** The identifier octets of a high-tag-number tag ([UNIVERSAL 128]). */
const HIGH_TAG = Uint8Array.of(0x1f, 0x81, 0x00);
const DAY = 86_400_000;

function attribute(id: string, value: Uint8Array): Uint8Array {
  return asn1.sequence(asn1.oid(id), value);
}
function rdn(...attributes: Uint8Array[]): Uint8Array {
  return asn1.set(...attributes);
}
function name(...rdns: Uint8Array[]): Uint8Array {
  return asn1.sequence(...rdns);
}
function cnName(value: Uint8Array): Uint8Array {
  return name(rdn(attribute(OID.cn, value)));
}
function extension(id: string, critical: boolean, value: Uint8Array) {
  return critical
    ? asn1.sequence(asn1.oid(id), asn1.boolean(true), asn1.octetString(value))
    : asn1.sequence(asn1.oid(id), asn1.octetString(value));
}
function san(...names: Uint8Array[]): Uint8Array {
  return extension(OID.san, false, asn1.sequence(...names));
}
function eku(...ids: string[]): Uint8Array {
  return extension(OID.eku, false, asn1.sequence(...ids.map(asn1.oid)));
}
const basicConstraints = extension(OID.basicConstraints, true, asn1.sequence());
const keyUsage = extension(OID.keyUsage, true, asn1.namedBits([0]));
const clientAuth = eku(OID.clientAuth);
function utcTime(text: string): Uint8Array {
  return asn1.tlv(asn1.TAG.UTC_TIME, utf8(text));
}
function validity(notBefore: Uint8Array, notAfter?: Uint8Array): Uint8Array {
  return asn1.sequence(
    notBefore,
    notAfter ?? asn1.time(new Date(Date.now() + 30 * DAY)),
  );
}

/** One malformed certificate and what a server must make of it. */
interface Case {
  name: string;
  subject?: Uint8Array;
  serial?: Uint8Array;
  validity?: Uint8Array;
  /** The extensions; default basicConstraints, keyUsage, clientAuth. */
  extensions?: Uint8Array[];
  /** The whole [3] field instead of `extensions`. */
  extensionsField?: Uint8Array;
  /** Signed by the trusted CA: accepted, or refused with this reason. */
  expect: "accepted" | TlsFailure;
  /**
   * Who presents it: Deno.connectTls by default; `openssl s_client` for
   * what rustls refuses to send (it parses its own certificate first).
   */
  sender?: "openssl";
}

const corpus: Case[] = [
  {
    name: "a subject attribute without a value",
    subject: name(rdn(asn1.sequence(asn1.oid(OID.cn)))),
    expect: "unreadable-certificate",
  },
  {
    name: "an empty subject (names in the SAN)",
    subject: name(),
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      extension(
        OID.san,
        true,
        asn1.sequence(asn1.implicit(2, utf8("empty.test"))),
      ),
    ],
    expect: "accepted",
  },
  {
    name: "an empty RDN",
    subject: name(rdn(), rdn(attribute(OID.cn, asn1.utf8String("x")))),
    expect: "unreadable-certificate",
  },
  {
    name: "a high-tag-number attribute type",
    subject: name(
      rdn(asn1.sequence(asn1.tlv(HIGH_TAG, utf8("x")), asn1.utf8String("x"))),
    ),
    expect: "unreadable-certificate",
  },
  {
    name: "a high-tag-number attribute value",
    subject: cnName(asn1.tlv(HIGH_TAG, utf8("x"))),
    expect: "unreadable-certificate",
  },
  {
    name: "a truncated attribute type OID",
    subject: name(
      rdn(asn1.sequence(
        asn1.tlv(asn1.TAG.OID, Uint8Array.of(0x55, 0x04, 0x83)),
        asn1.utf8String("x"),
      )),
    ),
    expect: "unreadable-certificate",
  },
  {
    name: "a BMPString CN of odd length",
    subject: cnName(asn1.tlv(0x1e, Uint8Array.of(0, 0x61, 0))),
    expect: "unreadable-certificate",
  },
  {
    name: "a BMPString CN with a lone surrogate",
    subject: cnName(asn1.tlv(0x1e, Uint8Array.of(0xd8, 0, 0, 0x61))),
    expect: "unreadable-certificate",
  },
  {
    name: "a UniversalString CN of 5 bytes",
    subject: cnName(asn1.tlv(0x1c, Uint8Array.of(0, 0, 0, 0x61, 0))),
    expect: "unreadable-certificate",
  },
  {
    name: "a UniversalString CN beyond U+10FFFF",
    subject: cnName(asn1.tlv(0x1c, Uint8Array.of(0, 0x11, 0, 0))),
    expect: "unreadable-certificate",
  },
  {
    name: "a PrintableString CN with '@' and a newline",
    subject: cnName(asn1.tlv(asn1.TAG.PRINTABLE_STRING, utf8("a@b\nc"))),
    expect: "unreadable-certificate",
  },
  {
    name: "a UTF8String CN that is not UTF-8",
    subject: cnName(asn1.tlv(asn1.TAG.UTF8_STRING, Uint8Array.of(0x62, 0xc3))),
    expect: "unreadable-certificate",
  },
  {
    name: "a UTF8String CN with an overlong '/'",
    subject: cnName(
      asn1.tlv(asn1.TAG.UTF8_STRING, Uint8Array.of(0x61, 0xc0, 0xaf)),
    ),
    expect: "unreadable-certificate",
  },
  {
    name: "an odd BMPString in O beside a good CN (printed as hex)",
    subject: name(
      rdn(attribute(OID.o, asn1.tlv(0x1e, Uint8Array.of(0, 0x61, 0)))),
      rdn(attribute(OID.cn, asn1.utf8String("odd-o"))),
    ),
    expect: "accepted",
  },
  {
    name: "a subject with a non-minimal (BER) length",
    sender: "openssl",
    subject: Uint8Array.of(
      0x30,
      0x81,
      0x0e,
      ...cnName(asn1.utf8String("ber")).subarray(2),
    ),
    expect: "handshake",
  },
  {
    name: "a negative serial number",
    serial: asn1.tlv(asn1.TAG.INTEGER, Uint8Array.of(0x80, 0x01)),
    expect: "accepted",
  },
  {
    name: "an empty serial number",
    serial: asn1.tlv(asn1.TAG.INTEGER, new Uint8Array(0)),
    expect: "unreadable-certificate",
  },
  {
    name: "a serial number with a redundant leading zero",
    serial: asn1.tlv(asn1.TAG.INTEGER, Uint8Array.of(0, 1)),
    expect: "unreadable-certificate",
  },
  {
    name: "an oversized (40-byte) serial number",
    serial: asn1.unsignedInteger(new Uint8Array(40).fill(0x5a)),
    expect: "accepted",
  },
  {
    name: "a validity in month 13",
    validity: validity(utcTime("201301000000Z")),
    expect: "handshake",
  },
  {
    name: "a validity in local time (no Z)",
    validity: validity(utcTime("200101000000")),
    expect: "handshake",
  },
  {
    name: "a validity with a UTC offset",
    validity: validity(utcTime("200101000000+0100")),
    expect: "handshake",
  },
  {
    name: "a GeneralizedTime before 2050",
    validity: validity(
      asn1.tlv(asn1.TAG.GENERALIZED_TIME, utf8("20200101000000Z")),
    ),
    expect: "accepted",
  },
  {
    name: "two subjectAltName extensions",
    sender: "openssl",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.implicit(2, utf8("one.test"))),
      san(asn1.implicit(2, utf8("two.test"))),
    ],
    expect: "handshake",
  },
  {
    name: "an empty list of extensions",
    extensionsField: asn1.explicit(3, asn1.sequence()),
    expect: "unreadable-certificate",
  },
  {
    name: "a critical keyUsage with an empty value",
    extensions: [
      basicConstraints,
      extension(OID.keyUsage, true, new Uint8Array(0)),
      clientAuth,
    ],
    expect: "unreadable-certificate",
  },
  {
    name: "an unknown critical extension",
    sender: "openssl",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      extension("1.3.6.1.4.1.55555.1", true, asn1.utf8String("x")),
    ],
    expect: "handshake",
  },
  {
    name: "an empty subjectAltName",
    extensions: [basicConstraints, keyUsage, clientAuth, san()],
    expect: "unreadable-certificate",
  },
  {
    name: "an empty DNS name",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.implicit(2, new Uint8Array(0))),
    ],
    expect: "unreadable-certificate",
  },
  {
    name: "a DNS name that is not ASCII",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.implicit(2, utf8("café.test"))),
    ],
    expect: "unreadable-certificate",
  },
  {
    name: "a 5-byte IP address",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.implicit(7, Uint8Array.of(127, 0, 0, 1, 1))),
    ],
    expect: "unreadable-certificate",
  },
  {
    name: "a directoryName with an empty RDN",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.explicit(4, name(rdn()))),
    ],
    expect: "unreadable-certificate",
  },
  {
    name: "a directoryName that is not a Name",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.explicit(4, asn1.smallInteger(1))),
    ],
    expect: "unreadable-certificate",
  },
  {
    name: "an otherName with a high-tag-number value",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.tlv(
        0xa0,
        asn1.oid(OID.upn),
        asn1.explicit(0, asn1.tlv(HIGH_TAG, utf8("x"))),
      )),
    ],
    expect: "unreadable-certificate",
  },
  {
    name: "an alternative name of undefined type [9]",
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.implicit(9, utf8("x"))),
    ],
    expect: "unreadable-certificate",
  },
  {
    name: "a basicConstraints that is not a SEQUENCE",
    sender: "openssl",
    extensions: [
      extension(OID.basicConstraints, true, asn1.tlv(asn1.TAG.NULL)),
      keyUsage,
      clientAuth,
    ],
    expect: "handshake",
  },
  {
    name: "a basicConstraints CA:TRUE with a negative pathLen",
    extensions: [
      extension(
        OID.basicConstraints,
        true,
        asn1.sequence(
          asn1.boolean(true),
          asn1.tlv(asn1.TAG.INTEGER, Uint8Array.of(0xff)),
        ),
      ),
      keyUsage,
      clientAuth,
    ],
    expect: "handshake",
  },
  {
    name: "an extendedKeyUsage that is not a SEQUENCE",
    sender: "openssl",
    extensions: [
      basicConstraints,
      keyUsage,
      extension(OID.eku, false, asn1.oid(OID.clientAuth)),
    ],
    expect: "handshake",
  },
  {
    name: "an empty extendedKeyUsage",
    extensions: [basicConstraints, keyUsage, eku()],
    expect: "handshake",
  },
  {
    name: "an extendedKeyUsage of serverAuth only",
    extensions: [basicConstraints, keyUsage, eku(OID.serverAuth)],
    expect: "wrong-key-usage",
  },
  {
    name: "2000 RDNs in the subject",
    subject: name(
      ...Array.from(
        { length: 2000 },
        (_, i) => rdn(attribute(OID.cn, asn1.utf8String(`n${i}`))),
      ),
    ),
    expect: "accepted",
  },
];

let counter = 1000;

/** The DER certificate of a case, signed by the CA or by itself. */
async function build(
  entry: Case,
  signer: "ca" | "self",
): Promise<Uint8Array<ArrayBuffer>> {
  const subject = entry.subject ??
    cnName(asn1.utf8String(`corpus ${++counter}`));
  const extensions = entry.extensionsField ??
    asn1.explicit(
      3,
      asn1.sequence(
        ...(entry.extensions ?? [basicConstraints, keyUsage, clientAuth]),
      ),
    );
  const tbs = asn1.sequence(
    asn1.explicit(0, asn1.smallInteger(2)),
    entry.serial ?? asn1.smallInteger(++counter),
    asn1.sequence(asn1.oid("1.2.840.10045.4.3.2")),
    signer === "ca" ? caSubject : subject,
    entry.validity ?? validity(asn1.time(new Date(Date.now() - DAY))),
    subject,
    clientSpki,
    extensions,
  );
  return await signCertificate(
    tbs,
    signer === "ca" ? caKey : clientKeys.privateKey,
  );
}

// ---------------------------------------------------------------------------
// A server that records every decision by the client's port

interface Decision {
  accepted?: PeerIdentity | null;
  refused?: Refusal;
  /**
   * Its place among every decision of every harness ({@linkcode decided}):
   * a client takes only a decision made after it connected, as an earlier
   * client may have used the same port.
   */
  seq: number;
}

/** How many decisions the harnesses have recorded. */
let decided = 0;

interface Harness extends AsyncDisposable {
  port: number;
  decisions: Map<number, Decision>;
  errors: Refusal[];
}

async function echoServer(
  options: Partial<ListenTlsOptions> = {},
): Promise<Harness> {
  const decisions = new Map<number, Decision>();
  const errors: Refusal[] = [];
  const listener: TlsListener = await listenTls({
    cert: set.server.cert,
    key: set.server.key,
    clientCa: set.ca.cert,
    onError: (error, info) => {
      const event = refusal(error, info);
      errors.push(event);
      if (event.remoteAddr) {
        decisions.set(event.remoteAddr.port, {
          refused: event,
          seq: ++decided,
        });
      }
    },
    ...options,
  });
  const tasks = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const conn of listener) {
      decisions.set(conn.remoteAddr.port, {
        accepted: conn.peerIdentity,
        seq: ++decided,
      });
      const task = conn.readable.pipeTo(conn.writable).catch(() => {}).finally(
        () => conn.close(),
      );
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })();
  return {
    port: listener.addr.port,
    decisions,
    errors,
    async [Symbol.asyncDispose]() {
      await listener[Symbol.asyncDispose]();
      await loop;
      await Promise.all(tasks);
      await new Promise((resolve) => setTimeout(resolve, 20));
    },
  };
}

async function waitFor<T>(
  what: string,
  probe: () => T | undefined,
  ms = 5000,
): Promise<T> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}

/** Resolves when the server has closed the connection (EOF or an error). */
async function serverClosed(conn: Deno.Conn, ms = 5000): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const read = (async () => {
    const buffer = new Uint8Array(1024);
    for (let i = 0; i < 100; i++) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) return true;
    }
    return false;
  })();
  try {
    return await Promise.race([
      read,
      new Promise<boolean>((resolve) => timer = setTimeout(resolve, ms, false)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads until the server closes (bounded in time): what came, and whether. */
async function readToEnd(
  conn: Deno.Conn,
  ms = 5000,
): Promise<{ text: string; closed: boolean }> {
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const read = (async () => {
    const buffer = new Uint8Array(4096);
    for (let i = 0; i < 100; i++) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) return true;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return false;
  })();
  try {
    const closed = await Promise.race([
      read,
      new Promise<boolean>((resolve) => timer = setTimeout(resolve, ms, false)),
    ]);
    return { text, closed };
  } finally {
    clearTimeout(timer);
  }
}

/** The decision on `port` made after the count of decisions was `since`. */
function decisionSince(
  decisions: Map<number, Decision>,
  port: number,
  since: number,
): Decision | undefined {
  const decision = decisions.get(port);
  return decision && decision.seq > since ? decision : undefined;
}

/**
 * Presents a certificate and returns what the server decided: the client
 * port's identity when accepted, the report when refused. A refused client
 * must find its connection closed; an accepted one gets its bytes echoed.
 */
async function present(
  port: number,
  decisions: Map<number, Decision>,
  der: Uint8Array,
  write: boolean,
  sender?: "openssl",
): Promise<Decision> {
  if (sender === "openssl") {
    return await presentWithOpenssl(port, decisions, der, write);
  }
  const since = decided;
  const conn = await Deno.connectTls({
    hostname: "localhost",
    port,
    caCerts: [set.ca.cert],
    cert: pemEncode("CERTIFICATE", der),
    key: clientKey,
  });
  try {
    const clientPort = conn.localAddr.port;
    await conn.handshake().catch(() => {});
    if (write) await conn.write(utf8("ping")).catch(() => {});
    const decision = await waitFor(
      `the server's decision on port ${clientPort}`,
      () => decisionSince(decisions, clientPort, since),
    );
    if (decision.refused) {
      assert.ok(
        await serverClosed(conn),
        `the server left a refused connection open (${decision.refused.reason})`,
      );
    } else if (write) {
      const echo = await readExact(conn, 4, undefined, "echo");
      assert.equal(new TextDecoder().decode(echo), "ping");
    }
    return decision;
  } finally {
    conn.close();
  }
}

const OPENSSL = findTool("openssl");
const work = await Deno.makeTempDir({ prefix: "connauth-hostile-tls-" });
addEventListener("unload", () => {
  try {
    Deno.removeSync(work, { recursive: true });
  } catch {
    // already gone
  }
});
Deno.writeTextFileSync(`${work}/ca.pem`, set.ca.cert);
Deno.writeTextFileSync(`${work}/client-key.pem`, clientKey);

/**
 * {@linkcode present} with `openssl s_client` as the client, for the
 * certificates rustls will not send. Its decision is the one for the port
 * the server had not seen before (the corpus runs one client at a time).
 */
async function presentWithOpenssl(
  port: number,
  decisions: Map<number, Decision>,
  der: Uint8Array,
  write: boolean,
): Promise<Decision> {
  assert.ok(OPENSSL, "openssl is needed to send this certificate");
  const certFile = `${work}/client.pem`;
  Deno.writeTextFileSync(certFile, pemEncode("CERTIFICATE", der));
  const since = decided;
  const child = new Deno.Command(OPENSSL, {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-servername",
      "localhost",
      "-CAfile",
      `${work}/ca.pem`,
      "-cert",
      certFile,
      "-key",
      `${work}/client-key.pem`,
      "-quiet",
      "-no_ign_eof",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const stdin = child.stdin.getWriter();
  let output = "";
  const reading = (async () => {
    for await (const chunk of child.stdout) {
      output += new TextDecoder().decode(chunk);
    }
  })();
  try {
    if (write) await stdin.write(utf8("ping\n")).catch(() => {});
    const decision = await waitFor("the server's decision", () => {
      for (const value of decisions.values()) {
        if (value.seq > since) return value;
      }
      return undefined;
    });
    if (decision.refused) {
      // s_client exits when the server closes the connection.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exited = await Promise.race([
        child.status.then(() => true),
        new Promise<boolean>((resolve) =>
          timer = setTimeout(resolve, 5000, false)
        ),
      ]);
      clearTimeout(timer);
      assert.ok(exited, "the server left a refused connection open");
    } else if (write) {
      await waitFor(
        "the echo",
        () => output.includes("ping") ? true : undefined,
      );
    }
    return decision;
  } finally {
    await stdin.close().catch(() => {});
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await child.status;
    await reading;
  }
}

/** A good client is served. */
async function goodClient(port: number): Promise<void> {
  using conn = await Deno.connectTls({
    hostname: "localhost",
    port,
    caCerts: [set.ca.cert],
    cert: alice.cert,
    key: alice.key,
  });
  await writeAll(conn, utf8("hello"));
  const echo = await readExact(conn, 5, undefined, "echo");
  assert.equal(new TextDecoder().decode(echo), "hello");
}

/**
 * Server-side sockets on `port` still ESTABLISHED or in CLOSE-WAIT; with
 * `accepted`, only those the server accepted (a socket still in the
 * kernel's accept queue has no inode yet). Read by a `cat` child: Deno
 * lets only `--allow-all` read /proc/net itself.
 */
function openServerSockets(port: number, accepted = false): number {
  let count = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const out = new Deno.Command("cat", { args: [table], stderr: "null" })
      .outputSync();
    if (!out.success) continue;
    const text = new TextDecoder().decode(out.stdout);
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4) continue;
      const local = parseInt(fields[1].split(":").at(-1)!, 16);
      if (local !== port || (fields[3] !== "01" && fields[3] !== "08")) {
        continue;
      }
      if (!accepted || fields[9] !== "0") count++;
    }
  }
  return count;
}

async function fingerprint(der: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
  return [...digest].map((byte) =>
    byte.toString(16).toUpperCase().padStart(2, "0")
  ).join(":");
}

function outcome(decision: Decision): string {
  return decision.refused ? decision.refused.reason : "accepted";
}

const REPORT = Deno.env.get("CONNAUTH_CORPUS_REPORT") === "1";

// ---------------------------------------------------------------------------
// Tests

Deno.test("listenTls() survives the malformed-certificate corpus and keeps serving", async () => {
  await using server = await echoServer();
  const table: string[] = [];
  for (const entry of corpus) {
    if (entry.sender === "openssl" && !OPENSSL && !REQUIRE_PEERS) continue;
    for (const signer of ["ca", "self"] as const) {
      const der = await build(entry, signer);
      for (const write of [false, true]) {
        const decision = await present(
          server.port,
          server.decisions,
          der,
          write,
          entry.sender,
        );
        const label = `${entry.name} (${
          signer === "ca" ? "signed by the CA" : "self-signed"
        }, ${write ? "writes" : "silent"})`;
        table.push(
          `${label}: ${outcome(decision)}${
            decision.refused ? ` - ${decision.refused.message}` : ""
          }`,
        );
        if (signer === "ca") {
          assert.equal(outcome(decision), entry.expect, label);
        } else {
          // A certificate no trusted CA signed is never accepted.
          assert.ok(
            decision.refused?.reason === "unknown-ca" ||
              decision.refused?.reason === "handshake",
            `${label}: ${outcome(decision)}`,
          );
        }
        if (decision.refused) {
          const { reason, message, remoteAddr } = decision.refused;
          if (reason !== "handshake") {
            // Whoever it is, the report names the certificate it refused.
            assert.ok(
              message.includes(await fingerprint(der)),
              `${label}: ${reason}: ${message}`,
            );
          }
          assert.ok(message.length < 1000, `${label}: a long log line`);
          assert.equal(remoteAddr?.hostname, "127.0.0.1", label);
        }
      }
    }
    await goodClient(server.port);
  }
  if (REPORT) console.log(table.join("\n"));
  // Every connection, refused or served, is closed on the server's side.
  await waitFor(
    "the server to close every client socket",
    () => openServerSockets(server.port) === 0 ? true : undefined,
  );
});

Deno.test("listenTls() reads the identity of an accepted odd certificate only with its own reader", async () => {
  await using server = await echoServer();
  const cases = Object.fromEntries(corpus.map((entry) => [entry.name, entry]));
  const identity = async (name: string) => {
    const decision = await present(
      server.port,
      server.decisions,
      await build(cases[name], "ca"),
      false,
    );
    assert.ok(decision.accepted, name);
    return decision.accepted;
  };
  const empty = await identity("an empty subject (names in the SAN)");
  assert.equal(empty.cn, undefined);
  assert.equal(empty.subject, "");
  assert.deepEqual(empty.san, ["DNS:empty.test"]);
  const negative = await identity("a negative serial number");
  assert.equal(negative.serialNumber, "-7FFF");
  const oddO = await identity(
    "an odd BMPString in O beside a good CN (printed as hex)",
  );
  assert.equal(oddO.cn, "odd-o");
  assert.equal(oddO.subject, "O = #1E03006100, CN = odd-o");
  const generalized = await identity("a GeneralizedTime before 2050");
  assert.equal(generalized.validFrom.toISOString(), "2020-01-01T00:00:00.000Z");
});

Deno.test("listenTls() refuses a CA-signed certificate its reader cannot read, never matching a fallback name", async () => {
  // The runtime's X509Certificate.subject does not escape: this O reads as
  // "O=x\nCN=client" there, so a fallback to it found CN "client". The SAN
  // trips connauth's reader (an otherName with a high-tag-number value).
  const bypass = await build({
    name: "bob posing as client",
    subject: name(
      rdn(attribute(OID.o, asn1.utf8String("x\nCN=client"))),
      rdn(attribute(OID.cn, asn1.utf8String("bob"))),
    ),
    extensions: [
      basicConstraints,
      keyUsage,
      clientAuth,
      san(asn1.tlv(
        0xa0,
        asn1.oid(OID.upn),
        asn1.explicit(0, asn1.tlv(HIGH_TAG, utf8("x"))),
      )),
    ],
    expect: "unreadable-certificate",
  }, "ca");
  await using server = await echoServer({ allow: { cn: ["client"] } });
  for (const write of [false, true]) {
    const decision = await present(
      server.port,
      server.decisions,
      bypass,
      write,
    );
    assert.equal(decision.refused?.reason, "unreadable-certificate");
    assert.equal(decision.refused?.identity, null);
    assert.match(
      decision.refused!.message,
      /^Cannot accept the TLS connection: the certificate of a client \(SHA-256 [0-9A-F:]{95}\) verified against `clientCa` but was refused: connauth cannot read it \(Cannot read the certificate: .*\); issue the client a well-formed certificate$/,
    );
  }
  // The same name, readable, is still bob and not allowed.
  const readable = await build({
    name: "bob, readable",
    subject: name(
      rdn(attribute(OID.o, asn1.utf8String("x\nCN=client"))),
      rdn(attribute(OID.cn, asn1.utf8String("bob"))),
    ),
    expect: "not-allowed",
  }, "ca");
  const decision = await present(
    server.port,
    server.decisions,
    readable,
    true,
  );
  assert.equal(decision.refused?.reason, "not-allowed");
  assert.equal(decision.refused?.identity?.cn, "bob");
  assert.equal(
    decision.refused?.identity?.subject,
    "O = x\\0ACN=client, CN = bob",
  );
});

Deno.test("readCertificate() refuses every corpus certificate it cannot read unambiguously", async () => {
  // What the runtime happens to refuse first is refused by the reader too,
  // should a runtime ever let it through.
  const alsoRefused = [
    "a subject with a non-minimal (BER) length",
    "a validity in month 13",
    "a validity in local time (no Z)",
    "a validity with a UTC offset",
    "two subjectAltName extensions",
    "an extendedKeyUsage that is not a SEQUENCE",
    "an empty extendedKeyUsage",
  ];
  for (const entry of corpus) {
    const der = await build(entry, "ca");
    if (
      entry.expect === "unreadable-certificate" ||
      alsoRefused.includes(entry.name)
    ) {
      assert.throws(
        () => readCertificate(der),
        (error: unknown) =>
          error instanceof TypeError &&
          /^Cannot read the certificate: /.test(error.message),
        entry.name,
      );
    } else {
      assert.doesNotThrow(() => readCertificate(der), entry.name);
    }
  }
});

Deno.test("listenTls() with requireClientCert false refuses a certificate the runtime cannot parse", async () => {
  // Deno 2.9.6 reports such a certificate as no certificate at all; it must
  // not pass as an anonymous client.
  await using server = await echoServer({ requireClientCert: false });
  const month13 = corpus.find((entry) =>
    entry.name === "a validity in month 13"
  )!;
  for (const signer of ["ca", "self"] as const) {
    const decision = await present(
      server.port,
      server.decisions,
      await build(month13, signer),
      true,
    );
    assert.equal(decision.refused?.reason, "handshake");
    assert.match(decision.refused!.message, /the runtime cannot parse it/);
  }
  // A client without a certificate is still accepted, as documented.
  using conn = await Deno.connectTls({
    hostname: "localhost",
    port: server.port,
    caCerts: [set.ca.cert],
  });
  await writeAll(conn, utf8("anon"));
  const echo = await readExact(conn, 4, undefined, "echo");
  assert.equal(new TextDecoder().decode(echo), "anon");
});

Deno.test("serveHttps() with clientCa survives the malformed-certificate corpus", async () => {
  const errors: { error: unknown; info: HttpsErrorInfo }[] = [];
  await using https = await serveHttps({
    cert: set.server.cert,
    key: set.server.key,
    clientCa: set.ca.cert,
    onError: (error, info) => errors.push({ error, info }),
  }, (_request, info) => new Response(`hello ${info.peerIdentity?.cn}`));
  const request = utf8(
    "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
  );
  // What rustls will send (serveHttps runs on listenTls, whose test above
  // also covers the rest with openssl).
  const sendable = corpus.filter((entry) => entry.sender === undefined);
  for (const entry of sendable) {
    for (const signer of ["ca", "self"] as const) {
      const conn = await Deno.connectTls({
        hostname: "localhost",
        port: https.addr.port,
        caCerts: [set.ca.cert],
        cert: pemEncode("CERTIFICATE", await build(entry, signer)),
        key: clientKey,
      });
      try {
        await conn.handshake().catch(() => {});
        await conn.write(request).catch(() => {});
        const { text, closed } = await readToEnd(conn);
        const label = `${entry.name} (${signer})`;
        assert.ok(closed, `${label}: the server left the connection open`);
        const served = text.startsWith("HTTP/1.1 200");
        assert.equal(
          served,
          signer === "ca" && entry.expect === "accepted",
          `${label}: ${text.slice(0, 40) || "closed"}`,
        );
      } finally {
        conn.close();
      }
    }
  }
  // Every refusal was reported, with the peer's address.
  await waitFor("the refusals to be reported", () =>
    errors.length >=
        sendable.filter((entry) => entry.expect !== "accepted").length +
          sendable.length
      ? true
      : undefined);
  for (const { info } of errors) {
    assert.equal(info.phase, "tls");
    assert.equal((info.remoteAddr as Deno.NetAddr)?.hostname, "127.0.0.1");
  }
  const response = await (async () => {
    using client = Deno.createHttpClient({
      caCerts: [set.ca.cert],
      cert: alice.cert,
      key: alice.key,
    });
    const answer = await fetch(`https://localhost:${https.addr.port}/`, {
      client,
    });
    return await answer.text();
  })();
  assert.equal(response, "hello alice");
});

Deno.test("listenTls() closes at once a client that closes before its ClientHello", async () => {
  await using server = await echoServer({ handshakeTimeout: 10_000 });
  for (const half of [true, false]) {
    const since = decided;
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    const clientPort = conn.localAddr.port;
    const started = Date.now();
    if (half) {
      // Half-close: the server must answer with its own close at once.
      await conn.closeWrite();
      assert.ok(await serverClosed(conn, 3000), "no close within 3 s");
      conn.close();
    } else {
      conn.close();
    }
    const decision = await waitFor(
      `a report for port ${clientPort}`,
      () => decisionSince(server.decisions, clientPort, since),
      3000,
    );
    assert.ok(Date.now() - started < 3000);
    assert.equal(decision.refused?.reason, "handshake");
    assert.equal(
      decision.refused?.message,
      "Cannot accept the TLS connection: the client closed the connection before completing the TLS handshake",
    );
  }
  await waitFor(
    "no server socket in CLOSE-WAIT",
    () => openServerSockets(server.port) === 0 ? true : undefined,
    3000,
  );
  await goodClient(server.port);
});

Deno.test("listenTls() names the peer's address when a handshake fails", async () => {
  const logged: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => logged.push(args);
  let clientPort = 0;
  try {
    await using listener = await listenTls({
      cert: set.server.cert,
      key: set.server.key,
    });
    {
      using raw = await Deno.connect({
        hostname: "127.0.0.1",
        port: listener.addr.port,
      });
      clientPort = raw.localAddr.port;
      await raw.write(utf8("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      await raw.read(new Uint8Array(64)).catch(() => null);
    }
    await waitFor("a log line", () => logged.length > 0 ? true : undefined);
  } finally {
    console.error = original;
  }
  assert.equal(logged.length, 1);
  assert.match(
    String(logged[0][0]),
    new RegExp(
      `^connauth tls: refused 127\\.0\\.0\\.1:${clientPort} \\(handshake\\): Cannot accept the TLS connection: the TLS handshake failed: `,
    ),
  );
});

Deno.test("examples/tls_echo_server.ts --mutual survives a certificate with a valueless subject attribute", async () => {
  const dir = await Deno.makeTempDir({ prefix: "connauth-hostile-" });
  try {
    await writeCertificates(dir, set);
    await using server = await startExample([
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      "--allow-env=CONNAUTH_SECRET",
      new URL("../../examples/tls_echo_server.ts", import.meta.url).pathname,
      "--port",
      "0",
      "--certs",
      dir,
      "--mutual",
    ]);
    const port = server.port;
    for (const write of [false, true]) {
      using conn = await Deno.connectTls({
        hostname: "localhost",
        port,
        caCerts: [set.ca.cert],
        cert: pemEncode("CERTIFICATE", await build(corpus[0], "self")),
        key: clientKey,
      });
      await conn.handshake().catch(() => {});
      if (write) await conn.write(utf8("ping")).catch(() => {});
      assert.ok(await serverClosed(conn), "the refused socket stayed open");
    }
    await goodClient(port);
    assert.match(
      server.log.join("\n"),
      /refused 127\.0\.0\.1:\d+ \(unknown-ca\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// Silent sockets in their TLS handshake, from many addresses
// (tests/interop/silent_flood.py binds each to its own 127.0.1.x source,
// sends nothing, and re-opens a socket as soon as the server closes it).

/** How long a good client may wait for its echo (the flood's is 20 s). */
const SERVED_WITHIN = 3000;
const python = { label: "python3", path: findPython("3") };

interface FloodReport {
  ready?: boolean;
  done?: boolean;
  held: number;
  opened: number;
  closed: number;
}

/**
 * Holds `addresses` x `perAddress` silent sockets against `port` (for at
 * most 60 s) while `body` runs; returns silent_flood.py's last report.
 */
async function silentFlood(
  pythonPath: string,
  port: number,
  addresses: number,
  perAddress: number,
  body: () => Promise<void>,
): Promise<FloodReport> {
  const child = new Deno.Command(pythonPath, {
    args: [
      interopScript("silent_flood.py"),
      "127.0.0.1",
      String(port),
      String(addresses),
      String(perAddress),
      "60",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(90_000),
  }).spawn();
  const stdout = lines(child.stdout);
  const stderr = new Response(child.stderr).text();
  let last: FloodReport | undefined;
  try {
    const first = await stdout.next();
    if (first.done) throw new Error(`the flood did not start: ${await stderr}`);
    assert.equal((JSON.parse(first.value) as FloodReport).ready, true);
    await body();
  } finally {
    await child.stdin.close().catch(() => {});
    for await (const line of stdout) last = JSON.parse(line);
    await child.status;
  }
  if (!last?.done) throw new Error(`the flood did not finish: ${await stderr}`);
  return last;
}

/**
 * Samples the sockets the server accepted on `port` every 100 ms until
 * stopped; returns the most seen.
 */
function socketSampler(port: number) {
  let running = true;
  let max = openServerSockets(port, true);
  const done = (async () => {
    while (running) {
      max = Math.max(max, openServerSockets(port, true));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return async (): Promise<number> => {
    running = false;
    await done;
    return max;
  };
}

peerTest(
  `listenTls() with maxHandshakes 64 serves a good client within ${SERVED_WITHIN} ms, 10 times over, while 8 addresses x 32 silent sockets are held and re-opened`,
  python,
  async (pythonPath) => {
    await using server = await echoServer({
      maxHandshakes: 64,
      handshakeTimeout: 20_000,
    });
    // Connections past their handshake are never evicted: four held
    // through the flood must still echo after it.
    const held = await Promise.all(
      Array.from({ length: 4 }, () =>
        Deno.connectTls({
          hostname: "localhost",
          port: server.port,
          caCerts: [set.ca.cert],
          cert: alice.cert,
          key: alice.key,
        })),
    );
    let most = 0;
    const latencies: number[] = [];
    try {
      const report = await silentFlood(
        pythonPath,
        server.port,
        8,
        32,
        async () => {
          const stop = socketSampler(server.port);
          try {
            for (let i = 0; i < 10; i++) {
              const start = performance.now();
              await within(
                goodClient(server.port),
                SERVED_WITHIN,
                "a good client",
              );
              latencies.push(performance.now() - start);
            }
          } finally {
            most = await stop();
          }
          for (const conn of held) {
            await writeAll(conn, utf8("held"));
            const echo = await readExact(conn, 4, undefined, "echo");
            assert.equal(new TextDecoder().decode(echo), "held");
          }
        },
      );
      // The flood was really there, and the listener closed its sockets.
      assert.ok(
        report.opened > 256 && report.closed > 0,
        JSON.stringify(report),
      );
    } finally {
      for (const conn of held) conn.close();
    }
    assert.equal(latencies.length, 10, `latencies ${latencies}`);
    const evicted = server.errors.filter((event) => event.reason === "evicted");
    assert.ok(evicted.length > 0, "nothing was evicted: nothing was tested");
    // Evicted, or closed by the flood itself as it stopped: the flood's
    // sockets only.
    for (const event of server.errors) {
      assert.ok(
        event.reason === "evicted" || event.reason === "handshake",
        event.message,
      );
      assert.match(
        event.remoteAddr?.hostname ?? "",
        /^127\.0\.1\.\d+$/,
        "a good client was closed",
      );
    }
    // 256 silent sockets against a budget of 64: the listener held 64 of
    // them at a time, besides the 4 held connections, a good client and
    // sockets it is closing.
    assert.ok(most >= 64 && most <= 64 + 4 + 8, `${most} sockets accepted`);
  },
);

Deno.test("listenTls() keeps nothing of a client that closed before its handshake", async () => {
  // Deno 2.9.6's node:tls keeps such a socket (about 5.5 KiB of heap) until
  // its handshake timer fires, 10 s later by default: a connect-and-close
  // flood of R a second then held R x 10 x 5.5 KiB. listenTls() keeps the
  // deadlines itself; the 2,000 sockets here must be gone at once.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--v8-flags=--expose-gc",
      "--allow-net=127.0.0.1",
      new URL("./_tls_churn.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, stderr);
  const { reports, growth } = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.equal(reports, 2000, stderr);
  // 2,000 kept sockets would be about 11 MB.
  assert.ok(growth < 3_000_000, `the heap grew by ${growth} bytes`);
});
