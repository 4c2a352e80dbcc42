import assert from "node:assert/strict";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import {
  type CertificateAndKey,
  type CertificateSet,
  createCertificateAuthority,
  fingerprintCertificate,
  generateCertificates,
  issueCertificate,
  listCertificateFiles,
  writeCertificates,
} from "../mod.ts";
import * as asn1 from "../_asn1.ts";
import { closeQuietly } from "../_conn_io.ts";
import {
  findPython,
  findTool,
  interopScript,
  lines,
  peerTest,
  spawn,
} from "./_helpers.ts";

const OPENSSL = { label: "openssl", path: findTool("openssl") };
const PYTHONS = ["3.11", "3.12"].map((version) => ({
  label: `python${version}`,
  path: findPython(version),
}));
const DAY_MS = 86_400_000;
const ROOT = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

// One set shared by the read-only tests: key generation is cheap, but
// openssl runs are not, so each test reads the same files.
let shared: Promise<CertificateSet> | undefined;
function sharedSet(): Promise<CertificateSet> {
  shared ??= generateCertificates({
    serverNames: ["app.test", "10.1.2.3", "fd00::5"],
    clients: ["alice", "bob"],
  });
  return shared;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "connauth_certs_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(
  command: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(command, {
    args,
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function opensslText(openssl: string, path: string): Promise<string> {
  const result = await run(openssl, ["x509", "-text", "-noout", "-in", path]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

/** The lines that follow an extension's heading in `openssl x509 -text`. */
function extensionValue(text: string, heading: string): string {
  const lines = text.split("\n");
  const index = lines.findIndex((line) => line.includes(heading));
  assert.notEqual(index, -1, `missing ${heading} in:\n${text}`);
  return `${lines[index].trim()} | ${lines[index + 1].trim()}`;
}

async function writePem(dir: string, name: string, text: string) {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, text);
  return path;
}

/** Accepts TLS connections on 127.0.0.1 and echoes each until EOF. */
function denoEchoServer(
  cert: CertificateAndKey,
): { port: number; errors: unknown[]; close(): Promise<void> } {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: cert.cert,
    key: cert.key,
  });
  const errors: unknown[] = [];
  const tasks: Promise<void>[] = [];
  const loop = (async () => {
    for await (const conn of listener) {
      tasks.push((async () => {
        try {
          const buffer = new Uint8Array(4096);
          for (let i = 0; i < 1000; i++) {
            const n = await conn.read(buffer);
            if (n === null) break;
            await conn.write(buffer.subarray(0, n));
          }
        } catch (error) {
          errors.push(error);
        } finally {
          closeQuietly(conn);
        }
      })());
    }
  })();
  return {
    port: listener.addr.port,
    errors,
    async close() {
      listener.close();
      await loop.catch(() => {});
      await Promise.all(tasks);
    },
  };
}

async function denoEcho(
  port: number,
  options: { hostname?: string; caCerts: string[]; client?: CertificateAndKey },
): Promise<string> {
  const conn = await Deno.connectTls({
    hostname: options.hostname ?? "localhost",
    port,
    caCerts: options.caCerts,
    ...(options.client
      ? { cert: options.client.cert, key: options.client.key }
      : {}),
  });
  try {
    await conn.write(encoder.encode("ping\n"));
    const buffer = new Uint8Array(64);
    let text = "";
    for (let i = 0; i < 10 && !text.endsWith("\n"); i++) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n));
    }
    return text;
  } finally {
    conn.close();
  }
}

function expired(): { notBefore: Date; notAfter: Date } {
  return {
    notBefore: new Date(Date.now() - 2 * DAY_MS),
    notAfter: new Date(Date.now() - DAY_MS),
  };
}

// ---------------------------------------------------------------------------
// the DER writer

