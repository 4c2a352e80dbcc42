// Private X.509 writing helpers shared by certs.ts and the tests: PEM armour,
// the ECDSA signature encoding, and signing a TBSCertificate. The tests build
// deliberately malformed TBSCertificates with _asn1.ts and sign them here, so
// that they are signed exactly as certs.ts signs good ones.
// Not exported from mod.ts.
import { bitString, oid, sequence, unsignedInteger } from "./_asn1.ts";

/** The OID of ecdsa-with-SHA256, the only signature algorithm we write. */
export const OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";

const SIGN_PARAMS = { name: "ECDSA", hash: "SHA-256" } as const;

/** The AlgorithmIdentifier of ecdsa-with-SHA256 (no parameters). */
export function ecdsaWithSha256(): Uint8Array<ArrayBuffer> {
  return sequence(oid(OID_ECDSA_WITH_SHA256));
}

/** WebCrypto's raw r||s to DER `SEQUENCE { INTEGER r, INTEGER s }`. */
export function ecdsaSignatureDer(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const half = raw.length / 2;
  return sequence(
    unsignedInteger(raw.subarray(0, half)),
    unsignedInteger(raw.subarray(half)),
  );
}

/**
 * Signs a DER TBSCertificate with an ECDSA P-256 key (ecdsa-with-SHA256)
 * and returns the DER Certificate. The TBSCertificate is signed as given:
 * nothing in it is checked.
 */
export async function signCertificate(
  tbs: Uint8Array<ArrayBuffer>,
  signingKey: CryptoKey,
): Promise<Uint8Array<ArrayBuffer>> {
  const signature = new Uint8Array(
    await crypto.subtle.sign(SIGN_PARAMS, signingKey, tbs),
  );
  return sequence(
    tbs,
    ecdsaWithSha256(),
    bitString(ecdsaSignatureDer(signature)),
  );
}

/** DER to PEM text with the given label (`CERTIFICATE`, `PRIVATE KEY`). */
export function pemEncode(label: string, der: Uint8Array): string {
  let binary = "";
  for (const byte of der) binary += String.fromCharCode(byte);
  const b64 = btoa(binary);
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${
    lines.join("\n")
  }\n-----END ${label}-----\n`;
}

/** The DER of the first PEM block with `label`; `what` names it in errors. */
export function pemDecode(
  pem: string,
  label: string,
  what: string,
): Uint8Array<ArrayBuffer> {
  const match = typeof pem === "string"
    ? new RegExp(
      `-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`,
    ).exec(pem)
    : null;
  if (!match) {
    throw new TypeError(
      `Cannot read ${what}: expected PEM text with a "-----BEGIN ${label}-----" block`,
    );
  }
  try {
    return Uint8Array.from(
      atob(match[1].replace(/\s+/g, "")),
      (c) => c.charCodeAt(0),
    );
  } catch (error) {
    throw new TypeError(`Cannot read ${what}: the PEM body is not base64`, {
      cause: error,
    });
  }
}
