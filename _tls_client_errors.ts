// Private: what connectTls() makes of a failure, a TlsError naming the
// cause and the fix: handshake errors from Deno.connectTls (rustls's words
// mapped to a TlsFailure), and the bare close or alert by which a server
// refuses our client certificate (refusalError, also used by the
// connection for its first read or write).
import { TlsError } from "./tls.ts";

/** Maps an EOF/reset/alert at the start of a connection to a TlsError. */
export function refusalError(
  error: unknown,
  sentCert: boolean,
  server: string,
): TlsError | null {
  const message = (error as Error)?.message ?? "";
  const alert = /received fatal alert: (\w+)/.exec(message)?.[1];
  if (
    alert === "CertificateRequired" ||
    (!sentCert && alert === "HandshakeFailure")
  ) {
    return new TlsError(
      `Cannot use the TLS connection to ${server}: the server requires a client certificate and we sent none; pass \`cert\` and \`key\` (or \`certFile\`/\`keyFile\`) with a certificate signed by a CA the server trusts`,
      "certificate-required",
      { cause: error },
    );
  }
  const eof = error instanceof Deno.errors.UnexpectedEof ||
    /close_notify|unexpected eof/i.test(message);
  const bareClose = eof || error instanceof Deno.errors.ConnectionReset;
  if (!sentCert) {
    if (!eof || alert) return null;
    // A node:tls server (connauth's listenTls among them) that requires a
    // client certificate refuses one that sent none this way: no alert,
    // just a close without close_notify right after the handshake.
    return new TlsError(
      `Cannot use the TLS connection to ${server}: the server closed it before sending anything, without a TLS close_notify: most likely it requires a client certificate and we sent none (a node:tls server refuses that way, with no alert); pass \`cert\` and \`key\` (or \`certFile\`/\`keyFile\`) with a certificate signed by a CA the server trusts`,
      "certificate-required",
      { cause: error },
    );
  }
  if (alert || bareClose) {
    return new TlsError(
      `Cannot use the TLS connection to ${server}: the server refused our client certificate (${
        alert
          ? `alert ${alert}`
          : "it closed the connection right after the handshake"
      }); use a certificate signed by a CA the server trusts (its \`clientCa\`), with extended key usage clientAuth, still valid, and allowed by the server's list`,
      "certificate-refused",
      { cause: error },
    );
  }
  return null;
}

/** Maps a `Deno.connectTls` handshake error to a TlsError naming cause and fix. */
export function handshakeError(
  error: unknown,
  server: string,
  hostname: string,
  customCa: boolean,
  sentCert: boolean,
): unknown {
  if (!(error instanceof Error)) return error;
  if (error.name === "TimeoutError" || error.name === "AbortError") {
    return error;
  }
  const message = error.message;
  const action = `Cannot connect with TLS to ${server}`;
  const ca = customCa
    ? "pass the CA certificate that signed it in `caCerts` (or `caFile`)"
    : "Deno's default roots (the Mozilla roots bundled with Deno, or the system's with DENO_TLS_CA_STORE=system) do not include its issuer; pass the CA certificate in `caCerts` (for a development set: certs/ca.pem)";
  if (/UnknownIssuer|UnknownCA|self.signed|BadSignature/i.test(message)) {
    return new TlsError(
      `${action}: the server's certificate is signed by an unknown certificate authority; ${ca}`,
      "unknown-ca",
      { cause: error },
    );
  }
  if (/NotValidForName|not valid for name|hostname/i.test(message)) {
    return new TlsError(
      `${action}: the server's certificate is not valid for "${hostname}"; connect with a name in its subject alternative names, or reissue it with "${hostname}" as a SAN (the CN is not checked)`,
      "hostname-mismatch",
      { cause: error },
    );
  }
  if (/expired/i.test(message)) {
    return new TlsError(
      `${action}: the server's certificate has expired; renew it on the server (development: deno task certs --force)`,
      "expired",
      { cause: error },
    );
  }
  // rustls: "certificate not valid yet: verification time N (UNIX), but
  // certificate is not valid before M"; older Deno: "NotValidYet".
  if (/NotValidYet|not valid yet/i.test(message)) {
    const start = /not valid before (\d+)/.exec(message)?.[1];
    const from = start === undefined
      ? ""
      : ` (it is valid from ${new Date(Number(start) * 1000).toISOString()})`;
    return new TlsError(
      `${action}: the server's certificate is not valid yet${from}; check the clocks of both machines or the certificate's start date`,
      "not-yet-valid",
      { cause: error },
    );
  }
  if (/UnsupportedCertVersion/i.test(message)) {
    return new TlsError(
      `${action}: the server's certificate is X.509 version 1 (no extensions, so no SANs or key usage), which is refused; reissue it as version 3 (openssl x509 -req ... -extfile with subjectAltName, or deno task certs)`,
      "version-1",
      { cause: error },
    );
  }
  if (/CaUsedAsEndEntity/i.test(message)) {
    return new TlsError(
      `${action}: the server presents a CA certificate (basicConstraints CA:TRUE, what \`openssl req -new -x509\` makes by default) as its own certificate; create a CA and issue the server a leaf certificate from it (deno task certs)`,
      "ca-as-leaf",
      { cause: error },
    );
  }
  if (/KeyMismatch|keys may not be consistent/i.test(message)) {
    return new TlsError(
      `${action}: our client key does not belong to our client certificate; pass the key generated together with \`cert\``,
      "key-mismatch",
      { cause: error },
    );
  }
  const refusal = refusalError(error, sentCert, server);
  if (refusal) return refusal;
  if (
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.NotCapable
  ) return error;
  if (
    error instanceof Deno.errors.InvalidData ||
    /alert|certificate/i.test(message)
  ) {
    return new TlsError(
      `${action}: the TLS handshake failed: ${message}`,
      "handshake",
      { cause: error },
    );
  }
  return error;
}
