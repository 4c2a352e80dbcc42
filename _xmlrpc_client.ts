// Private: the XML-RPC client behind createXmlRpcClient() in xmlrpc.ts: a
// call is a `fetch` POST on the client's own connection pool
// (`Deno.createHttpClient`, which also carries the trusted CAs and the
// client certificate), under a deadline and signals (the client's and the
// call's), its answer read under `maxBodySize` and decoded (a fault is
// thrown as an XmlRpcFault); `system.multicall` sends several calls in one
// and hands back a value or an XmlRpcFault for each. A failure to reach
// the server names the URL (never its user name or password) and the
// likely cause. xmlrpc.ts imports this file: what comes from it
// (XmlRpcFault) is used only inside functions.

import { ProtocolError } from "./errors.ts";
import { deadline, DEFAULT_TIMEOUT } from "./_deadline.ts";
import { checkLimit, checkOptionsObject, checkTimeout } from "./_options.ts";
import { ERROR_BODY_LIMIT, readBody } from "./_xmlrpc_body.ts";
import {
  parseUrl,
  redactUrl,
  requestHeaders,
  tlsOptions,
} from "./_xmlrpc_client_options.ts";
import { decodeResponse } from "./_xmlrpc_decode.ts";
import { credentialTexts, pageExcerpt } from "./_xmlrpc_redact.ts";
import { encodeCall } from "./_xmlrpc_encode.ts";
import {
  checkMaxDepth,
  DEFAULT_MAX_BODY_SIZE,
  METHOD_NAME,
  quote,
} from "./_xmlrpc_rules.ts";
import {
  type CreateXmlRpcClientOptions,
  type XmlRpcCall,
  type XmlRpcCallOptions,
  type XmlRpcClient,
  XmlRpcFault,
  type XmlRpcValue,
} from "./xmlrpc.ts";

/**
 * The client for `url` (see createXmlRpcClient() in xmlrpc.ts).
 *
 * @throws {TypeError} When `url` is not http(s), or an option is invalid.
 */
export function openClient(
  url: string | URL,
  options: CreateXmlRpcClientOptions,
): XmlRpcClient {
  return new Client(url, options);
}

/**
 * What a failed `fetch` (a TypeError whose cause is Deno's "error sending
 * request for url (...): ...") says, as an error naming `where`, with the
 * fix for the usual causes.
 */
function unreachable(error: TypeError, action: string, where: string): Error {
  const detail = String((error.cause as Error | undefined)?.message ?? "")
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \(Connect\): /, "") || error.message;
  const cannot = `Cannot ${action} on ${where}`;
  if (/connection refused/i.test(detail)) {
    return new Deno.errors.ConnectionRefused(
      `${cannot}: connection refused; is the server running?`,
      { cause: error },
    );
  }
  let hint = "";
  if (/dns error|failed to lookup/i.test(detail)) {
    hint = "; check the host name in the URL";
  } else if (/InvalidContentType|corrupt message/i.test(detail)) {
    hint = "; the server does not speak TLS: use an http:// URL";
  } else if (/UnknownIssuer|invalid peer certificate/i.test(detail)) {
    hint =
      "; the server's certificate is not trusted: pass the CA that signed it in caCerts or caFile";
  } else if (/CertificateRequired|certificate required/i.test(detail)) {
    hint =
      "; the server requires a client certificate: pass cert and key (or certFile and keyFile)";
  }
  return new TypeError(`${cannot}: ${detail}${hint}`, { cause: error });
}

/** An XmlRpcClient on its own connection pool. */
class Client implements XmlRpcClient {
  readonly url: URL;
  readonly #where: string;
  readonly #headers: Headers;
  /** Texts masked in an error page's excerpt (see pageExcerpt()). */
  readonly #credentials: readonly string[];
  readonly #http: Deno.HttpClient;
  readonly #timeout: number;
  readonly #signal?: AbortSignal;
  readonly #decode: { maxBodySize: number; maxDepth: number };
  #closed = false;

