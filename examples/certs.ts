/**
 * Writes a development certificate set (a CA, a server certificate for
 * localhost and client certificates) to `./certs/`, without openssl.
 *
 *     deno task certs                      # ./certs/, refuses to overwrite
 *     deno task certs --force --client alice --client bob --name app.test
 *     deno run --allow-read=out --allow-write=out examples/certs.ts --out out
 *
 * Private keys get mode 0600. It prints paths, subjects and fingerprints,
 * never key contents. With `--force` it also removes (and lists) the
 * `client-*.pem` files of an earlier set that the new set does not replace:
 * they are signed by the CA it replaced.
 *
 * @module
 */
import {
  type CertificateSet,
  generateCertificates,
  listCertificateFiles,
  writeCertificates,
  type WrittenCertificateFile,
} from "../certs.ts";
import { fail, parseArgsOrExit } from "./_cli.ts";
import { setProgram, shellQuote } from "./_program.ts";

const RUN = setProgram({
  script: "examples/certs.ts",
  task: "certs",
  flags: ["--allow-read=certs", "--allow-write=certs"],
});

const USAGE = `Usage: deno task certs [options]
   or: ${RUN} [options]
   or: deno run --allow-read=DIR --allow-write=DIR examples/certs.ts --out DIR [options]

Writes a development CA, a server certificate and client certificates:
ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem, client-key.pem
(further clients as client-<name>.pem / client-<name>-key.pem).

Options:
  --out DIR         directory to write (default certs; the deno task may
                    only write to certs, run the script directly for another)
  --force           overwrite existing files, and remove client-*.pem files
                    of an earlier set that this one does not replace
  --client CN       client certificate common name; repeat for more
                    (default "client")
  --name NAME       extra server name (DNS name or IP address) besides
                    localhost, 127.0.0.1 and ::1; repeat for more
  --days N          validity in days (default 365)
  --ca-name CN      the CA's common name (default "connauth development CA"
                    and 8 random hex digits)
  -h, --help        show this help`;

const { values } = parseArgsOrExit(USAGE, {
  help: { type: "boolean", short: "h" },
  out: { type: "string" },
  force: { type: "boolean" },
  client: { type: "string", multiple: true },
  name: { type: "string", multiple: true },
  days: { type: "string" },
  "ca-name": { type: "string" },
}, { allowPositionals: false });
const out = values.out ?? "certs";
const days = values.days === undefined ? 365 : Number(values.days);
if (!Number.isFinite(days) || days <= 0) {
  fail(`Cannot use --days "${values.days}": expected a positive number`, 2);
}

let set: CertificateSet;
try {
  set = await generateCertificates({
    caCommonName: values["ca-name"],
    serverNames: values.name ?? [],
    clients: values.client ?? ["client"],
    days,
  });
} catch (error) {
  fail((error as Error).message, 2);
}

let written: WrittenCertificateFile[];
try {
  written = await writeCertificates(out, set, { force: values.force });
} catch (error) {
  if (error instanceof Deno.errors.NotCapable) {
    fail(
      `Cannot write certificates to "${out}": no permission for it; run: ${
        [
          "deno run",
          shellQuote(`--allow-read=${out}`),
          shellQuote(`--allow-write=${out}`),
          "examples/certs.ts",
          ...Deno.args.map(shellQuote),
        ].join(" ")
      }`,
    );
  }
  fail((error as Error).message);
}

// --force replaces the whole set. Client files of an earlier set that this
// one does not overwrite are signed by the CA just replaced, so anything
// trusting the new ca.pem refuses them: remove them, and say so below.
const removed: string[] = [];
if (values.force) {
  const current = new Set(listCertificateFiles(set).map((file) => file.name));
  try {
    for await (const entry of Deno.readDir(out)) {
      if (
        entry.isFile && /^client-.+\.pem$/.test(entry.name) &&
        !current.has(entry.name)
      ) {
        const path = out.endsWith("/")
          ? `${out}${entry.name}`
          : `${out}/${entry.name}`;
        await Deno.remove(path);
        removed.push(path);
      }
    }
  } catch (error) {
    fail(
      `Wrote the new set to "${out}" but cannot remove the client files of the earlier set: ${
        (error as Error).message
      }; delete the client-*.pem files not listed below by hand`,
    );
  }
}

const certificates = [set.ca, set.server, ...Object.values(set.clients)];
console.log(`Wrote a development certificate set to ${out}/:`);
for (const certificate of certificates) {
  const files = written.filter((file) =>
    file.fingerprint === certificate.fingerprint
  );
  const role = files[0].role;
  console.log(`\n  ${role.padEnd(7)}CN=${certificate.commonName}`);
  if (certificate.subjectAltNames.length > 0 && role !== "ca") {
    console.log(`         SAN ${certificate.subjectAltNames.join(", ")}`);
  }
  console.log(
    `         valid ${certificate.notBefore.toISOString()} to ${certificate.notAfter.toISOString()}`,
  );
  console.log(`         SHA-256 ${certificate.fingerprint}`);
  for (const file of files) {
    console.log(
      `         ${file.path} (${file.kind}, mode ${
        file.mode.toString(8).padStart(4, "0")
      })`,
    );
  }
}
if (removed.length > 0) {
  removed.sort();
  console.log(
    `\nRemoved ${removed.length} client files left from the earlier set (signed by the CA this run replaced, so they would be refused):`,
  );
  for (const path of removed) console.log(`  ${path}`);
}
console.log(
  `\nTrust ${out}/ca.pem in clients and servers that verify peers. Keep the *-key.pem files private: they are development keys, never commit them.`,
);
