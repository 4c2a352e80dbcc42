// serveHttps()'s TLS credentials: the `sni` option, setCredentials()
// (rotation without restart), and the options it hands to the listenTls()
// listener it opens (`ipv6Prefix` included).
import assert from "node:assert/strict";
import { type HttpsErrorInfo, serveHttps } from "../https.ts";
import { listenerOptions, resolveHttpsOptions } from "../_https_options.ts";
import { listenTls, TlsError } from "../tls.ts";
import {
  createCertificateAuthority,
  generateCertificates,
  issueCertificate,
} from "../certs.ts";
import { findTool, peerTest } from "./_helpers.ts";

const first = await generateCertificates({ clients: ["alice"] });
const next = await generateCertificates({ clients: ["bob"] });
const sniCa = await createCertificateAuthority();
const aCert = await issueCertificate(sniCa, {
  commonName: "a.test",
  names: ["a.test"],
  includeLocalhost: false,
});

const hello = (
  _request: Request,
  info: { peerIdentity: { cn?: string } | null },
) => new Response(`hello ${info.peerIdentity?.cn ?? "anyone"}`);

/** GET / with a client trusting `ca` (and presenting `client`). */
async function get(
  port: number,
  ca: string,
  client?: { cert: string; key: string },
): Promise<string> {
  using http = Deno.createHttpClient({ caCerts: [ca], ...client });
  const response = await fetch(`https://localhost:${port}/`, {
    client: http,
    signal: AbortSignal.timeout(10_000),
  });
  return `${response.status} ${await response.text()}`;
}

const openssl = { label: "openssl", path: findTool("openssl") };