  constructor(url: string | URL, options: CreateXmlRpcClientOptions) {
    checkOptionsObject(options, "create the XML-RPC client");
    const parsed = parseUrl(url);
    this.url = parsed.url;
    this.#where = redactUrl(parsed.url);
    this.#headers = requestHeaders(options, parsed.userinfo);
    this.#credentials = credentialTexts(
      this.#headers,
      options.basicAuth ?? parsed.userinfo,
    );
    this.#timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT, "timeout");
    this.#signal = options.signal;
    this.#decode = {
      maxBodySize: checkLimit(
        options.maxBodySize,
        DEFAULT_MAX_BODY_SIZE,
        "maxBodySize",
      ),
      maxDepth: checkMaxDepth(options.maxDepth),
    };
    const { caCerts, cert, key } = tlsOptions(options);
    this.#http = cert !== undefined && key !== undefined
      ? Deno.createHttpClient({ caCerts, cert, key })
      : Deno.createHttpClient({ caCerts });
  }

  call(method: string, ...params: unknown[]): Promise<XmlRpcValue> {
    return this.invoke(method, params);
  }

  invoke(
    method: string,
    params: readonly unknown[] = [],
    options: XmlRpcCallOptions = {},
  ): Promise<XmlRpcValue> {
    if (!Array.isArray(params)) {
      return Promise.reject(
        new TypeError(
          `Cannot call ${
            quote(String(method))
          }: params must be an array, got ${typeof params}`,
        ),
      );
    }
    return this.#post(method, params, options, `call ${quote(method)}`);
  }

  async multicall(
    calls: readonly { method: string; params?: readonly unknown[] }[],
    options: XmlRpcCallOptions = {},
  ): Promise<(XmlRpcValue | XmlRpcFault)[]> {
    if (!Array.isArray(calls)) {
      throw new TypeError(
        "Cannot run system.multicall: expected an array of { method, params }",
      );
    }
    const list = calls.map((call, index) => {
      const { method, params = [] } = (call ?? {}) as Partial<XmlRpcCall>;
      if (
        typeof method !== "string" || !METHOD_NAME.test(method) ||
        !Array.isArray(params)
      ) {
        throw new TypeError(
          `Cannot run system.multicall: call ${
            index + 1
          } must be { method, params? } with a method name of 1 to 256 of A-Z a-z 0-9 _ . : / and an array of params`,
        );
      }
      return { methodName: method, params };
    });
    const answers = await this.#post(
      "system.multicall",
      [list],
      options,
      `run system.multicall (${calls.length} calls)`,
    );
    const malformed = (detail: string) =>
      new ProtocolError(
        `Cannot run system.multicall on ${this.#where}: ${detail}`,
        "malformed",
      );
    if (!Array.isArray(answers) || answers.length !== calls.length) {
      throw malformed(
        `expected an array of ${calls.length} answers, got ${
          Array.isArray(answers) ? `${answers.length}` : typeof answers
        }`,
      );
    }
    return answers.map((answer, index) => {
      if (Array.isArray(answer) && answer.length === 1) return answer[0];
      if (
        answer !== null && typeof answer === "object" &&
        !Array.isArray(answer) && !(answer instanceof Date) &&
        !(answer instanceof Uint8Array) &&
        typeof answer.faultCode === "number" &&
        typeof answer.faultString === "string"
      ) {
        return new XmlRpcFault(answer.faultCode, answer.faultString);
      }
      throw malformed(
        `answer ${
          index + 1
        } is neither a one-element array nor a { faultCode, faultString } struct`,
      );
    });
  }

  async #post(
    method: string,
    params: readonly unknown[],
    options: XmlRpcCallOptions,
    action: string,
  ): Promise<XmlRpcValue> {
    if (this.#closed) {
      throw new TypeError(`Cannot ${action}: the XML-RPC client is closed`);
    }
    checkOptionsObject(options, action);
    const timeout = checkTimeout(options.timeout, this.#timeout, "timeout");
    const signals = [this.#signal, options.signal].filter((s) =>
      s !== undefined
    );
    const body = encodeCall(method, params, {});
    using d = deadline(
      timeout,
      signals.length > 1 ? AbortSignal.any(signals) : signals[0],
      action,
    );
    try {
      let response: Response;
      try {
        response = await fetch(this.url, {
          method: "POST",
          headers: this.#headers,
          body,
          client: this.#http,
          signal: d.signal,
          // As Python's ServerProxy: a redirect is an error, never a call
          // sent (with its credentials) somewhere else.
          redirect: "manual",
        });
      } catch (error) {
        if (error instanceof TypeError && !d.signal.aborted) {
          throw unreachable(error, action, this.#where);
        }
        throw error;
      }
      if (response.status !== 200) {
        // Only the start, for the message: an error page can be endless.
        const head = await readBody(
          response,
          ERROR_BODY_LIMIT,
          "the error body",
          true,
        );
        const detail = response.status >= 300 && response.status < 400
          ? this.#redirect(response.headers.get("location"))
          : pageExcerpt(head, this.#credentials);
        throw new ProtocolError(
          `Cannot ${action}: ${this.#where} answered HTTP ${response.status}${
            detail ? `: ${detail}` : ""
          }${
            response.status === 401
              ? "; pass the credentials in basicAuth (or headers)"
              : ""
          }`,
          response.status === 413 ? "too-large" : "malformed",
        );
      }
      const bytes = await readBody(
        response,
        this.#decode.maxBodySize,
        "the response body",
      );
      return decodeResponse(bytes, this.#decode);
    } catch (error) {
      if (d.signal.aborted) throw d.signal.reason;
      throw error;
    }
  }

  /** What a redirect's message says: where to, without userinfo. */
  #redirect(location: string | null): string {
    let target = "somewhere else";
    try {
      if (location !== null) target = redactUrl(new URL(location, this.url));
    } catch {
      // an unparsable Location: not repeated
    }
    return `a redirect to ${target}, which XML-RPC calls do not follow; use that URL if you trust it`;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#http.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
