// Private: IP address text to bytes and back, for certificate names (an IP
// SAN is 4 or 16 bytes; openssl prints it in its own way), allow lists
// (IP SANs compare by value, in any notation) and address keys.

/** IPv4 or IPv6 text (brackets allowed) to bytes; null when not an IP. */
export function parseIp(text: string): Uint8Array<ArrayBuffer> | null {
  const v4 = parseIpv4(text);
  if (v4) return v4;
  const name = text.startsWith("[") && text.endsWith("]")
    ? text.slice(1, -1)
    : text;
  if (!name.includes(":")) return null;
  return parseIpv6(name);
}

function parseIpv4(text: string): Uint8Array<ArrayBuffer> | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (const [i, part] of parts.entries()) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return null;
    bytes[i] = Number(part);
  }
  return bytes;
}

function parseIpv6(text: string): Uint8Array<ArrayBuffer> | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const groups = part.split(":");
    for (const [i, group] of groups.entries()) {
      if (i === groups.length - 1 && group.includes(".")) {
        const v4 = parseIpv4(group);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(group)) {
        out.push(parseInt(group, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...new Array(missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

/**
 * An IP address as openssl prints it in a SAN: dotted IPv4, or IPv6 as eight
 * uppercase hex groups without zero compression (`FD00:0:0:0:0:0:0:5`).
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  if (bytes.length !== 16) return `<invalid length=${bytes.length}>`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16).toUpperCase());
  }
  return groups.join(":");
}
