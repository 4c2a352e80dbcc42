// Private: the `Request -> Response` handler behind createXmlRpcHandler()
// in xmlrpc.ts: reads a POSTed `<methodCall>` under a size limit and a
// deadline, dispatches it to a registered method and answers with its
// result or a fault (`system.multicall`: each call in turn, an answer
// each); a refusal is an HTTP status (405, 408, 413) or a fault, never a
// throw. xmlrpc.ts imports this file: what comes from it
// (XmlRpcFault, XmlRpcFaultCode) is used only inside functions.

import { ProtocolError } from "./errors.ts";
import { utf8 } from "./_bytes.ts";
import { deadline } from "./_deadline.ts";
import { checkLimit, checkTimeout } from "./_options.ts";
import { UnsupportedEncoding } from "./_xml_reader.ts";
import { readBody, TooLarge } from "./_xmlrpc_body.ts";
import { decodeCall } from "./_xmlrpc_decode.ts";
import {
  encodeArrayResponse,
  encodeFaultResponse,
  encodeMulticallAnswer,
  encodeResponse,
  type FaultAnswer,
  type MulticallAnswer,
} from "./_xmlrpc_encode.ts";
import { methodTable, MULTICALL, multicallItems } from "./_xmlrpc_system.ts";
import {
  checkMaxDepth,
  DEFAULT_MAX_BODY_SIZE,
  INT_MAX,
  INT_MIN,
  quote,
} from "./_xmlrpc_rules.ts";
import {
  type CreateXmlRpcHandlerOptions,
  type XmlRpcCall,
  type XmlRpcErrorInfo,
  XmlRpcFault,
  XmlRpcFaultCode,
  type XmlRpcMethod,
  type XmlRpcMethodDefinition,
  type XmlRpcValue,
} from "./xmlrpc.ts";

/** Default deadline for receiving a request body, in milliseconds. */
const DEFAULT_BODY_TIMEOUT = 30_000;

/** Default most calls in one `system.multicall`. */
const DEFAULT_MAX_MULTICALLS = 100;

const XML_HEADERS = { "content-type": "text/xml; charset=utf-8" };

/** An XML document as a 200 response with its length. */
function xmlResponse(xml: string): Response {
  const body = utf8(xml);
  return new Response(body, {
    headers: { ...XML_HEADERS, "content-length": String(body.byteLength) },
  });
}

/** A fault as a 200 response. */
function faultResponse(code: number, message: string): Response {
  return xmlResponse(encodeFaultResponse(code, message));
}

/**
 * What a fault says about a thrown value: `"<name>: <message>"` for an
 * `Error` (just the message with `withName` false), its string form for
 * anything else. Never throws, whatever was thrown (a null-prototype
 * object, a getter that throws).
 */
function describeThrown(error: unknown, withName: boolean): string {
  try {
    if (error instanceof Error) {
      return withName
        ? `${String(error.name)}: ${String(error.message)}`
        : String(error.message);
    }
    return withName ? `Error: ${String(error)}` : String(error);
  } catch {
    return withName
      ? "Error: a thrown value with no string form"
      : "a thrown value with no string form";
  }
}

