// Private: how servers name a peer: in logs (formatAddr), to callers as a
// plain object (plainAddr), and as the key that per-address limits and
// throttling count it under (addressKey, an IPv6 /64 by default), with the
// counter serve() and serveHttps() share.
import { parseIp } from "./_ip.ts";

/** Describes an address for logs: `127.0.0.1:5000`, `[::1]:5000`. */
export function formatAddr(addr: Deno.Addr | undefined): string {
  if (!addr) return "unknown";
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
  }
  if ("path" in addr) return `${addr.transport}:${addr.path}`;
  return addr.transport;
}

/**
 * A copy of a `Deno.Addr` as a plain object: Deno's own have a null
 * prototype, which `console.log` and `Deno.inspect` print as
 * `[Object: null prototype] { ... }`.
 */
export function plainAddr<A extends Deno.Addr>(addr: A): A {
  return { ...addr };
}

/**
 * The name limits and throttling count a peer under: its IPv4 address; its
 * IPv6 address cut to `ipv6Prefix` bits (`2001:db8:1:2::/64`), whole when
 * link-local, as IPv4 when IPv4-mapped; `"unix"` for every Unix socket peer;
 * `"vsock:<cid>"`.
 */
export function addressKey(addr: Deno.Addr, ipv6Prefix: number): string {
  switch (addr.transport) {
    case "tcp":
    case "udp":
      return ipKey(addr.hostname, ipv6Prefix);
    case "unix":
    case "unixpacket":
      return "unix";
    case "vsock":
      return `vsock:${addr.cid}`;
    default:
      return String((addr as { transport: unknown }).transport);
  }
}

function ipKey(hostname: string, ipv6Prefix: number): string {
  const host = hostname.toLowerCase();
  if (!host.includes(":")) return host;
  const zone = host.indexOf("%");
  const bytes = parseIp(zone < 0 ? host : host.slice(0, zone));
  if (bytes?.length !== 16) return host;
  const groups = Array.from(
    { length: 8 },
    (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1],
  );
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return bytes.subarray(12).join(".");
  }
  // Every host on a link shares fe80::/64: keep link-local addresses whole,
  // zone included.
  if ((groups[0] & 0xffc0) === 0xfe80) return host;
  if (ipv6Prefix >= 128) return formatIpv6(groups);
  const masked = groups.map((group, i) => {
    const keep = Math.min(Math.max(ipv6Prefix - 16 * i, 0), 16);
    return group & ((0xffff << (16 - keep)) & 0xffff);
  });
  return `${formatIpv6(masked)}/${ipv6Prefix}`;
}

/** IPv6 groups as text, the longest run of zero groups shortened to `::`. */
function formatIpv6(groups: number[]): string {
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > bestLength) {
      best = i;
      bestLength = end - i;
    }
    i = end === i ? i + 1 : end;
  }
  const hex = groups.map((group) => group.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${
    hex.slice(best + bestLength).join(":")
  }`;
}

/** Open connections per address key; a key at 0 is forgotten. */
export class AddressCounts {
  #counts = new Map<string, number>();

  /** Counts one more connection from `key`; returns the new count. */
  add(key: string): number {
    const count = (this.#counts.get(key) ?? 0) + 1;
    this.#counts.set(key, count);
    return count;
  }

  /** Counts one connection from `key` less. */
  remove(key: string): void {
    const count = this.#counts.get(key);
    if (count === undefined) return;
    if (count <= 1) this.#counts.delete(key);
    else this.#counts.set(key, count - 1);
  }

  /** Addresses with a connection open. */
  get size(): number {
    return this.#counts.size;
  }
}
