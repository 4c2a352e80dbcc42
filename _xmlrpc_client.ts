// Private: the XML-RPC client behind createXmlRpcClient() in xmlrpc.ts: a
// call is a `fetch` POST on the client's own connection pool
// (`Deno.createHttpClient`, which also carries the trusted CAs and the
// client certificate), under a deadline and a signal, its answer read
// under `maxBodySize` and decoded (a fault is thrown as an XmlRpcFault).

import { ProtocolError } from "./errors.ts";
import { deadline, DEFAULT_TIMEOUT } from "./_deadline.ts";
import { checkLimit, checkTimeout } from "./_options.ts";
import { ERROR_BODY_LIMIT, readBody } from "./_xmlrpc_body.ts";
import { decodeResponse } from "./_xmlrpc_decode.ts";
import { encodeCall } from "./_xmlrpc_encode.ts";
import {
  checkMaxDepth,
  DEFAULT_MAX_BODY_SIZE,
  quote,
} from "./_xmlrpc_rules.ts";
import type {
  CreateXmlRpcClientOptions,
  XmlRpcClient,
  XmlRpcValue,
} from "./xmlrpc.ts";

/**
 * The client for `url` (see createXmlRpcClient() in xmlrpc.ts).
 *
 * @throws {TypeError} When `url` is not http(s), or only one of `cert` and
 * `key` is given.
 */
export function openClient(
  url: string | URL,
  options: CreateXmlRpcClientOptions,
): XmlRpcClient {
  const parsed = new URL(url);
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    throw new TypeError(
      `Cannot create the XML-RPC client: expected an https:// or http:// URL, got ${
        quote(parsed.protocol)
      }`,
    );
  }
  return new Client(parsed, options);
}

/** An XmlRpcClient on its own connection pool. */
class Client implements XmlRpcClient {
  readonly url: URL;
  readonly #http: Deno.HttpClient;
  readonly #timeout: number;
  readonly #signal?: AbortSignal;
  readonly #decode: { maxBodySize: number; maxDepth: number };
  #closed = false;

  constructor(url: URL, options: CreateXmlRpcClientOptions) {
    this.url = url;
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
    if ((options.cert === undefined) !== (options.key === undefined)) {
      throw new TypeError(
        "Cannot create the XML-RPC client: cert and key go together; pass both or neither",
      );
    }
    this.#http = options.cert !== undefined
      ? Deno.createHttpClient({
        caCerts: options.caCerts,
        cert: options.cert,
        key: options.key!,
      })
      : Deno.createHttpClient({ caCerts: options.caCerts });
  }

  async call(method: string, ...params: unknown[]): Promise<XmlRpcValue> {
    if (this.#closed) {
      throw new TypeError(
        `Cannot call ${quote(method)}: the XML-RPC client is closed`,
      );
    }
    const body = encodeCall(method, params, {});
    using d = deadline(this.#timeout, this.#signal, `call ${quote(method)}`);
    try {
      const response = await fetch(this.url, {
        method: "POST",
        headers: { "content-type": "text/xml" },
        body,
        client: this.#http,
        signal: d.signal,
      });
      if (response.status !== 200) {
        // Only the start, for the message: an error page can be endless.
        const head = await readBody(
          response,
          ERROR_BODY_LIMIT,
          "the error body",
          true,
        );
        const detail = new TextDecoder().decode(head).slice(0, 200).trim();
        throw new ProtocolError(
          `Cannot call ${
            quote(method)
          }: the server answered HTTP ${response.status}${
            detail ? `: ${detail}` : ""
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