/** The handler (see createXmlRpcHandler() in xmlrpc.ts). */
export function xmlRpcHandler(
  methods: Record<string, XmlRpcMethod | XmlRpcMethodDefinition>,
  options: CreateXmlRpcHandlerOptions,
): (request: Request) => Promise<Response> {
  const maxBodySize = checkLimit(
    options.maxBodySize,
    DEFAULT_MAX_BODY_SIZE,
    "maxBodySize",
  );
  const maxDepth = checkMaxDepth(options.maxDepth);
  const bodyTimeout = checkTimeout(
    options.bodyTimeout,
    DEFAULT_BODY_TIMEOUT,
    "bodyTimeout",
  );
  const maxMulticalls = checkLimit(
    options.maxMulticalls,
    DEFAULT_MAX_MULTICALLS,
    "maxMulticalls",
  );
  const multicall = options.multicall ?? false;
  const hook = options.onError;
  const onError = (error: unknown, info: XmlRpcErrorInfo): void => {
    try {
      hook?.(error, info);
    } catch {
      // A failing hook must not cost the client its answer.
    }
  };
  const table = methodTable(methods, {
    introspection: options.introspection ?? true,
    multicall,
  });

  /** Runs one call: its value, or the fault it costs the client. */
  const run = async (
    method: string,
    params: XmlRpcValue[],
  ): Promise<MulticallAnswer> => {
    const fn = table.get(method)?.fn;
    if (fn === undefined || fn === null) {
      // null: system.multicall, which only the top level runs.
      return {
        faultCode: XmlRpcFaultCode.METHOD_NOT_FOUND,
        faultString: `Cannot call ${quote(method)}: no such method`,
      };
    }
    try {
      return { value: await fn(...params) };
    } catch (error) {
      if (
        error instanceof XmlRpcFault && Number.isInteger(error.faultCode) &&
        error.faultCode >= INT_MIN && error.faultCode <= INT_MAX
      ) {
        return { faultCode: error.faultCode, faultString: error.faultString };
      }
      onError(error, { phase: "method", method });
      return {
        faultCode: XmlRpcFaultCode.APPLICATION,
        faultString: describeThrown(error, true),
      };
    }
  };

  /** A value that cannot be encoded, as the fault -32603 it becomes. */
  const unencodable = (error: unknown, method: string): FaultAnswer => {
    onError(error, { phase: "method", method });
    return {
      faultCode: XmlRpcFaultCode.INTERNAL_ERROR,
      faultString: `Cannot encode the result of ${quote(method)}: ${
        describeThrown(error, false)
      }`,
    };
  };

  /** system.multicall: each call in turn, each answer on its own. */
  const runMulticall = async (params: XmlRpcValue[]): Promise<Response> => {
    let items;
    try {
      items = multicallItems(params, maxMulticalls);
    } catch (error) {
      const fault = error as XmlRpcFault;
      return faultResponse(fault.faultCode, fault.faultString);
    }
    const values: string[] = [];
    for (const item of items) {
      if ("refused" in item) {
        values.push(encodeMulticallAnswer(item.refused, { maxDepth }));
        continue;
      }
      const answer = await run(item.method, item.params);
      try {
        values.push(encodeMulticallAnswer(answer, { maxDepth }));
      } catch (error) {
        values.push(
          encodeMulticallAnswer(unencodable(error, item.method), { maxDepth }),
        );
      }
    }
    return xmlResponse(encodeArrayResponse(values));
  };

  return async (request: Request): Promise<Response> => {
    if (request.method !== "POST") {
      await request.body?.cancel().catch(() => {});
      return new Response(
        "Cannot serve the request: XML-RPC accepts only POST\n",
        { status: 405, headers: { allow: "POST" } },
      );
    }
    let call: XmlRpcCall;
    // Not request.signal: Deno.serve aborts it after every response, and a
    // client that goes away fails the body read on its own.
    const limit = deadline(
      bodyTimeout,
      undefined,
      "read the XML-RPC request body",
    );
    try {
      const body = await readBody(
        request,
        maxBodySize,
        "the request body",
        false,
        limit.signal,
      );
      call = decodeCall(body, { maxBodySize, maxDepth });
    } catch (error) {
      if (limit.signal.aborted && error === limit.signal.reason) {
        return new Response(`${(error as DOMException).message}\n`, {
          status: 408,
          headers: { connection: "close" },
        });
      }
      if (error instanceof TooLarge) {
        return new Response(`${error.message}\n`, {
          status: 413,
          headers: { connection: "close" },
        });
      }
      if (error instanceof ProtocolError) {
        return faultResponse(
          error instanceof UnsupportedEncoding
            ? XmlRpcFaultCode.UNSUPPORTED_ENCODING
            : XmlRpcFaultCode.NOT_WELLFORMED,
          error.message,
        );
      }
      // The connection failed while reading: nothing to answer.
      onError(error, { phase: "request" });
      throw error;
    } finally {
      limit[Symbol.dispose]();
    }
    if (multicall && call.method === MULTICALL) {
      return await runMulticall(call.params);
    }
    const answer = await run(call.method, call.params);
    if (!("value" in answer)) {
      return faultResponse(answer.faultCode, answer.faultString);
    }
    try {
      return xmlResponse(encodeResponse(answer.value, { maxDepth }));
    } catch (error) {
      const fault = unencodable(error, call.method);
      return faultResponse(fault.faultCode, fault.faultString);
    }
  };
}
