// Client-certificate allow-lists, shared by tls.ts (refusing at the TLS
// layer) and https.ts (answering HTTP 403). Private: not exported from
// mod.ts.
import type { PeerIdentity, TlsAllowList } from "./tls.ts";

function normalizeFingerprint(value: string): string {
  return value.replace(/[^0-9a-f]/gi, "").toUpperCase();
}

function sanValue(entry: string): string {
  const index = entry.indexOf(":");
  return index < 0 ? entry : entry.slice(index + 1);
}

/** Whether a verified identity matches `allow` (CN, SAN or fingerprint). */
export function allowed(
  identity: PeerIdentity | null,
  allow: TlsAllowList,
): boolean {
  if (identity === null) return false;
  if (
    identity.cn !== undefined && (allow.cn ?? []).includes(identity.cn)
  ) return true;
  for (const wanted of allow.san ?? []) {
    const wantedValue = /^(DNS|IP|IP Address|email|URI):/i.test(wanted)
      ? sanValue(wanted)
      : wanted;
    const wantedType = wanted.includes(":") &&
        /^(DNS|IP|IP Address|email|URI):/i.test(wanted)
      ? wanted.slice(0, wanted.indexOf(":")).toUpperCase().replace(
        "IP ADDRESS",
        "IP",
      )
      : null;
    for (const entry of identity.san) {
      const type = entry.slice(0, entry.indexOf(":")).toUpperCase().replace(
        "IP ADDRESS",
        "IP",
      );
      if (
        sanValue(entry) === wantedValue &&
        (wantedType === null || wantedType === type)
      ) return true;
    }
  }
  const fingerprint = normalizeFingerprint(identity.fingerprint256);
  return (allow.fingerprint ?? []).some((value) =>
    normalizeFingerprint(value) === fingerprint
  );
}

/** Names a client in a log line: its subject and fingerprint. */
export function describe(identity: PeerIdentity | null): string {
  if (identity === null) return "a client without a certificate";
  return `client "${identity.subject}" (SHA-256 ${identity.fingerprint256})`;
}