Deno.test("asn1 writes DER lengths, integers, OIDs and named bits", () => {
  const hex = (bytes: Uint8Array) =>
    [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(hex(asn1.tlv(0x04, new Uint8Array(127))).slice(0, 4), "047f");
  assert.equal(hex(asn1.tlv(0x04, new Uint8Array(128))).slice(0, 6), "048180");
  assert.equal(
    hex(asn1.tlv(0x04, new Uint8Array(300))).slice(0, 8),
    "0482012c",
  );
  assert.equal(hex(asn1.unsignedInteger(Uint8Array.of(0x80))), "02020080");
  assert.equal(hex(asn1.unsignedInteger(Uint8Array.of(0, 0, 0x7f))), "02017f");
  assert.equal(hex(asn1.unsignedInteger(Uint8Array.of(0, 0))), "020100");
  assert.equal(hex(asn1.smallInteger(2)), "020102");
  assert.equal(hex(asn1.oid("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
  assert.equal(hex(asn1.oid("2.5.29.17")), "0603551d11");
  assert.equal(hex(asn1.namedBits([0])), "03020780");
  assert.equal(hex(asn1.namedBits([5, 6])), "03020106");
  assert.equal(hex(asn1.boolean(true)), "0101ff");
  // SET OF is sorted by encoding
  assert.equal(
    hex(
      asn1.set(
        Uint8Array.of(0x02, 0x01, 0x05),
        Uint8Array.of(0x02, 0x01, 0x01),
      ),
    ),
    "3106020101020105",
  );
});

Deno.test("asn1 writes UTCTime through 2049 and GeneralizedTime after", () => {
  const text = (bytes: Uint8Array) => decoder.decode(bytes.subarray(2));
  const utc = asn1.time(new Date("2049-12-31T23:59:59.900Z"));
  assert.equal(utc[0], asn1.TAG.UTC_TIME);
  assert.equal(text(utc), "491231235959Z");
  const generalized = asn1.time(new Date("2050-01-01T00:00:00Z"));
  assert.equal(generalized[0], asn1.TAG.GENERALIZED_TIME);
  assert.equal(text(generalized), "20500101000000Z");
});

Deno.test("asn1 reader walks what the writer wrote and rejects truncation", () => {
  const der = asn1.sequence(
    asn1.oid("2.5.4.3"),
    asn1.utf8String("x".repeat(200)),
  );
  const root = asn1.readNode(der, 0);
  const [id, value] = asn1.children(der, root);
  assert.equal(asn1.decodeOid(asn1.contents(der, id)), "2.5.4.3");
  assert.equal(decoder.decode(asn1.contents(der, value)), "x".repeat(200));
  assert.throws(() => asn1.readNode(der.subarray(0, der.length - 1), 0), {
    name: "TypeError",
    message: /truncated/,
  });
});

// ---------------------------------------------------------------------------
// what the certificates say (no peer needed)

Deno.test("generateCertificates() returns a CA, a server and named clients", async () => {
  const set = await sharedSet();
  assert.match(set.ca.commonName, /^connauth development CA [0-9A-F]{8}$/);
  assert.equal(set.server.commonName, "localhost");
  assert.deepEqual(set.server.subjectAltNames, [
    "DNS:localhost",
    "IP Address:127.0.0.1",
    "IP Address:0:0:0:0:0:0:0:1",
    "DNS:app.test",
    "IP Address:10.1.2.3",
    "IP Address:FD00:0:0:0:0:0:0:5",
  ]);
  assert.deepEqual(Object.keys(set.clients), ["alice", "bob"]);
  assert.equal(set.clients.alice.commonName, "alice");
  assert.deepEqual(set.clients.alice.subjectAltNames, []);
  for (const cert of [set.ca, set.server, set.clients.alice]) {
    assert.match(
      cert.cert,
      /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n$/,
    );
    assert.match(
      cert.key,
      /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/,
    );
    assert.equal(cert.fingerprint, await fingerprintCertificate(cert.cert));
    assert.match(cert.serialNumber, /^[0-7][0-9A-F]{31}$/);
    assert.ok(cert.notBefore.getTime() <= Date.now());
    const days = (cert.notAfter.getTime() - Date.now()) / DAY_MS;
    assert.ok(days > 364.9 && days <= 365, `validity ${days} days`);
  }
  const serials = new Set(
    [set.ca, set.server, set.clients.alice, set.clients.bob].map((c) =>
      c.serialNumber
    ),
  );
  assert.equal(serials.size, 4);
  // Two sets never share a CA name or key
  const other = await generateCertificates({ clients: [] });
  assert.notEqual(other.ca.commonName, set.ca.commonName);
  assert.deepEqual(other.clients, {});
});

Deno.test("generateCertificates() keeps the CA valid around explicit leaf dates", async () => {
  const { notBefore, notAfter } = expired();
  const set = await generateCertificates({ notBefore, notAfter, clients: [] });
  assert.equal(
    set.server.notAfter.getTime(),
    Math.floor(notAfter.getTime() / 1000) * 1000,
  );
  assert.ok(set.ca.notBefore <= set.server.notBefore);
  assert.ok(set.ca.notAfter.getTime() > Date.now() + 364 * DAY_MS);
  const far = new Date("2060-06-01T00:00:00Z");
  const long = await generateCertificates({ notAfter: far, clients: [] });
  assert.equal(long.server.notAfter.toISOString(), far.toISOString());
  assert.equal(long.ca.notAfter.toISOString(), far.toISOString());
});

Deno.test("issueCertificate() and friends reject bad arguments with the fix", async () => {
  const { ca, server } = await sharedSet();
  await assert.rejects(
    issueCertificate(ca, { usage: "client" }),
    { name: "TypeError", message: /commonName is required/ },
  );
  await assert.rejects(
    issueCertificate(ca, { usage: "peer" as "client", commonName: "x" }),
    { name: "TypeError", message: /usage must be "server" or "client"/ },
  );
  await assert.rejects(
    issueCertificate(ca, { names: ["bad name"] }),
    { name: "TypeError", message: /Cannot use name "bad name"/ },
  );
  await assert.rejects(
    issueCertificate(ca, { names: ["10.0.0.256"] }),
    { name: "TypeError", message: /looks like an IP address/ },
  );
  await assert.rejects(
    issueCertificate(ca, { names: ["fd00::5::1"] }),
    { name: "TypeError" },
  );
  await assert.rejects(issueCertificate(ca, { days: 0 }), {
    name: "RangeError",
    message: /Cannot use days/,
  });
  await assert.rejects(issueCertificate(ca, { days: Number.NaN }), {
    name: "TypeError",
  });
  await assert.rejects(
    issueCertificate(ca, {
      notBefore: new Date(),
      notAfter: new Date(Date.now() - 1000),
    }),
    { name: "RangeError", message: /notAfter .* must be after notBefore/ },
  );
  await assert.rejects(
    issueCertificate(ca, { notAfter: new Date("nonsense") }),
    { name: "TypeError", message: /Cannot use notAfter/ },
  );
  await assert.rejects(
    issueCertificate(ca, { commonName: "" }),
    { name: "TypeError", message: /1 to 64 characters/ },
  );
  await assert.rejects(
    generateCertificates({ clients: ["a", "a"] }),
    { name: "TypeError", message: /unique/ },
  );
  // the CA must be a CA, with its own key, as PKCS#8 PEM
  await assert.rejects(issueCertificate(server, {}), {
    name: "TypeError",
    message: /not a CA/,
  });
  await assert.rejects(
    issueCertificate({ cert: ca.cert, key: server.key }, {}),
    { name: "TypeError", message: /does not match the CA certificate/ },
  );
  await assert.rejects(
    issueCertificate({ cert: "garbage", key: ca.key }, {}),
    { name: "TypeError", message: /BEGIN CERTIFICATE/ },
  );
  await assert.rejects(
    issueCertificate({
      cert: ca.cert,
      key: ca.key.replaceAll("PRIVATE KEY", "EC PRIVATE KEY"),
    }, {}),
    { name: "TypeError", message: /BEGIN PRIVATE KEY/ },
  );
  const truncated = ca.cert.replace(
    /\n[A-Za-z0-9+/=]+\n-----END/,
    "\n-----END",
  );
  await assert.rejects(issueCertificate({ cert: truncated, key: ca.key }, {}), {
    name: "TypeError",
  });
});

Deno.test("issueCertificate() works from a CA read back from PEM files", async () => {
  const { ca } = await sharedSet();
  const fromFiles = { cert: String(ca.cert), key: String(ca.key) };
  const leaf = await issueCertificate(fromFiles, {
    usage: "client",
    commonName: "carol",
    names: ["carol.test"],
  });
  assert.equal(leaf.commonName, "carol");
  assert.deepEqual(leaf.subjectAltNames, ["DNS:carol.test"]);
  const server = await issueCertificate(fromFiles, {
    includeLocalhost: false,
    names: ["[::1]", "Example.TEST", "::1"],
  });
  assert.deepEqual(server.subjectAltNames, [
    "IP Address:0:0:0:0:0:0:0:1",
    "DNS:example.test",
  ]);
});

Deno.test("listCertificateFiles() names the first client client.pem and the rest by name", async () => {
  const set = await sharedSet();
  assert.deepEqual(listCertificateFiles(set).map((file) => file.name), [
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
    "client-bob.pem",
    "client-bob-key.pem",
  ]);
  const clash = await generateCertificates({ clients: ["x", "A B", "a-b"] });
  assert.throws(() => listCertificateFiles(clash), {
    name: "TypeError",
    message: /client "a-b" maps to "client-a-b.pem"/,
  });
});

Deno.test("writeCertificates() writes keys 0600, refuses to overwrite, and force replaces", async () => {
  const set = await sharedSet();
  await withTempDir(async (dir) => {
    const out = `${dir}/nested/certs`;
    const written = await writeCertificates(out, set);
    assert.equal(written.length, 8);
    for (const file of written) {
      const info = await Deno.stat(file.path);
      assert.equal(
        info.mode! & 0o777,
        file.kind === "private key" ? 0o600 : 0o644,
        file.path,
      );
      assert.equal(file.mode, info.mode! & 0o777);
    }
    assert.equal((await Deno.stat(out)).mode! & 0o777, 0o700);
    assert.equal(
      await Deno.readTextFile(`${out}/server-key.pem`),
      set.server.key,
    );
    // one existing file blocks the whole write, and nothing is touched
    await Deno.remove(`${out}/client-bob.pem`);
    await Deno.writeTextFile(`${out}/ca.pem`, "mine");
    await assert.rejects(writeCertificates(out, set), (error: unknown) => {
      assert.ok(error instanceof Deno.errors.AlreadyExists);
      assert.match(
        error.message,
        /"[^"]*ca\.pem" already exists; pass force: true \(--force\)/,
      );
      return true;
    });
    assert.equal(await Deno.readTextFile(`${out}/ca.pem`), "mine");
    await assert.rejects(
      Deno.stat(`${out}/client-bob.pem`),
      Deno.errors.NotFound,
    );
    // force replaces, and a loosened key file comes back 0600
    await Deno.chmod(`${out}/ca-key.pem`, 0o666);
    const fresh = await generateCertificates({ clients: ["alice", "bob"] });
    await writeCertificates(out, fresh, { force: true });
    assert.equal(await Deno.readTextFile(`${out}/ca.pem`), fresh.ca.cert);
    assert.equal((await Deno.stat(`${out}/ca-key.pem`)).mode! & 0o777, 0o600);
    assert.equal(
      await Deno.readTextFile(`${out}/client-bob.pem`),
      fresh.clients.bob.cert,
    );
  });
});

// ---------------------------------------------------------------------------
// openssl reads and verifies them

peerTest(
  "generateCertificates() output reads as X.509 v3 with the right extensions in openssl",
  OPENSSL,
  async (openssl) => {
    const set = await sharedSet();
    await withTempDir(async (dir) => {
      await writeCertificates(dir, set);
      const ca = await opensslText(openssl, `${dir}/ca.pem`);
      assert.match(ca, /Version: 3 \(0x2\)/);
      assert.match(ca, /Signature Algorithm: ecdsa-with-SHA256/);
      assert.match(ca, /NIST CURVE: P-256/);
      assert.ok(ca.includes(`Subject: CN = ${set.ca.commonName}\n`));
      assert.ok(ca.includes(`Issuer: CN = ${set.ca.commonName}\n`));
      assert.equal(
        extensionValue(ca, "X509v3 Basic Constraints"),
        "X509v3 Basic Constraints: critical | CA:TRUE, pathlen:0",
      );
      assert.equal(
        extensionValue(ca, "X509v3 Key Usage"),
        "X509v3 Key Usage: critical | Certificate Sign, CRL Sign",
      );
      const caKeyId =
        extensionValue(ca, "X509v3 Subject Key Identifier").split(" | ")[1];
      assert.match(caKeyId, /^([0-9A-F]{2}:){19}[0-9A-F]{2}$/);

      const server = await opensslText(openssl, `${dir}/server.pem`);
      assert.match(server, /Version: 3 \(0x2\)/);
      assert.ok(server.includes("Subject: CN = localhost\n"));
      assert.ok(server.includes(`Issuer: CN = ${set.ca.commonName}\n`));
      assert.equal(
        extensionValue(server, "X509v3 Subject Alternative Name"),
        "X509v3 Subject Alternative Name: | DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:app.test, IP Address:10.1.2.3, IP Address:FD00:0:0:0:0:0:0:5",
      );
      // subjectAltNames is what openssl prints, entry for entry.
      assert.equal(
        extensionValue(server, "X509v3 Subject Alternative Name"),
        `X509v3 Subject Alternative Name: | ${
          set.server.subjectAltNames.join(", ")
        }`,
      );
      assert.equal(
        extensionValue(server, "X509v3 Extended Key Usage"),
        "X509v3 Extended Key Usage: | TLS Web Server Authentication",
      );
      assert.equal(
        extensionValue(server, "X509v3 Key Usage"),
        "X509v3 Key Usage: critical | Digital Signature",
      );
      assert.equal(
        extensionValue(server, "X509v3 Basic Constraints"),
        "X509v3 Basic Constraints: critical | CA:FALSE",
      );
      assert.equal(
        extensionValue(server, "X509v3 Authority Key Identifier").split(
          " | ",
        )[1]
          .replace(/^keyid:/, ""),
        caKeyId,
      );

      const client = await opensslText(openssl, `${dir}/client.pem`);
      assert.ok(client.includes("Subject: CN = alice\n"));
      assert.equal(
        extensionValue(client, "X509v3 Extended Key Usage"),
        "X509v3 Extended Key Usage: | TLS Web Client Authentication",
      );
      assert.ok(!client.includes("Subject Alternative Name"));

      // fingerprint, serial and dates as openssl reports them
      for (
        const [file, cert] of [["server.pem", set.server], [
          "client-bob.pem",
          set.clients.bob,
        ]] as const
      ) {
        const facts = await run(openssl, [
          "x509",
          "-noout",
          "-fingerprint",
          "-sha256",
          "-serial",
          "-enddate",
          "-in",
          `${dir}/${file}`,
        ]);
        assert.ok(
          facts.stdout.includes(`sha256 Fingerprint=${cert.fingerprint}`),
          facts.stdout,
        );
        assert.ok(
          facts.stdout.includes(`serial=${cert.serialNumber}`),
          facts.stdout,
        );
        const enddate = /notAfter=(.*)/.exec(facts.stdout)![1];
        assert.equal(new Date(enddate).getTime(), cert.notAfter.getTime());
      }
    });
  },
);

peerTest(
  "generateCertificates() private keys are PKCS#8 and match their certificates",
  OPENSSL,
  async (openssl) => {
    const set = await sharedSet();
    await withTempDir(async (dir) => {
      await writeCertificates(dir, set);
      for (const base of ["ca", "server", "client", "client-bob"]) {
        const fromKey = await run(openssl, [
          "pkey",
          "-pubout",
          "-in",
          `${dir}/${base}-key.pem`,
        ]);
        assert.equal(fromKey.code, 0, fromKey.stderr);
        const fromCert = await run(openssl, [
          "x509",
          "-pubkey",
          "-noout",
          "-in",
          `${dir}/${base}.pem`,
        ]);
        assert.equal(fromKey.stdout, fromCert.stdout, base);
        const text = await run(openssl, [
          "pkey",
          "-text",
          "-noout",
          "-in",
          `${dir}/${base}-key.pem`,
        ]);
        assert.match(text.stdout, /NIST CURVE: P-256/);
      }
    });
  },
);

peerTest(
  "openssl verify accepts our chain for its purpose and refuses another CA",
  OPENSSL,
  async (openssl) => {
    const set = await sharedSet();
    const other = await generateCertificates({ clients: ["mallory"] });
    const old = await issueCertificate(set.ca, expired());
    // 16 leaves: each signature's r and s need a leading zero about half the
    // time, so both DER integer branches are exercised
    const many = await Promise.all(
      Array.from(
        { length: 16 },
        (_, i) =>
          issueCertificate(set.ca, { usage: "client", commonName: `c${i}` }),
      ),
    );
    await withTempDir(async (dir) => {
      await writeCertificates(dir, set);
      const ok = await run(openssl, [
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        `${dir}/ca.pem`,
        `${dir}/server.pem`,
      ]);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, /server\.pem: OK/);
      const manyPaths = await Promise.all(
        many.map((cert, i) => writePem(dir, `many${i}.pem`, cert.cert)),
      );
      const clients = await run(openssl, [
        "verify",
        "-x509_strict",
        "-purpose",
        "sslclient",
        "-CAfile",
        `${dir}/ca.pem`,
        `${dir}/client.pem`,
        `${dir}/client-bob.pem`,
        ...manyPaths,
      ]);
      assert.equal(clients.code, 0, clients.stdout + clients.stderr);
      assert.equal(clients.stdout.match(/: OK/g)?.length, 18);
      // a client certificate is not a server certificate
      const purpose = await run(openssl, [
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        `${dir}/ca.pem`,
        `${dir}/client.pem`,
      ]);
      assert.notEqual(purpose.code, 0);
      assert.match(
        purpose.stdout + purpose.stderr,
        /unsuitable certificate purpose/,
      );
      // a certificate from another CA
      const foreign = await writePem(
        dir,
        "foreign.pem",
        other.clients.mallory.cert,
      );
      const refused = await run(openssl, [
        "verify",
        "-CAfile",
        `${dir}/ca.pem`,
        foreign,
      ]);
      assert.notEqual(refused.code, 0);
      assert.match(
        refused.stdout + refused.stderr,
        /unable to get local issuer certificate/,
      );
      // an expired one
      const expiredPath = await writePem(dir, "expired.pem", old.cert);
      const stale = await run(openssl, [
        "verify",
        "-CAfile",
        `${dir}/ca.pem`,
        expiredPath,
      ]);
      assert.notEqual(stale.code, 0);
      assert.match(stale.stdout + stale.stderr, /certificate has expired/);
    });
  },
);

peerTest(
  "issueCertificate() signs with a CA made by openssl req -x509",
  OPENSSL,
  async (openssl) => {
    await withTempDir(async (dir) => {
      const made = await run(openssl, [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        `${dir}/ca-key.pem`,
        "-out",
        `${dir}/ca.pem`,
        "-subj",
        "/CN=openssl CA",
        "-days",
        "2",
      ]);
      assert.equal(made.code, 0, made.stderr);
      const ca = {
        cert: await Deno.readTextFile(`${dir}/ca.pem`),
        key: await Deno.readTextFile(`${dir}/ca-key.pem`),
      };
      const leaf = await issueCertificate(ca, { names: ["*.app.test"] });
      assert.deepEqual(leaf.subjectAltNames.at(-1), "DNS:*.app.test");
      const path = await writePem(dir, "leaf.pem", leaf.cert);
      const verified = await run(openssl, [
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        `${dir}/ca.pem`,
        path,
      ]);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      // the authority key identifier is openssl's own subject key identifier
      const caText = await opensslText(openssl, `${dir}/ca.pem`);
      const leafText = await opensslText(openssl, path);
      assert.equal(
        extensionValue(leafText, "X509v3 Authority Key Identifier").split(
          " | ",
        )[1]
          .replace(/^keyid:/, ""),
        extensionValue(caText, "X509v3 Subject Key Identifier").split(" | ")[1],
      );
      // an RSA CA is refused with the reason
      const rsa = await run(openssl, [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        `${dir}/rsa-key.pem`,
        "-out",
        `${dir}/rsa.pem`,
        "-subj",
        "/CN=rsa CA",
        "-days",
        "2",
      ]);
      assert.equal(rsa.code, 0, rsa.stderr);
      await assert.rejects(
        issueCertificate({
          cert: await Deno.readTextFile(`${dir}/rsa.pem`),
          key: await Deno.readTextFile(`${dir}/rsa-key.pem`),
        }),
        { name: "TypeError", message: /not an ECDSA P-256 PKCS#8 key/ },
      );
    });
  },
);

peerTest(
  "issueCertificate() writes GeneralizedTime after 2049 that openssl reads",
  OPENSSL,
  async (openssl) => {
    const { ca } = await sharedSet();
    const notAfter = new Date("2060-01-02T03:04:05Z");
    const leaf = await issueCertificate(ca, { notAfter });
    await withTempDir(async (dir) => {
      const path = await writePem(dir, "late.pem", leaf.cert);
      const result = await run(openssl, [
        "x509",
        "-noout",
        "-enddate",
        "-in",
        path,
      ]);
      assert.equal(result.stdout.trim(), "notAfter=Jan  2 03:04:05 2060 GMT");
    });
  },
);

// ---------------------------------------------------------------------------
// the certificates in real TLS handshakes

Deno.test("generateCertificates() server certificate works with Deno.listenTls and Deno.connectTls", async () => {
  const { ca, server } = await sharedSet();
  const echo = denoEchoServer(server);
  try {
    assert.equal(await denoEcho(echo.port, { caCerts: [ca.cert] }), "ping\n");
    assert.equal(
      await denoEcho(echo.port, { hostname: "127.0.0.1", caCerts: [ca.cert] }),
      "ping\n",
    );
  } finally {
    await echo.close();
  }
});

Deno.test("Deno.connectTls() refuses our certificates when they should be refused", async () => {
  const { ca } = await sharedSet();
  const other = await createCertificateAuthority();
  const cases: [string, CertificateAndKey, RegExp, string?][] = [
    ["another CA", await issueCertificate(other), /UnknownIssuer/],
    ["expired", await issueCertificate(ca, expired()), /expired/],
    [
      "hostname mismatch",
      await issueCertificate(ca, {
        includeLocalhost: false,
        names: ["app.test"],
      }),
      /not valid for name "localhost"/,
    ],
    [
      "client certificate used by a server",
      await issueCertificate(ca, { usage: "client", commonName: "localhost" }),
      /extended key usage/,
    ],
    [
      "self-signed CA:TRUE certificate as a server",
      await createCertificateAuthority({ names: ["localhost"] }),
      /CaUsedAsEndEntity/,
      "self",
    ],
  ];
  for (const [label, cert, pattern, trust] of cases) {
    const echo = denoEchoServer(cert);
    try {
      await assert.rejects(
        denoEcho(echo.port, {
          caCerts: [trust === "self" ? cert.cert : ca.cert],
        }),
        (error: unknown) => {
          assert.ok(error instanceof Error);
          assert.match(error.message, pattern, label);
          return true;
        },
        label,
      );
    } finally {
      await echo.close();
    }
  }
});

Deno.test("generateCertificates() client certificate is verified by a node:tls server", async () => {
  const { ca, server, clients } = await sharedSet();
  const other = await generateCertificates({ clients: ["mallory"] });
  const seen: { cn: string; fingerprint: string; authorized: boolean }[] = [];
  const rejected: string[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const tlsServer = tls.createServer({
    key: server.key,
    cert: server.cert,
    ca: [ca.cert],
    requestCert: true,
    rejectUnauthorized: true,
  }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const peer = socket.getPeerCertificate();
    seen.push({
      cn: String(peer.subject.CN),
      fingerprint: peer.fingerprint256,
      authorized: socket.authorized,
    });
    socket.on("data", (data) => socket.write(data));
    socket.on("end", () => socket.end());
  });
  tlsServer.on("tlsClientError", (error) => rejected.push(String(error)));
  await new Promise<void>((resolve) =>
    tlsServer.listen(0, "127.0.0.1", resolve)
  );
  const port = (tlsServer.address() as AddressInfo).port;
  try {
    assert.equal(
      await denoEcho(port, { caCerts: [ca.cert], client: clients.alice }),
      "ping\n",
    );
    assert.deepEqual(seen, [{
      cn: "alice",
      fingerprint: clients.alice.fingerprint,
      authorized: true,
    }]);
    // a client certificate from another CA gets no echo
    await assert.rejects(
      denoEcho(port, { caCerts: [ca.cert], client: other.clients.mallory }),
    );
    assert.equal(seen.length, 1);
    // the server's error event may trail the client's failure: wait, bounded
    for (let i = 0; i < 100 && rejected.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(rejected.length, 1);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => tlsServer.close(resolve));
  }
});

Deno.test("generateCertificates() server certificate is verified by a node:tls client", async () => {
  const { ca, server } = await sharedSet();
  const echo = denoEchoServer(server);
  try {
    const socket = tls.connect({
      host: "127.0.0.1",
      port: echo.port,
      servername: "localhost",
      ca: [ca.cert],
    });
    const reply = await new Promise<string>((resolve, reject) => {
      let text = "";
      socket.on("secureConnect", () => socket.write("ping\n"));
      socket.on("data", (data) => {
        text += String(data);
        if (text.endsWith("\n")) resolve(text);
      });
      socket.on("error", reject);
    });
    assert.equal(reply, "ping\n");
    assert.equal(socket.authorized, true);
    assert.equal(
      socket.getPeerCertificate().fingerprint256,
      server.fingerprint,
    );
    await new Promise<void>((resolve) => {
      socket.on("close", () => resolve());
      socket.end();
    });
  } finally {
    await echo.close();
  }
});

for (const python of PYTHONS) {
  peerTest(
    `generateCertificates() server certificate is verified by a ${python.label} ssl client`,
    python,
    async (exe) => {
      const { ca, server } = await sharedSet();
      const other = await createCertificateAuthority();
      await withTempDir(async (dir) => {
        const caPath = await writePem(dir, "ca.pem", ca.cert);
        const otherPath = await writePem(dir, "other.pem", other.cert);
        const echo = denoEchoServer(server);
        try {
          for (const hostname of ["localhost", "127.0.0.1"]) {
            const ok = await run(exe, [
              interopScript("tls_peer.py"),
              "client",
              String(echo.port),
              hostname,
              caPath,
            ]);
            assert.equal(ok.code, 0, ok.stdout + ok.stderr);
            assert.equal(
              ok.stdout,
              "echo hello from python\npeer-cn localhost\n",
            );
          }
          const refused = await run(exe, [
            interopScript("tls_peer.py"),
            "client",
            String(echo.port),
            "localhost",
            otherPath,
          ]);
          assert.equal(refused.code, 1, refused.stdout + refused.stderr);
          assert.match(
            refused.stdout,
            /^error unable to get local issuer certificate/,
          );
          const mismatch = await run(exe, [
            interopScript("tls_peer.py"),
            "client",
            String(echo.port),
            "app.example",
            caPath,
          ]);
          assert.equal(mismatch.code, 1, mismatch.stdout + mismatch.stderr);
          assert.match(mismatch.stdout, /^error Hostname mismatch/);
        } finally {
          await echo.close();
        }
      });
    },
  );

  peerTest(
    `generateCertificates() client certificate is accepted by a ${python.label} ssl server`,
    python,
    async (exe) => {
      const { ca, server, clients } = await sharedSet();
      await withTempDir(async (dir) => {
        await writeCertificates(dir, { ca, server, clients });
        const child = spawn(exe, [
          interopScript("tls_peer.py"),
          "server",
          `${dir}/server.pem`,
          `${dir}/server-key.pem`,
          `${dir}/ca.pem`,
        ]);
        const out = lines(child.stdout);
        try {
          const first = await out.next();
          const port = Number(/^port (\d+)$/.exec(String(first.value))?.[1]);
          assert.ok(port > 0, `python said ${first.value}`);
          assert.equal(
            await denoEcho(port, { caCerts: [ca.cert], client: clients.alice }),
            "ping\n",
          );
          assert.equal((await out.next()).value, "client-cn alice");
        } finally {
          await child.stdin.close().catch(() => {});
          await child.stderr.cancel();
          for await (const _ of out) { /* drain */ }
          await child.status;
        }
      });
    },
  );
}

peerTest(
  "Deno.connectTls() without a client certificate is refused by a Python ssl server",
  PYTHONS[0],
  async (exe) => {
    const { ca } = await sharedSet();
    const set = await sharedSet();
    await withTempDir(async (dir) => {
      await writeCertificates(dir, set);
      const child = spawn(exe, [
        interopScript("tls_peer.py"),
        "server",
        `${dir}/server.pem`,
        `${dir}/server-key.pem`,
        `${dir}/ca.pem`,
      ]);
      const out = lines(child.stdout);
      try {
        const first = await out.next();
        const port = Number(/^port (\d+)$/.exec(String(first.value))?.[1]);
        await assert.rejects(denoEcho(port, { caCerts: [ca.cert] }));
        assert.match(
          String((await out.next()).value),
          /^error .*(certificate|CERTIFICATE)/,
        );
      } finally {
        await child.stdin.close().catch(() => {});
        await child.stderr.cancel();
        for await (const _ of out) { /* drain */ }
        await child.status;
      }
    });
  },
);

// ---------------------------------------------------------------------------
// deno task certs

Deno.test("deno task certs writes ./certs with narrow permissions, refuses overwrite, --force replaces", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const task: string = config.tasks.certs;
  assert.equal(
    task,
    "deno run --allow-read=certs --allow-write=certs examples/certs.ts",
  );
  await withTempDir(async (dir) => {
    // The same task in a project of its own, so it writes to dir/certs.
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        tasks: {
          certs: task.replace("examples/certs.ts", `${ROOT}examples/certs.ts`),
        },
      }),
    );
    const deno = Deno.execPath();
    const first = await run(deno, [
      "task",
      "-q",
      "certs",
      "--client",
      "alice",
      "--client",
      "bob",
      "--name",
      "app.test",
    ], { cwd: dir });
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const names = [...Deno.readDirSync(`${dir}/certs`)].map((e) => e.name)
      .sort();
    assert.deepEqual(names, [
      "ca-key.pem",
      "ca.pem",
      "client-bob-key.pem",
      "client-bob.pem",
      "client-key.pem",
      "client.pem",
      "server-key.pem",
      "server.pem",
    ]);
    for (const name of names) {
      const mode = (await Deno.stat(`${dir}/certs/${name}`)).mode! & 0o777;
      assert.equal(mode, name.endsWith("-key.pem") ? 0o600 : 0o644, name);
    }
    // it prints paths, subjects and fingerprints, never a key
    const serverFingerprint = await fingerprintCertificate(
      await Deno.readTextFile(`${dir}/certs/server.pem`),
    );
    assert.ok(
      first.stdout.includes(`SHA-256 ${serverFingerprint}`),
      first.stdout,
    );
    assert.ok(
      first.stdout.includes("certs/server-key.pem (private key, mode 0600)"),
      first.stdout,
    );
    assert.ok(first.stdout.includes("CN=alice"));
    assert.ok(first.stdout.includes("DNS:app.test"));
    assert.ok(!/PRIVATE KEY|BEGIN/.test(first.stdout + first.stderr));
    const keyBody =
      (await Deno.readTextFile(`${dir}/certs/server-key.pem`)).split("\n")[1];
    assert.ok(!first.stdout.includes(keyBody.slice(10, 40)));
    // the certificates verify against the written CA and pass a handshake
    const written = {
      ca: await Deno.readTextFile(`${dir}/certs/ca.pem`),
      server: {
        cert: await Deno.readTextFile(`${dir}/certs/server.pem`),
        key: await Deno.readTextFile(`${dir}/certs/server-key.pem`),
      },
    };
    const echo = denoEchoServer(written.server);
    try {
      assert.equal(
        await denoEcho(echo.port, { caCerts: [written.ca] }),
        "ping\n",
      );
    } finally {
      await echo.close();
    }
    // again without --force: refused, nothing changed
    const again = await run(deno, ["task", "-q", "certs"], { cwd: dir });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists; pass force: true \(--force\)/);
    assert.equal(await Deno.readTextFile(`${dir}/certs/ca.pem`), written.ca);
    // --force replaces, and removes bob's files: a client of the old CA
    await Deno.writeTextFile(`${dir}/certs/notes.txt`, "mine");
    const forced = await run(deno, ["task", "-q", "certs", "--force"], {
      cwd: dir,
    });
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(await Deno.readTextFile(`${dir}/certs/ca.pem`), written.ca);
    assert.deepEqual(
      [...Deno.readDirSync(`${dir}/certs`)].map((e) => e.name).sort(),
      [
        "ca-key.pem",
        "ca.pem",
        "client-key.pem",
        "client.pem",
        "notes.txt",
        "server-key.pem",
        "server.pem",
      ],
    );
    assert.match(
      forced.stdout,
      /Removed 2 client files left from the earlier set.*\n {2}certs\/client-bob-key\.pem\n {2}certs\/client-bob\.pem\n/,
    );
    assert.equal(
      (await Deno.stat(`${dir}/certs/ca-key.pem`)).mode! & 0o777,
      0o600,
    );
    // the task cannot write anywhere else, and says how to
    const elsewhere = await run(
      deno,
      ["task", "-q", "certs", "--out", "other"],
      { cwd: dir },
    );
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.stderr, /--allow-read=other --allow-write=other/);
    await assert.rejects(Deno.stat(`${dir}/other`), Deno.errors.NotFound);
    // bad flags exit 2 with usage
    const bad = await run(deno, ["task", "-q", "certs", "--days", "0"], {
      cwd: dir,
    });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Cannot use --days/);
  });
});