peerTest(
  "serveHttps() sni sends each name its certificate (openssl s_client -servername)",
  openssl,
  async (path) => {
    const dir = await Deno.makeTempDir({ prefix: "connauth-https-sni-" });
    try {
      const caFile = `${dir}/ca.pem`;
      await Deno.writeTextFile(caFile, `${sniCa.cert}\n${first.ca.cert}`);
      await using https = await serveHttps({
        cert: first.server.cert,
        key: first.server.key,
        sni: { "a.test": { cert: aCert.cert, key: aCert.key } },
      }, hello);
      const request = async (args: string[]) => {
        const command = new Deno.Command(path, {
          args: [
            "s_client",
            "-connect",
            `127.0.0.1:${https.addr.port}`,
            "-CAfile",
            caFile,
            "-quiet",
            "-verify_return_error",
            ...args,
          ],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(10_000),
        }).spawn();
        const writer = command.stdin.getWriter();
        await writer.write(
          new TextEncoder().encode(
            "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
          ),
        );
        await writer.close();
        const output = await command.output();
        const stderr = new TextDecoder().decode(output.stderr);
        return {
          subject: stderr.match(/depth=0 (.*)$/m)?.[1],
          body: new TextDecoder().decode(output.stdout).split("\r\n\r\n")[1],
        };
      };
      assert.deepEqual(await request(["-servername", "a.test"]), {
        subject: "CN = a.test",
        body: "hello anyone",
      });
      assert.deepEqual(await request(["-servername", "unknown.test"]), {
        subject: "CN = localhost",
        body: "hello anyone",
      });
      assert.deepEqual(await request(["-noservername"]), {
        subject: "CN = localhost",
        body: "hello anyone",
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("serveHttps() sni answers fetch() for localhost with its certificate", async () => {
  await using https = await serveHttps({
    cert: first.server.cert,
    key: first.server.key,
    sni: { localhost: { cert: next.server.cert, key: next.server.key } },
  }, hello);
  assert.equal(await get(https.addr.port, next.ca.cert), "200 hello anyone");
  await assert.rejects(get(https.addr.port, first.ca.cert));
});

Deno.test("HttpsServer.setCredentials() rotates the certificate and the client CA for new connections", async () => {
  const errors: unknown[] = [];
  await using https = await serveHttps({
    cert: first.server.cert,
    key: first.server.key,
    clientCa: first.ca.cert,
    onError: (error: unknown, _info: HttpsErrorInfo) => errors.push(error),
  }, hello);
  const port = https.addr.port;
  const alice = first.clients.alice;
  const bob = next.clients.bob;
  assert.equal(await get(port, first.ca.cert, alice), "200 hello alice");
  await https.setCredentials({
    cert: next.server.cert,
    key: next.server.key,
    clientCa: next.ca.cert,
  });
  assert.equal(await get(port, next.ca.cert, bob), "200 hello bob");
  // The old server CA is no longer enough, nor is the old client CA.
  await assert.rejects(get(port, first.ca.cert, alice));
  await assert.rejects(get(port, next.ca.cert, alice));
  assert.ok(
    errors.some((error) =>
      error instanceof TlsError && error.reason === "unknown-ca"
    ),
  );
  // A bad input changes nothing.
  await assert.rejects(
    https.setCredentials({ cert: first.server.cert, key: next.server.key }),
    (error) => error instanceof TlsError && error.reason === "key-mismatch",
  );
  assert.equal(await get(port, next.ca.cert, bob), "200 hello bob");
});

Deno.test("HttpsServer.setCredentials() keeps a kept-alive connection working", async () => {
  await using https = await serveHttps({
    cert: first.server.cert,
    key: first.server.key,
  }, hello);
  // Trusts the first CA only: a new connection after the rotation fails.
  using http = Deno.createHttpClient({ caCerts: [first.ca.cert] });
  const url = `https://localhost:${https.addr.port}/`;
  const response1 = await fetch(url, { client: http });
  assert.equal(await response1.text(), "hello anyone");
  await https.setCredentials({ cert: next.server.cert, key: next.server.key });
  // The same pooled connection, still on the first certificate.
  const response2 = await fetch(url, { client: http });
  assert.equal(await response2.text(), "hello anyone");
  await assert.rejects(get(https.addr.port, first.ca.cert));
  assert.equal(await get(https.addr.port, next.ca.cert), "200 hello anyone");
});

Deno.test("HttpsServer.setCredentials() on a given listener calls its setCredentials(), or explains why not", async () => {
  {
    await using https = await serveHttps({
      listener: await listenTls({
        cert: first.server.cert,
        key: first.server.key,
      }),
    }, hello);
    await https.setCredentials({
      cert: next.server.cert,
      key: next.server.key,
    });
    assert.equal(await get(https.addr.port, next.ca.cert), "200 hello anyone");
  }
  await using plain = await serveHttps({
    listener: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  }, hello);
  await assert.rejects(
    plain.setCredentials({ cert: next.server.cert, key: next.server.key }),
    new TypeError(
      "Cannot set the TLS credentials: the server was given a listener without setCredentials(); give serveHttps() a listenTls() listener, or its `cert`/`key` to open one",
    ),
  );
});

Deno.test("HttpsServer.setCredentials() after shutdown throws BadResource", async () => {
  const https = await serveHttps({
    cert: first.server.cert,
    key: first.server.key,
  }, hello);
  await https.shutdown();
  await assert.rejects(
    https.setCredentials({ cert: next.server.cert, key: next.server.key }),
    Deno.errors.BadResource,
  );
});

Deno.test("serveHttps() refuses sni together with listener", async () => {
  await using listener = await listenTls({
    cert: first.server.cert,
    key: first.server.key,
  });
  await assert.rejects(
    serveHttps({ listener, sni: { "a.test": aCert } }, hello),
    new TypeError(
      "Cannot serve HTTPS: give `sni` to listenTls() and pass its listener, or leave out `listener`",
    ),
  );
});

Deno.test("serveHttps() gives its listenTls() listener ipv6Prefix and sni", () => {
  const options = {
    cert: first.server.cert,
    key: first.server.key,
    ipv6Prefix: 48,
    sni: { "a.test": aCert },
  };
  const tls = listenerOptions(options, resolveHttpsOptions(options), () => {});
  assert.equal(tls.ipv6Prefix, 48);
  assert.equal(tls.sni, options.sni);
  const defaults = { cert: first.server.cert, key: first.server.key };
  assert.equal(
    listenerOptions(defaults, resolveHttpsOptions(defaults), () => {})
      .ipv6Prefix,
    64,
  );
});
