// Private: XmlReader, the strict tokenizer of exactly the XML that XML-RPC
// uses, for _xmlrpc_decode.ts: an optional UTF-8 declaration, elements
// without namespaces (attributes are checked and ignored), character data
// with the five predefined entities and numeric character references,
// CDATA sections and comments. It refuses a DOCTYPE (so no entity
// declarations, no external entities, no expansion), any other entity,
// processing instructions and encodings other than UTF-8. Each method scans
// forward from the cursor: the work is linear in the input. (About 330
// lines: one class, whose methods share the cursor; tag() alone, with the
// attribute checks, is 75.)

import { ProtocolError } from "./errors.ts";
import { quote } from "./_xmlrpc_rules.ts";

/** The refusal of a declared encoding other than UTF-8 (fault -32701). */
export class UnsupportedEncoding extends ProtocolError {}

/** A tag: its name and whether it opens, closes or is empty (`<a/>`). */
export interface Tag {
  name: string;
  kind: "open" | "close" | "empty";
}

/** A tag as a message shows it: `<name>` or `</name>`. */
export function describe(tag: Tag): string {
  const name = tag.name.slice(0, 40);
  return tag.kind === "close" ? `</${name}>` : `<${name}>`;
}

function isXmlSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

function isNameChar(code: number): boolean {
  return (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x30 && code <= 0x39) || code === 0x5f || code === 0x3a ||
    code === 0x2e || code === 0x2d || code > 0x7f;
}

function isValidXmlChar(code: number): boolean {
  return code === 0x9 || code === 0xa || code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff);
}

const PREDEFINED: Record<string, string> = {
  lt: "<",
  gt: ">",
  amp: "&",
  quot: '"',
  apos: "'",
};

/**
 * A reader of exactly the XML that XML-RPC uses, with a cursor over the
 * text; the methods a recursive-descent decoder calls.
 */
export class XmlReader {
  readonly #s: string;
  #i = 0;

  constructor(text: string) {
    this.#s = text;
  }

  /** Where the cursor is, in UTF-16 code units from the start. */
  get offset(): number {
    return this.#i;
  }

  /** Throws a ProtocolError for `detail`, at the cursor. */
  fail(detail: string, reason: "malformed" | "too-large" = "malformed"): never {
    throw new ProtocolError(
      `Cannot decode the XML-RPC message: ${detail} (at offset ${this.#i})`,
      reason,
    );
  }

  /** Throws a ProtocolError for `detail`, at `offset` (a tag read past). */
  failAt(offset: number, detail: string): never {
    this.#i = offset;
    this.fail(detail);
  }

  /** Checks the prolog: an optional XML declaration, in UTF-8. */
  prolog(): void {
    const s = this.#s;
    if (s.startsWith("<?xml") && isXmlSpace(s.charCodeAt(5))) {
      const end = s.indexOf("?>");
      if (end < 0) this.fail("the XML declaration is not closed");
      const decl = s.slice(0, end);
      const match = /encoding\s*=\s*["']([^"']*)["']/.exec(decl);
      if (match && !/^(utf-?8|us-ascii|ascii)$/i.test(match[1])) {
        throw new UnsupportedEncoding(
          `Cannot decode the XML-RPC message: the encoding ${
            quote(match[1])
          } is not supported; send UTF-8`,
          "malformed",
        );
      }
      this.#i = end + 2;
    }
  }

