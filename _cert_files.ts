// Private: a certificate set as files: their names (ca.pem, server.pem,
// client-<name>.pem, ...) and writing them with narrow modes, refusing to
// overwrite unless told to. certs.ts exports the two functions.
import type { CertificateSet, IssuedCertificate } from "./certs.ts";

/** Options for {@linkcode writeCertificates}. */
export interface WriteCertificatesOptions {
  /**
   * Overwrite files that already exist. Without it nothing is written when
   * any target file exists.
   *
   * @default {false}
   */
  force?: boolean;
}

/** One file written by {@linkcode writeCertificates}. */
export interface WrittenCertificateFile {
  /** The file's path (the directory joined with the file name). */
  readonly path: string;
  /** Whether the file holds a certificate or a private key. */
  readonly kind: "certificate" | "private key";
  /** Which certificate of the set the file belongs to. */
  readonly role: "ca" | "server" | "client";
  /** The certificate's subject common name. */
  readonly commonName: string;
  /** The certificate's SHA-256 fingerprint (for both its files). */
  readonly fingerprint: string;
  /** The file mode set (`0o600` for keys, `0o644` for certificates). */
  readonly mode: number;
}

/** One file of a set, as {@linkcode listCertificateFiles} names it. */
export interface CertificateFile {
  /** The file name, e.g. `"server-key.pem"`. */
  readonly name: string;
  /** The PEM text to write. */
  readonly contents: string;
  /** Whether the file holds a certificate or a private key. */
  readonly kind: "certificate" | "private key";
  /** Which certificate of the set the file belongs to. */
  readonly role: "ca" | "server" | "client";
  /** The certificate the file belongs to. */
  readonly certificate: IssuedCertificate;
}

/**
 * The file names {@linkcode writeCertificates} uses for a set: `ca.pem`,
 * `ca-key.pem`, `server.pem`, `server-key.pem`, `client.pem` and
 * `client-key.pem` for the first client, and `client-<name>.pem` /
 * `client-<name>-key.pem` for each further client (the name lowercased, any
 * character outside `a-z 0-9 . _ -` replaced by `-`).
 *
 * @param set The certificate set.
 * @returns The files to write, in order, with their contents.
 * @throws {TypeError} When two client names map to the same file name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listCertificateFiles, generateCertificates } from "./certs.ts";
 *
 * const set = await generateCertificates({ clients: ["alice", "Bob Smith"] });
 * assert.deepEqual(listCertificateFiles(set).map((file) => file.name), [
 *   "ca.pem",
 *   "ca-key.pem",
 *   "server.pem",
 *   "server-key.pem",
 *   "client.pem",
 *   "client-key.pem",
 *   "client-bob-smith.pem",
 *   "client-bob-smith-key.pem",
 * ]);
 * ```
 */
export function listCertificateFiles(set: CertificateSet): CertificateFile[] {
  const entries: [string, "ca" | "server" | "client", IssuedCertificate][] = [
    ["ca", "ca", set.ca],
    ["server", "server", set.server],
  ];
  const used = new Set(["ca", "server", "client"]);
  Object.values(set.clients).forEach((client, index) => {
    if (index === 0) {
      entries.push(["client", "client", client]);
      return;
    }
    const slug = "client-" +
      client.commonName.toLowerCase().replace(/[^a-z0-9._-]/g, "-");
    if (used.has(slug)) {
      throw new TypeError(
        `Cannot name certificate files: client "${client.commonName}" maps to "${slug}.pem", which another client already uses; choose distinct names`,
      );
    }
    used.add(slug);
    entries.push([slug, "client", client]);
  });
  return entries.flatMap(([base, role, certificate]) => [
    {
      name: `${base}.pem`,
      contents: certificate.cert,
      kind: "certificate" as const,
      role,
      certificate,
    },
    {
      name: `${base}-key.pem`,
      contents: certificate.key,
      kind: "private key" as const,
      role,
      certificate,
    },
  ]);
}

/**
 * Writes a certificate set to a directory (created with mode `0o700` when
 * missing): certificates with mode `0o644`, private keys with mode `0o600`.
 * File names are those of {@linkcode listCertificateFiles}. Refuses to overwrite
 * anything unless `force` is set, and then checks every target before
 * writing any, so a refused call writes nothing.
 *
 * @param dir The directory, e.g. `"certs"`.
 * @param set The certificates to write.
 * @param options `force` to overwrite; see
 *   {@linkcode WriteCertificatesOptions}.
 * @returns What was written, in order (paths, subjects, fingerprints; never
 *   key contents).
 * @throws {Deno.errors.AlreadyExists} When a target file exists and `force`
 *   is not set.
 * @throws {Deno.errors.NotCapable} When write permission for `dir` is
 *   missing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateCertificates, writeCertificates } from "./certs.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const written = await writeCertificates(dir, await generateCertificates());
 * assert.equal(written.length, 6);
 * assert.equal(written[1].path, `${dir}/ca-key.pem`);
 * assert.equal((await Deno.stat(`${dir}/ca-key.pem`)).mode! & 0o777, 0o600);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeCertificates(
  dir: string,
  set: CertificateSet,
  options: WriteCertificatesOptions = {},
): Promise<WrittenCertificateFile[]> {
  const force = options.force ?? false;
  const files = listCertificateFiles(set).map((file) => ({
    ...file,
    path: joinPath(dir, file.name),
    mode: file.kind === "private key" ? 0o600 : 0o644,
  }));
  if (!force) {
    for (const file of files) {
      if (await exists(file.path)) {
        throw new Deno.errors.AlreadyExists(
          `Cannot write certificates: "${file.path}" already exists; pass force: true (--force) to overwrite, or choose another directory`,
        );
      }
    }
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const written: WrittenCertificateFile[] = [];
  const posix = Deno.build.os !== "windows";
  for (const file of files) {
    if (force) {
      // Remove first: a file created fresh gets the key's mode from the start.
      await Deno.remove(file.path).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    }
    await Deno.writeTextFile(file.path, file.contents, {
      createNew: true,
      mode: file.mode,
    });
    if (posix) await Deno.chmod(file.path, file.mode);
    written.push({
      path: file.path,
      kind: file.kind,
      role: file.role,
      commonName: file.certificate.commonName,
      fingerprint: file.certificate.fingerprint,
      mode: file.mode,
    });
  }
  return written;
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? `${dir}${name}` : `${dir}/${name}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
