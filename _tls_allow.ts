// Private: whether a verified client's identity matches an allow list
// (listenTls()'s and serveHttps()'s `allow`): by CN, by SAN (IP addresses
// by value, DNS names without regard to case) or by fingerprint.
import type { PeerIdentity, TlsAllowList } from "./tls.ts";
import { parseIp } from "./_ip.ts";

function normalizeFingerprint(value: string): string {
  return value.replace(/[^0-9a-f]/gi, "").toUpperCase();
}

const SAN_PREFIX = /^(DNS|IP|IP Address|email|URI):/i;

/** A SAN entry's type (`DNS`, `IP`, `EMAIL`, `URI`) and value. */
function splitSan(entry: string): { type: string | null; value: string } {
  const match = SAN_PREFIX.exec(entry);
  if (!match) return { type: null, value: entry };
  const type = match[1].toUpperCase();
  return {
    type: type === "IP ADDRESS" ? "IP" : type,
    value: entry.slice(match[0].length),
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * Whether a verified identity matches `allow` (CN, SAN or fingerprint). IP
 * SANs compare by address, so `"IP:fd00::5"`, `"IP Address:FD00:0:0:0:0:0:0:5"`
 * and a bare `"fd00::5"` all match the same certificate; DNS SANs compare
 * without regard to case.
 */
export function allowed(
  identity: PeerIdentity | null,
  allow: TlsAllowList,
): boolean {
  if (identity === null) return false;
  if (
    identity.cn !== undefined && (allow.cn ?? []).includes(identity.cn)
  ) return true;
  const sans = identity.san.map(splitSan);
  for (const wanted of allow.san ?? []) {
    const { type: wantedType, value: wantedValue } = splitSan(wanted);
    const wantedIp = wantedType === null || wantedType === "IP"
      ? parseIp(wantedValue)
      : null;
    for (const { type, value } of sans) {
      if (wantedType !== null && wantedType !== type) continue;
      if (value === wantedValue) return true;
      // DNS names are case-insensitive (RFC 4343).
      if (
        type === "DNS" && value.toLowerCase() === wantedValue.toLowerCase()
      ) return true;
      if (type === "IP" && wantedIp) {
        const ip = parseIp(value);
        if (ip && sameBytes(ip, wantedIp)) return true;
      }
    }
  }
  const fingerprint = normalizeFingerprint(identity.fingerprint256);
  return (allow.fingerprint ?? []).some((value) =>
    normalizeFingerprint(value) === fingerprint
  );
}
