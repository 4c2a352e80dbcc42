// _xml_reader.ts: the strict tokenizer under the XML-RPC decoder, read
// directly. The documents an attacker sends are in tests/xmlrpc_test.ts and
// tests/hostile/xmlrpc_test.ts, through decodeMethodCall().
import assert from "node:assert/strict";
import { ProtocolError } from "../errors.ts";
import { describe, UnsupportedEncoding, XmlReader } from "../_xml_reader.ts";

/** Asserts that `fn` throws the decoder's ProtocolError matching `message`. */
function fails(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: ProtocolError) => {
    assert.ok(error instanceof ProtocolError, String(error));
    assert.equal(error.reason, "malformed");
    assert.match(error.message, /^Cannot decode the XML-RPC message: /);
    assert.match(error.message, message);
    return true;
  });
}

Deno.test("XmlReader.prolog() accepts a UTF-8 or ASCII declaration and refuses other encodings", () => {
  for (
    const decl of [
      '<?xml version="1.0"?>',
      "<?xml version='1.0' encoding='UTF-8'?>",
      '<?xml version="1.0" encoding="utf8"?>',
      '<?xml version="1.0" encoding="us-ascii"?>',
    ]
  ) {
    const reader = new XmlReader(`${decl}<a/>`);
    reader.prolog();
    assert.equal(reader.offset, decl.length, decl);
    assert.equal(reader.open("a"), true);
  }
  const latin1 = new XmlReader('<?xml version="1.0" encoding="ISO-8859-1"?>');
  assert.throws(() => latin1.prolog(), (error: UnsupportedEncoding) => {
    assert.ok(error instanceof UnsupportedEncoding);
    assert.ok(error instanceof ProtocolError);
    assert.match(error.message, /"ISO-8859-1" is not supported; send UTF-8/);
    return true;
  });
  // No declaration: nothing read.
  const bare = new XmlReader("<a/>");
  bare.prolog();
  assert.equal(bare.offset, 0);
  fails(() => new XmlReader("<?xml version='1.0'").prolog(), /not closed/);
});

Deno.test("XmlReader.misc() skips blanks and comments, and refuses DTDs and processing instructions", () => {
  const text = " \t\r\n<!-- a - b -->\n<!---->x";
  const reader = new XmlReader(text);
  reader.misc();
  assert.equal(reader.offset, text.indexOf("x"));
  fails(() => new XmlReader("<!DOCTYPE a>").misc(), /a DOCTYPE is not allowed/);
  fails(
    () => new XmlReader("<!ENTITY x 'y'>").misc(),
    /an entity declaration is not allowed/,
  );
  fails(
    () => new XmlReader("<?php ?>").misc(),
    /a processing instruction is not allowed here/,
  );
  fails(() => new XmlReader("<![CDATA[x]]>").misc(), /'<!'\) is not allowed/);
  fails(() => new XmlReader("<!-- a -- b -->").misc(), /contains '--'/);
  fails(() => new XmlReader("<!-- open").misc(), /a comment is not closed/);
});

Deno.test("XmlReader.chars() decodes the five entities and character references, nothing else", () => {
  const reader = new XmlReader("");
  assert.equal(
    reader.chars("&lt;&gt;&amp;&quot;&apos; &#65;&#x42;&#x1F600;"),
    "<>&\"' AB\u{1F600}",
  );
  assert.equal(reader.chars("a\r\nb\rc"), "a\nb\nc");
  assert.equal(reader.chars("plain"), "plain");
  fails(() => reader.chars("&nbsp;"), /the entity "&nbsp;" is not allowed/);
  fails(() => reader.chars("&constructor;"), /not allowed/);
  fails(() => reader.chars("a & b"), /an '&' does not start a reference/);
  fails(() => reader.chars("&#0;"), /names a character XML 1.0 does not allow/);
  fails(() => reader.chars("&#xFFFE;"), /does not allow/);
  fails(() => reader.chars("&#x110000;"), /does not allow/);
});

