// Private: the subject alternative names of a DER certificate, each as
// `openssl x509 -ext subjectAltName` prints it. Part of connauth's
// certificate reader (_tls_identity.ts).
import { children, contents, decodeOid, type Node } from "./_asn1.ts";
import { formatIp } from "./_ip.ts";
import {
  decodeText,
  expectTag,
  ia5Text,
  onelineName,
  unreadable,
} from "./_x509_name.ts";

/** One GeneralName as `openssl x509 -ext subjectAltName` prints it. */
function generalName(der: Uint8Array, node: Node): string {
  const body = contents(der, node);
  switch (node.tag) {
    case 0x81:
      return `email:${ia5Text(body, "email")}`;
    case 0x82:
      return `DNS:${ia5Text(body, "DNS")}`;
    case 0x86:
      return `URI:${ia5Text(body, "URI")}`;
    case 0x87:
      // 4 or 16 bytes; 8 or 32 (address and mask) only in name constraints.
      if (body.length !== 4 && body.length !== 16) {
        throw unreadable("an IP address name that is not 4 or 16 bytes");
      }
      return `IP Address:${formatIp(body)}`;
    case 0x88:
      return `Registered ID:${decodeOid(body)}`;
    case 0xa0:
      return otherName(der, node);
    case 0xa3:
      return "X400Name:<unsupported>";
    case 0xa4: {
      const inner = children(der, node);
      if (inner.length !== 1) throw unreadable("malformed directory name");
      const name = expectTag(inner[0], 0x30, "directory name");
      return `DirName:${onelineName(der, name)}`;
    }
    case 0xa5:
      return "EdiPartyName:<unsupported>";
    default:
      throw unreadable("an alternative name of unknown type");
  }
}

const OTHER_NAMES: Record<string, [string, number]> = {
  "1.3.6.1.4.1.311.20.2.3": ["UPN", 0x0c],
  "1.3.6.1.5.5.7.8.9": ["SmtpUTF8Mailbox", 0x0c],
  "1.3.6.1.5.5.7.8.5": ["XmppAddr", 0x0c],
  "1.3.6.1.5.5.7.8.7": ["SRVName", 0x16],
  "1.3.6.1.5.5.7.8.8": ["NAIRealm", 0x0c],
};

function otherName(der: Uint8Array, node: Node): string {
  const parts = children(der, node);
  const wrapper = parts[1];
  if (parts.length !== 2 || wrapper.tag !== 0xa0) {
    throw unreadable("malformed otherName");
  }
  const id = decodeOid(contents(der, expectTag(parts[0], 0x06, "otherName")));
  const inner = children(der, wrapper);
  if (inner.length !== 1) throw unreadable("malformed otherName value");
  const value = inner[0];
  const known = OTHER_NAMES[id];
  const label = known?.[0] ?? id;
  const printable = known
    ? value.tag === known[1]
    : value.tag === 0x0c || value.tag === 0x16;
  return `othername: ${label}::${
    printable
      ? decodeText(value.tag, contents(der, value), "an otherName value")
      : "<unsupported>"
  }`;
}

/**
 * The subject alternative names in the extension's value, each as `openssl
 * x509 -ext subjectAltName` prints it (`"DNS:a.test"`,
 * `"IP Address:10.0.0.5"`, `"IP Address:FD00:0:0:0:0:0:0:5"`,
 * `"email:a@b.test"`, `"URI:..."`).
 */
export function subjectAltNames(der: Uint8Array, value: Node): string[] {
  const names = children(der, expectTag(value, 0x30, "subjectAltName"));
  if (names.length === 0) throw unreadable("an empty subjectAltName");
  return names.map((name) => generalName(der, name));
}
