// Private: the checks of certs.ts's inputs (DNS names and IP addresses,
// common names, validity dates), one wording each, and the defaults they
// fill in.
import { parseIp } from "./_ip.ts";
import { hex } from "./_x509.ts";
import type { CertificateValidityOptions } from "./certs.ts";

const DEFAULT_DAYS = 365;
const MAX_DAYS = 100 * 366;
const SKEW_MS = 60_000;
const DAY_MS = 86_400_000;
const DNS_LABEL = /^([a-z0-9]|[a-z0-9][a-z0-9-]{0,61}[a-z0-9])$/i;

export function defaultCaName(): string {
  return `connauth development CA ${
    hex(crypto.getRandomValues(new Uint8Array(4))).toUpperCase()
  }`;
}

export function dedupe(names: string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const name of names) {
    const key = parseIp(name)?.join(",") ?? name.toLowerCase();
    if (!seen.has(key)) {
      seen.add(key);
      out.push(name);
    }
  }
  return out;
}

export function checkNames(names: string[]): string[] {
  if (!Array.isArray(names)) {
    throw new TypeError(
      "Cannot use names: expected an array of DNS names or IP addresses",
    );
  }
  return names.map((name) => {
    if (typeof name !== "string") {
      throw new TypeError(
        `Cannot use name: expected a string, got ${typeof name}`,
      );
    }
    if (parseIp(name)) return name.replace(/^\[(.*)\]$/, "$1");
    const labels = name.split(".");
    if (/^[0-9]+$/.test(labels[labels.length - 1])) {
      throw new TypeError(
        `Cannot use name "${name}": it looks like an IP address but is not a valid IPv4 or IPv6 address`,
      );
    }
    const ok = name.length <= 253 &&
      labels.every((label, i) =>
        DNS_LABEL.test(label) || (i === 0 && label === "*" && labels.length > 2)
      );
    if (!ok) {
      throw new TypeError(
        `Cannot use name "${name}": expected a DNS name (letters, digits, hyphens, dots; "*." only as the first label) or an IPv4/IPv6 address`,
      );
    }
    return name.toLowerCase();
  });
}

export function checkCommonName(name: string, what: string): string {
  if (typeof name !== "string" || name.length === 0 || name.length > 64) {
    throw new TypeError(
      `Cannot use ${what}: expected 1 to 64 characters, got ${
        typeof name === "string" ? `${name.length}` : typeof name
      }`,
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw new TypeError(
      `Cannot use ${what}: control characters are not allowed`,
    );
  }
  return name;
}

export function validity(options: CertificateValidityOptions): [Date, Date] {
  const days = options.days ?? DEFAULT_DAYS;
  if (typeof days !== "number" || !Number.isFinite(days)) {
    throw new TypeError(
      `Cannot use days: expected a number, got ${typeof days}`,
    );
  }
  if (days <= 0 || days > MAX_DAYS) {
    throw new RangeError(
      `Cannot use days: expected more than 0 and at most ${MAX_DAYS}, got ${days}`,
    );
  }
  for (const key of ["notBefore", "notAfter"] as const) {
    const value = options[key];
    if (
      value !== undefined &&
      (!(value instanceof Date) || Number.isNaN(value.getTime()))
    ) {
      throw new TypeError(`Cannot use ${key}: expected a valid Date`);
    }
  }
  const now = Date.now();
  const start = options.notBefore?.getTime() ?? now - SKEW_MS;
  const end = options.notAfter?.getTime() ??
    (options.notBefore ? start : now) + days * DAY_MS;
  const notBefore = new Date(Math.floor(start / 1000) * 1000);
  const notAfter = new Date(Math.floor(end / 1000) * 1000);
  if (notAfter <= notBefore) {
    throw new RangeError(
      `Cannot use validity: notAfter (${notAfter.toISOString()}) must be after notBefore (${notBefore.toISOString()})`,
    );
  }
  return [notBefore, notAfter];
}