Deno.test("XmlReader.text() joins character data, CDATA sections and comments up to a tag", () => {
  const reader = new XmlReader(
    "a&amp;b<![CDATA[<&>\r\n]]><!-- c -->d</x>",
  );
  assert.equal(reader.text(), "a&b<&>\nd");
  assert.deepEqual(reader.tag(), { name: "x", kind: "close" });
  fails(() => new XmlReader("text").text(), /ends inside an element/);
  fails(
    () => new XmlReader("<![CDATA[x").text(),
    /CDATA section is not closed/,
  );
  fails(() => new XmlReader("a<?pi?>").text(), /processing instruction/);
});

Deno.test("XmlReader.tag() reads open, close and empty tags, checking and ignoring attributes", () => {
  const tags = (text: string) => {
    const reader = new XmlReader(text);
    const out = [];
    while (reader.offset < text.length) {
      reader.misc();
      if (reader.offset < text.length) out.push(reader.tag());
    }
    return out;
  };
  assert.deepEqual(tags("<a><b/></a >"), [
    { name: "a", kind: "open" },
    { name: "b", kind: "empty" },
    { name: "a", kind: "close" },
  ]);
  assert.deepEqual(
    tags(`<v x="1" y = 'a&amp;b' >`),
    [{ name: "v", kind: "open" }],
  );
  assert.deepEqual(tags("<dateTime.iso8601/>"), [
    { name: "dateTime.iso8601", kind: "empty" },
  ]);
  fails(() => tags("<a x=1>"), /an attribute value in <a> is not quoted/);
  fails(() => tags("<a x>"), /an attribute in <a> has no value/);
  fails(() => tags('<a x="<">'), /an attribute value contains '<'/);
  fails(() => tags('<a x="&bad;">'), /the entity "&bad;" is not allowed/);
  fails(() => tags('<a x="1>'), /an attribute value is not closed/);
  fails(() => tags('<a x="1"y="2">'), /the tag <a> is malformed/);
  fails(() => tags('</a x="1">'), /the tag <\/a> is malformed/);
  fails(() => tags("< a>"), /expected an element name after '<'/);
  fails(() => tags("<a"), /the tag <a> is malformed/);
  fails(() => new XmlReader("text").tag(), /expected a tag, found text "text"/);
  fails(() => new XmlReader("").tag(), /ends where a tag was expected/);
});

Deno.test("XmlReader.open(), close(), leaf() and end() expect a structure and say where it breaks", () => {
  const reader = new XmlReader(
    "<r> <name>n&lt;1</name> <e/> <x></x></r> <!-- -->",
  );
  assert.equal(reader.open("r"), false);
  assert.equal(reader.atClose(), false);
  assert.equal(reader.open("name"), false);
  assert.equal(reader.leaf({ name: "name", kind: "open" }), "n<1");
  assert.equal(reader.open("e"), true);
  assert.equal(reader.leaf({ name: "e", kind: "empty" }), "");
  assert.throws(() => reader.close("r"), {
    message:
      "Cannot decode the XML-RPC message: expected </r>, found <x> (at offset 29)",
  });
  // The failed close did not move the cursor past <x>.
  assert.equal(reader.open("x"), false);
  assert.equal(reader.atClose(), true);
  reader.close("x");
  reader.close("r");
  reader.end();
  fails(() => {
    const extra = new XmlReader("<a/><b/>");
    extra.open("a");
    extra.end();
  }, /content after the root element \(at offset 4\)/);
  fails(() => new XmlReader("</a>").open("a"), /expected <a>, found <\/a>/);
});

Deno.test("XmlReader.fail() and failAt() name the offset; describe() shows a tag", () => {
  const reader = new XmlReader("<a>text</a>");
  reader.open("a");
  assert.throws(() => reader.fail("bad", "too-large"), {
    name: "ProtocolError",
    reason: "too-large",
    message: "Cannot decode the XML-RPC message: bad (at offset 3)",
  });
  assert.throws(() => reader.failAt(1, "here"), {
    message: "Cannot decode the XML-RPC message: here (at offset 1)",
  });
  assert.equal(reader.offset, 1);
  assert.equal(describe({ name: "x", kind: "empty" }), "<x>");
  assert.equal(describe({ name: "x", kind: "close" }), "</x>");
  assert.equal(
    describe({ name: "n".repeat(50), kind: "open" }),
    `<${"n".repeat(40)}>`,
  );
});
