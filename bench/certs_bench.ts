// deno bench: what a development certificate set costs with certs.ts, next
// to making the same set with the openssl command line (CA, server and client
// certificates, ECDSA P-256, the same extensions).
// Run with `deno task bench bench/certs_bench.ts`.
import { generateCertificates, issueCertificate } from "../certs.ts";
import { findTool } from "../tests/_helpers.ts";

const ca = (await generateCertificates({ clients: [] })).ca;

Deno.bench("generateCertificates(): CA, server and client", {
  group: "set",
  baseline: true,
}, async () => {
  await generateCertificates();
});

const openssl = findTool("openssl");
const dir = await Deno.makeTempDir({ prefix: "connauth_certs_bench_" });
const serverExt = `${dir}/server.ext`;
const clientExt = `${dir}/client.ext`;
await Deno.writeTextFile(
  serverExt,
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
    "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n",
);
await Deno.writeTextFile(
  clientExt,
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
    "extendedKeyUsage=clientAuth\n",
);

async function openssl_(args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command(openssl!, {
    args,
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(new TextDecoder().decode(stderr));
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

Deno.bench("openssl command line: the same set (6 processes)", {
  group: "set",
  ignore: openssl === null,
}, async () => {
  await openssl_([
    "req",
    "-x509",
    ...EC,
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca.pem",
    "-subj",
    "/CN=bench CA",
    "-days",
    "365",
    "-addext",
    "basicConstraints=critical,CA:TRUE,pathlen:0",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  for (
    const [name, cn, ext] of [["server", "localhost", serverExt], [
      "client",
      "client",
      clientExt,
    ]]
  ) {
    await openssl_([
      "req",
      "-new",
      ...EC,
      "-keyout",
      `${name}-key.pem`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${cn}`,
    ]);
    await openssl_([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca-key.pem",
      "-set_serial",
      "0x" + crypto.randomUUID().replaceAll("-", "").slice(1),
      "-days",
      "365",
      "-extfile",
      ext,
      "-out",
      `${name}.pem`,
    ]);
  }
});

Deno.bench(
  "issueCertificate(): one server certificate from a PEM CA",
  async () => {
    await issueCertificate(ca);
  },
);

globalThis.addEventListener("unload", () => {
  Deno.removeSync(dir, { recursive: true });
});