  /** Skips whitespace and comments; refuses DTDs and processing instructions. */
  misc(): void {
    const s = this.#s;
    while (this.#i < s.length) {
      if (isXmlSpace(s.charCodeAt(this.#i))) {
        this.#i++;
      } else if (s.startsWith("<!--", this.#i)) {
        this.#comment();
      } else if (s.startsWith("<!", this.#i) || s.startsWith("<?", this.#i)) {
        this.#refuseMarkup();
      } else {
        return;
      }
    }
  }

  #comment(): void {
    const end = this.#s.indexOf("-->", this.#i + 4);
    if (end < 0) this.fail("a comment is not closed");
    if (this.#s.slice(this.#i + 4, end).includes("--")) {
      this.fail("a comment contains '--'");
    }
    this.#i = end + 3;
  }

  #refuseMarkup(): never {
    const s = this.#s;
    if (s.startsWith("<!DOCTYPE", this.#i)) {
      this.fail(
        "a DOCTYPE is not allowed (no document type, entity declarations or external entities)",
      );
    }
    if (s.startsWith("<!ENTITY", this.#i)) {
      this.fail("an entity declaration is not allowed");
    }
    if (s.startsWith("<?", this.#i)) {
      this.fail("a processing instruction is not allowed here");
    }
    this.fail("a markup declaration ('<!') is not allowed");
  }

  /** Decodes character data: entity and character references. */
  chars(raw: string): string {
    if (raw.includes("\r")) {
      raw = raw.replaceAll("\r\n", "\n").replaceAll("\r", "\n");
    }
    let amp = raw.indexOf("&");
    if (amp < 0) return raw;
    let out = "";
    let from = 0;
    while (amp >= 0) {
      const semi = raw.indexOf(";", amp);
      if (semi < 0 || semi - amp > 12) {
        this.fail(
          "an '&' does not start a reference; write it as &amp;",
        );
      }
      const name = raw.slice(amp + 1, semi);
      let char = Object.hasOwn(PREDEFINED, name) ? PREDEFINED[name] : undefined;
      if (char === undefined) {
        const code = /^#[0-9]{1,7}$/.test(name)
          ? parseInt(name.slice(1), 10)
          : /^#x[0-9A-Fa-f]{1,6}$/.test(name)
          ? parseInt(name.slice(2), 16)
          : -1;
        if (code < 0) {
          this.fail(
            `the entity ${
              quote(`&${name};`)
            } is not allowed: only &lt; &gt; &amp; &quot; &apos; and numeric character references are`,
          );
        }
        if (!isValidXmlChar(code)) {
          this.fail(
            `the character reference ${
              quote(`&${name};`)
            } names a character XML 1.0 does not allow`,
          );
        }
        char = String.fromCodePoint(code);
      }
      out += raw.slice(from, amp) + char;
      from = semi + 1;
      amp = raw.indexOf("&", from);
    }
    return out + raw.slice(from);
  }

  /** Reads character data (with CDATA sections and comments) up to a tag. */
  text(): string {
    const s = this.#s;
    let out = "";
    for (;;) {
      const lt = s.indexOf("<", this.#i);
      if (lt < 0) {
        this.#i = s.length;
        this.fail("the document ends inside an element");
      }
      out += this.chars(s.slice(this.#i, lt));
      this.#i = lt;
      if (s.startsWith("<![CDATA[", lt)) {
        const end = s.indexOf("]]>", lt + 9);
        if (end < 0) this.fail("a CDATA section is not closed");
        out += s.slice(lt + 9, end).replaceAll("\r\n", "\n").replaceAll(
          "\r",
          "\n",
        );
        this.#i = end + 3;
      } else if (s.startsWith("<!--", lt)) {
        this.#comment();
      } else if (s.startsWith("<!", lt) || s.startsWith("<?", lt)) {
        this.#refuseMarkup();
      } else {
        return out;
      }
    }
  }

  /** Reads the tag at the cursor (after misc()). */
  tag(): Tag {
    const s = this.#s;
    if (this.#i >= s.length) {
      this.fail("the document ends where a tag was expected");
    }
    if (s.charCodeAt(this.#i) !== 0x3c) {
      this.fail(
        `expected a tag, found text ${quote(s.slice(this.#i, this.#i + 20))}`,
      );
    }
    let j = this.#i + 1;
    const close = s.charCodeAt(j) === 0x2f;
    if (close) j++;
    const start = j;
    while (j < s.length && isNameChar(s.charCodeAt(j))) j++;
    if (j === start) {
      this.#i = j;
      this.fail("expected an element name after '<'");
    }
    const name = s.slice(start, j);
    let kind: Tag["kind"] = close ? "close" : "open";
    for (;;) {
      const spaceStart = j;
      while (j < s.length && isXmlSpace(s.charCodeAt(j))) j++;
      const code = s.charCodeAt(j);
      if (code === 0x3e) { // >
        j++;
        break;
      }
      if (!close && code === 0x2f && s.charCodeAt(j + 1) === 0x3e) { // />
        kind = "empty";
        j += 2;
        break;
      }
      // An attribute: XML-RPC has none; accept and ignore well-formed ones.
      if (close || j === spaceStart || !isNameChar(code)) {
        this.#i = j;
        this.fail(
          `the tag <${close ? "/" : ""}${name.slice(0, 40)}> is malformed`,
        );
      }
      while (j < s.length && isNameChar(s.charCodeAt(j))) j++;
      while (j < s.length && isXmlSpace(s.charCodeAt(j))) j++;
      if (s.charCodeAt(j) !== 0x3d) {
        this.#i = j;
        this.fail(`an attribute in <${name.slice(0, 40)}> has no value`);
      }
      j++;
      while (j < s.length && isXmlSpace(s.charCodeAt(j))) j++;
      const q = s[j];
      if (q !== '"' && q !== "'") {
        this.#i = j;
        this.fail(`an attribute value in <${name.slice(0, 40)}> is not quoted`);
      }
      const end = s.indexOf(q, j + 1);
      if (end < 0) {
        this.#i = j;
        this.fail("an attribute value is not closed");
      }
      const value = s.slice(j + 1, end);
      if (value.includes("<")) {
        this.#i = j;
        this.fail("an attribute value contains '<'");
      }
      this.chars(value);
      j = end + 1;
    }
    this.#i = j;
    return { name, kind };
  }

  /** Reads an opening tag named `name`; returns true if it is `<name/>`. */
  open(name: string): boolean {
    this.misc();
    const at = this.#i;
    const tag = this.tag();
    if (tag.name !== name || tag.kind === "close") {
      this.failAt(at, `expected <${name}>, found ${describe(tag)}`);
    }
    return tag.kind === "empty";
  }

  /** Reads the closing tag `</name>`. */
  close(name: string): void {
    this.misc();
    const at = this.#i;
    const tag = this.tag();
    if (tag.name !== name || tag.kind !== "close") {
      this.failAt(at, `expected </${name}>, found ${describe(tag)}`);
    }
  }

  /** True when the next tag (after misc) closes an element. */
  atClose(): boolean {
    this.misc();
    return this.#s.startsWith("</", this.#i);
  }

  /** Reads the text content of a leaf element whose open tag was `tag`. */
  leaf(tag: Tag): string {
    if (tag.kind === "empty") return "";
    const text = this.text();
    this.close(tag.name);
    return text;
  }

  /** Checks that nothing but comments and blanks follow the root element. */
  end(): void {
    this.misc();
    if (this.#i < this.#s.length) this.fail("content after the root element");
  }
}
