// Private: a CA given as PEM text (from createCertificateAuthority(), or
// ca.pem and ca-key.pem read back from files), read and checked before it
// signs anything: a CA certificate (CA:TRUE), an ECDSA P-256 PKCS#8 key,
// and the key that belongs to it.
import { children, contents, decodeOid, raw, readNode, TAG } from "./_asn1.ts";
import { concat } from "./_bytes.ts";
import {
  EC_PARAMS,
  keyIdentifier,
  OID,
  pemDecode,
  spkiPoint,
} from "./_x509.ts";
import type { CertificateAndKey } from "./certs.ts";

export interface Issuer {
  subject: Uint8Array;
  keyId: Uint8Array;
  key: CryptoKey;
}

export async function loadIssuer(ca: CertificateAndKey): Promise<Issuer> {
  if (
    typeof ca !== "object" || ca === null || typeof ca.cert !== "string" ||
    typeof ca.key !== "string"
  ) {
    throw new TypeError(
      "Cannot issue certificate: ca must be { cert, key } PEM strings, e.g. from createCertificateAuthority()",
    );
  }
  const der = pemDecode(ca.cert, "CERTIFICATE", "CA certificate");
  let subject: Uint8Array;
  let spki: Uint8Array;
  let keyId: Uint8Array | undefined;
  let isCa = false;
  try {
    const root = readNode(der, 0);
    const [tbsNode] = children(der, root);
    const fields = children(der, tbsNode);
    const offset = fields[0].tag === 0xa0 ? 1 : 0;
    subject = raw(der, fields[offset + 4]);
    spki = raw(der, fields[offset + 5]);
    const extensionsNode = fields.find((field) => field.tag === 0xa3);
    const list = extensionsNode
      ? children(der, children(der, extensionsNode)[0])
      : [];
    for (const ext of list) {
      const parts = children(der, ext);
      const id = decodeOid(contents(der, parts[0]));
      const value = contents(der, parts[parts.length - 1]);
      if (id === OID.subjectKeyIdentifier) {
        keyId = contents(value, readNode(value, 0));
      } else if (id === OID.basicConstraints) {
        const seq = readNode(value, 0);
        const first = children(value, seq)[0];
        isCa = first?.tag === TAG.BOOLEAN && value[first.contentStart] !== 0;
      }
    }
  } catch (error) {
    throw new TypeError(
      "Cannot issue certificate: the CA certificate is not a valid X.509 certificate",
      { cause: error },
    );
  }
  if (!isCa) {
    throw new TypeError(
      "Cannot issue certificate: the CA certificate is not a CA (basicConstraints CA:TRUE missing); pass the CA's certificate, not a leaf",
    );
  }
  let key: CryptoKey;
  let jwk: JsonWebKey;
  try {
    key = await crypto.subtle.importKey(
      "pkcs8",
      pemDecode(ca.key, "PRIVATE KEY", "CA key"),
      EC_PARAMS,
      true,
      ["sign"],
    );
    jwk = await crypto.subtle.exportKey("jwk", key);
  } catch (error) {
    if (error instanceof TypeError && error.message.includes("PEM")) {
      throw error;
    }
    throw new TypeError(
      "Cannot issue certificate: the CA key is not an ECDSA P-256 PKCS#8 key; use a CA made by createCertificateAuthority() or generateCertificates()",
      { cause: error },
    );
  }
  const point = concat(
    Uint8Array.of(4),
    base64UrlDecode(jwk.x ?? ""),
    base64UrlDecode(jwk.y ?? ""),
  );
  if (!equalBytes(point, spkiPoint(spki))) {
    throw new TypeError(
      "Cannot issue certificate: the CA key does not match the CA certificate; pass the key file written with it (ca-key.pem)",
    );
  }
  return {
    subject,
    keyId: keyId ?? await keyIdentifier(spki),
    key,
  };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function base64UrlDecode(text: string): Uint8Array<ArrayBuffer> {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(
    atob(b64 + "=".repeat((4 - b64.length % 4) % 4)),
    (c) => c.charCodeAt(0),
  );
}
