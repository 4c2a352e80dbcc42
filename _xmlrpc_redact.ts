// Private: what the XML-RPC client's messages may repeat of what it was
// given or answered, without its credentials: a URL that does not parse
// with its user name and password masked, and the start of a server's
// error page on one line with every credential the client sends masked
// (a debugging page or a proxy may echo the request's headers).

/**
 * A URL that does not parse, for a message: everything between its scheme
 * and its last "@" masked. Not only up to the first "/", "?" or "#": a
 * password holding one of them unencoded is the usual reason such a URL
 * does not parse.
 */
export function maskUserinfo(text: string): string {
  const at = text.lastIndexOf("@");
  if (at === -1) return text;
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(text)?.[0] ?? "";
  return `${scheme}***${text.slice(at)}`;
}

/**
 * The texts of the client's credentials that a server's error page may
 * echo, to mask them in a message: every header value but the content
 * type (custom ones may be tokens), the basic-auth token and password (as
 * is and percent-encoded). Longest first, so that a text holding another
 * is masked whole; none under 3 characters (masking those would garble
 * the message and hide nothing).
 */
export function credentialTexts(
  headers: Headers,
  auth: { username: string; password: string } | undefined,
): string[] {
  const texts = new Set<string>();
  for (const [name, value] of headers) {
    if (name === "content-type") continue;
    texts.add(value);
    // "Basic <token>", "Bearer <token>": the token on its own too.
    const token = /^[A-Za-z]+ +(\S+)$/.exec(value)?.[1];
    if (name === "authorization" && token !== undefined) texts.add(token);
  }
  if (auth !== undefined) {
    texts.add(auth.password);
    texts.add(encodeURIComponent(auth.password));
  }
  return [...texts].filter((text) => text.length >= 3)
    .sort((a, b) => b.length - a.length);
}

/**
 * The start of an HTTP error page, for a message: the client's own
 * credentials masked (a debugging page or a proxy may echo the request's
 * headers), on one line (no line break, control character or
 * bidirectional override from the server reaches a log), at most 200
 * characters.
 */
export function pageExcerpt(
  head: Uint8Array,
  credentials: readonly string[],
): string {
  let text = new TextDecoder().decode(head);
  for (const credential of credentials) {
    text = text.replaceAll(credential, "***");
  }
  return text
    .replace(
      /[\p{Cc}\p{Zl}\p{Zp}\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu,
      " ",
    )
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, 200)
    .trim();
}
