// The public surface of connauth's XML-RPC support: its types, the codec's
// entry points, the handler and the client. Most of this file is their
// documentation and examples; the machinery lives in _xml_reader.ts and
// _xmlrpc_{rules,decode,encode,body,handler,system,client,client_options,
// redact}.ts, one concept each.
/**
 * XML-RPC as Python's `xmlrpc.client` speaks it: a strict, bounded codec
 * (with `<i8>` as `bigint`), a `Request` -> `Response` handler that
 * dispatches registered methods (with Python's `system.multicall` and
 * introspection methods), and a client on `fetch` that reuses connections,
 * can present a client certificate (mutual TLS), sends custom headers and
 * basic auth, takes a deadline and a signal per call, and batches calls
 * with `multicall()`.
 *
 * ## The JavaScript <-> XML-RPC mapping
 *
 * | JavaScript | XML-RPC | back to JavaScript |
 * | --- | --- | --- |
 * | integer `number` in -2^31..2^31-1 | `<int>` | `number` |
 * | other finite `number` | `<double>` | `number` |
 * | {@linkcode XmlRpcDouble} | `<double>` | `number` |
 * | `bigint` in -2^31..2^31-1 | `<int>` | `number` |
 * | other `bigint` in -2^63..2^63-1 | `<i8>` | `number` if safe, else `bigint` |
 * | `boolean` | `<boolean>` | `boolean` |
 * | `string` | `<string>` | `string` |
 * | `Date` (UTC, whole seconds) | `<dateTime.iso8601>` | `Date` |
 * | `Uint8Array` | `<base64>` | `Uint8Array` |
 * | `null`, `undefined` | `<nil/>` | `null` |
 * | `Array` | `<array>` | `Array` |
 * | plain object | `<struct>` | plain object |
 *
 * Decoding also accepts `<i4>`, a bare `<value>text</value>` (a string),
 * `<value/>` (the empty string) and Apache XML-RPC's prefixed `<ex:nil/>`
 * and `<ex:i8>` (read by their local name, as Python does; we write the
 * plain `<nil/>` and `<i8>`, as Python does). A struct member whose value
 * is `undefined` is left out, as `JSON.stringify` does. `NaN`, `Infinity`,
 * a `bigint` outside the `<i8>` range, strings holding characters that XML
 * 1.0 cannot carry (send those as `Uint8Array`), class instances and cycles
 * are refused with a `TypeError` or `RangeError` when encoding.
 * A `Date` loses its milliseconds, as XML-RPC carries whole seconds; a
 * `dateTime.iso8601` without a zone (the only form Python sends) is read as
 * UTC, one with a zone is converted to UTC and refused when that moves it
 * outside the years 0000 to 9999 (it could not be encoded again, so a stored
 * copy could never be read back).
 *
 * ### 64-bit integers
 *
 * An `<i8>` decodes to a `number` when it is a safe integer (within
 * ±(2^53 - 1), so exact), else to a `bigint`: code that only ever sees
 * small values keeps plain numbers, and a large value is never rounded.
 * Test with `typeof` where both can come. One beyond the signed 64-bit range
 * is refused (fault -32700 at the server). To send a 64-bit integer pass a
 * `bigint`: it is written as `<int>` when it fits 32 bits, else `<i8>`. A
 * `number` is never written as `<i8>` (beyond 32 bits it stays a
 * `<double>`, as before). Python's `xmlrpc.client` reads `<i8>` (3.x), but
 * its marshaller refuses to write an `int` beyond 32 bits (`OverflowError:
 * int exceeds XML-RPC limits`; Python's server answers that as fault 1), so
 * a Python peer sends large integers as a double or a string.
 *
 * ### Doubles that are whole numbers
 *
 * A JavaScript `number` does not say whether it was an integer or a float:
 * `3` and `3.0` are the same value. A whole `number` in the `int` range is
 * written as `<int>`, so a Python `3.0` we echo back reaches Python as the
 * `int` `3` (equal in Python, but of another type). Wrap a value in
 * {@linkcode XmlRpcDouble} to write it as `<double>` (`3.0`) whatever its
 * value. The decoder cannot keep the difference for you: it returns plain
 * numbers, which is what code on them expects.
 *
 * ## Hostile input
 *
 * The decoder is hand-written and accepts exactly the XML that XML-RPC
 * needs. It refuses a DOCTYPE (so no entity declarations, no external
 * entities, no expansion), any entity reference other than the five
 * predefined ones and numeric character references, processing
 * instructions, encodings other than UTF-8, bodies over `maxBodySize`
 * (1 MiB by default), nesting deeper than `maxDepth` (64 by default) and
 * numbers out of range. Every refusal is a
 * {@linkcode ProtocolError}; {@linkcode createXmlRpcHandler} answers it with an
 * XML-RPC fault (HTTP 413 for an oversized body), and its scanning is
 * linear in the input, so hostile input cannot make it hang. A body that
 * stops arriving is answered with HTTP 408 after `bodyTimeout` (30 s by
 * default); closing that client's socket is the HTTP server's part
 * (`serveHttps()` does; `Deno.serve` has no request deadline of its own). A
 * method that throws, or a hook that does, costs the client a fault, never
 * the server.
 *
 * @example A server and a client
 * ```ts
 * import assert from "node:assert/strict";
 * import { createXmlRpcClient, createXmlRpcHandler } from "./xmlrpc.ts";
 *
 * const handler = createXmlRpcHandler({
 *   add: (a, b) => Number(a) + Number(b),
 * });
 * await using server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   handler,
 * );
 * await using client = createXmlRpcClient(`http://127.0.0.1:${server.addr.port}/`);
 * assert.equal(await client.call("add", 2, 3), 5);
 * ```
 *
 * @module
 */
import { openClient } from "./_xmlrpc_client.ts";
import { decodeCall, decodeResponse } from "./_xmlrpc_decode.ts";
import {
  encodeCall,
  encodeFaultResponse,
  encodeResponse,
} from "./_xmlrpc_encode.ts";
import { xmlRpcHandler } from "./_xmlrpc_handler.ts";
import type { ErrorInfo } from "./types.ts";

/** A value XML-RPC can carry, as the decoder returns it. */
export type XmlRpcValue =
  | string
  | number
  | bigint
  | boolean
  | null
  | Date
  | Uint8Array
  | XmlRpcValue[]
  | XmlRpcStruct;

/** An XML-RPC `<struct>`: a plain object of values. */
export interface XmlRpcStruct {
  /** A struct member. */
  [member: string]: XmlRpcValue;
}

/** A decoded `<methodCall>`. */
export interface XmlRpcCall {
  /** The `<methodName>`. */
  method: string;
  /** The `<params>`, in order. */
  params: XmlRpcValue[];
}

/**
 * Well-known fault codes (the "specification for fault code
 * interoperability" that Python's `xmlrpc.client` also lists), plus `1`, the
 * code Python's `SimpleXMLRPCServer` uses for an exception in a method.
 */
export const XmlRpcFaultCode = {
  /** An exception thrown by a method (Python's server uses 1 too). */
  APPLICATION: 1,
  /** The request is not well-formed XML-RPC. */
  NOT_WELLFORMED: -32700,
  /** The request's encoding is not UTF-8. */
  UNSUPPORTED_ENCODING: -32701,
  /** No such method. */
  METHOD_NOT_FOUND: -32601,
  /** The method exists but the parameters do not fit it. */
  INVALID_PARAMS: -32602,
  /** The server failed to encode the result. */
  INTERNAL_ERROR: -32603,
  /**
   * The request is XML-RPC but not a valid one (a `system.multicall` call
   * that is itself `system.multicall`).
   */
  INVALID_XMLRPC: -32600,
} as const;

/**
 * An XML-RPC fault: the error a server answers with. Throw one from a method
 * registered with {@linkcode createXmlRpcHandler} to choose the code; the client
 * from {@linkcode createXmlRpcClient} throws one when the server answers a fault.
 *
 * @example Refuse a call with a fault
 * ```ts
 * import assert from "node:assert/strict";
 * import { createXmlRpcHandler, XmlRpcFault } from "./xmlrpc.ts";
 *
 * const handler = createXmlRpcHandler({
 *   get(name) {
 *     throw new XmlRpcFault(1, `KeyError: '${name}'`);
 *   },
 * });
 * const response = await handler(
 *   new Request("http://localhost/", {
 *     method: "POST",
 *     body: "<methodCall><methodName>get</methodName><params>" +
 *       "<param><value>missing</value></param></params></methodCall>",
 *   }),
 * );
 * assert.match(await response.text(), /<int>1<\/int>.*KeyError: 'missing'/);
 * ```
 */
export class XmlRpcFault extends Error {
  /** The fault's `faultCode`. */
  readonly faultCode: number;
  /** The fault's `faultString`. */
  readonly faultString: string;

  /**
   * Creates a fault.
   *
   * @param faultCode The code (an `int`).
   * @param faultString The human-readable message.
   * @param options The standard error options (`cause`).
   */
  constructor(faultCode: number, faultString: string, options?: ErrorOptions) {
    super(`XML-RPC fault ${faultCode}: ${faultString}`, options);
    this.name = "XmlRpcFault";
    this.faultCode = faultCode;
    this.faultString = faultString;
  }
}

/**
 * A number to write as `<double>` even when it is a whole number: XML-RPC
 * tells `<int>` from `<double>`, a JavaScript `number` does not (see "Doubles
 * that are whole numbers" in the module documentation). Only the encoders
 * read it; the decoder returns plain numbers.
 *
 * @example Send 3 as a double, as Python's `3.0` is sent
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMethodResponse, XmlRpcDouble } from "./xmlrpc.ts";
 *
 * assert.match(encodeMethodResponse(3), /<int>3<\/int>/);
 * assert.match(
 *   encodeMethodResponse(new XmlRpcDouble(3)),
 *   /<double>3\.0<\/double>/,
 * );
 * ```
 */
export class XmlRpcDouble {
  /** The number. */
  readonly value: number;

  /**
   * Wraps a number.
   *
   * @param value A finite number.
   * @throws {RangeError} When `value` is `NaN` or infinite.
   * @throws {TypeError} When `value` is not a number.
   */
  constructor(value: number) {
    if (typeof value !== "number") {
      throw new TypeError(
        `Cannot create an XmlRpcDouble: expected a number, got ${typeof value}`,
      );
    }
    if (!Number.isFinite(value)) {
      throw new RangeError(
        `Cannot create an XmlRpcDouble: XML-RPC has no NaN or Infinity, got ${value}`,
      );
    }
    this.value = value;
  }
}

/** Limits for {@linkcode decodeMethodCall} and {@linkcode decodeMethodResponse}. */
export interface XmlRpcDecodeOptions {
  /**
   * Largest document accepted, in bytes (UTF-8); `Infinity` for no limit.
   *
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * Deepest nesting of arrays and structs accepted (at most 1000).
   *
   * @default {64}
   */
  maxDepth?: number;
}

/** Limits for the encoders. */
export interface XmlRpcEncodeOptions {
  /**
   * Deepest nesting of arrays and structs written (also catches cycles), at
   * most 1000.
   *
   * @default {64}
   */
  maxDepth?: number;
}

/**
 * Encodes a `<methodCall>`.
 *
 * @param method The method name (A-Z, a-z, 0-9, `_`, `.`, `:`, `/`).
 * @param params The parameters, mapped as the module documentation says.
 * @param options Encoding limits.
 * @returns The XML document.
 * @throws {TypeError} When the name is invalid or a value has no XML-RPC type.
 * @throws {RangeError} When a number, date or string cannot be carried, or
 * nesting is deeper than `maxDepth`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMethodCall } from "./xmlrpc.ts";
 *
 * assert.equal(
 *   encodeMethodCall("set", ["colour", { r: 1 }]),
 *   '<?xml version="1.0"?><methodCall><methodName>set</methodName><params>' +
 *     "<param><value><string>colour</string></value></param>" +
 *     "<param><value><struct><member><name>r</name>" +
 *     "<value><int>1</int></value></member></struct></value></param>" +
 *     "</params></methodCall>",
 * );
 * ```
 */
export function encodeMethodCall(
  method: string,
  params?: readonly unknown[],
  options?: XmlRpcEncodeOptions,
): string {
  return encodeCall(method, params ?? [], options ?? {});
}

/**
 * Encodes a successful `<methodResponse>` carrying one value.
 *
 * @param value The result, mapped as the module documentation says.
 * @param options Encoding limits.
 * @returns The XML document.
 * @throws {TypeError} When a value has no XML-RPC type.
 * @throws {RangeError} When a number, date or string cannot be carried, or
 * nesting is deeper than `maxDepth`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMethodResponse } from "./xmlrpc.ts";
 *
 * assert.equal(
 *   encodeMethodResponse([1, null]),
 *   '<?xml version="1.0"?><methodResponse><params><param><value><array>' +
 *     "<data><value><int>1</int></value><value><nil/></value></data>" +
 *     "</array></value></param></params></methodResponse>",
 * );
 * ```
 */
export function encodeMethodResponse(
  value: unknown,
  options?: XmlRpcEncodeOptions,
): string {
  return encodeResponse(value, options ?? {});
}

/**
 * Encodes a fault `<methodResponse>`.
 *
 * @param faultCode The code: an integer in the `int` range.
 * @param faultString The message (characters XML cannot carry are replaced
 * by U+FFFD, so a fault can always be sent).
 * @returns The XML document.
 * @throws {RangeError} When `faultCode` is not an `int`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMethodResponse, encodeFault, XmlRpcFault } from "./xmlrpc.ts";
 *
 * const xml = encodeFault(1, "KeyError: 'missing'");
 * assert.throws(() => decodeMethodResponse(xml), (error: XmlRpcFault) => {
 *   assert.equal(error.faultCode, 1);
 *   assert.equal(error.faultString, "KeyError: 'missing'");
 *   return true;
 * });
 * ```
 */
export function encodeFault(faultCode: number, faultString: string): string {
  return encodeFaultResponse(faultCode, faultString);
}

/**
 * Decodes a `<methodCall>`.
 *
 * @param body The document, as text or UTF-8 bytes.
 * @param options Limits.
 * @returns The method name and the parameters.
 * @throws {ProtocolError} When the document is not strict XML-RPC, is over a
 * limit (`"too-large"`), or holds a DOCTYPE, a disallowed entity or an
 * out-of-range number (`"malformed"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMethodCall } from "./xmlrpc.ts";
 *
 * const call = decodeMethodCall(
 *   "<methodCall><methodName>get</methodName><params>" +
 *     "<param><value>colour</value></param></params></methodCall>",
 * );
 * assert.deepEqual(call, { method: "get", params: ["colour"] });
 * ```
 */
export function decodeMethodCall(
  body: string | Uint8Array,
  options?: XmlRpcDecodeOptions,
): XmlRpcCall {
  return decodeCall(body, options ?? {});
}

/**
 * Decodes a `<methodResponse>`: returns its value, or throws its fault.
 *
 * @param body The document, as text or UTF-8 bytes.
 * @param options Limits.
 * @returns The returned value.
 * @throws {XmlRpcFault} When the response is a fault.
 * @throws {ProtocolError} When the document is not strict XML-RPC or is
 * over a limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMethodResponse, encodeMethodResponse } from "./xmlrpc.ts";
 *
 * const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
 * assert.deepEqual(
 *   decodeMethodResponse(encodeMethodResponse({ ok: true, when })),
 *   { ok: true, when },
 * );
 * ```
 */
export function decodeMethodResponse(
  body: string | Uint8Array,
  options?: XmlRpcDecodeOptions,
): XmlRpcValue {
  return decodeResponse(body, options ?? {});
}

/**
 * A method registered with {@linkcode createXmlRpcHandler}. It receives the
 * decoded parameters, which come from the network: check their types.
 * Return any value the mapping allows (`undefined` becomes `<nil/>`); throw
 * an {@linkcode XmlRpcFault} to choose the fault, any other error becomes
 * fault 1 with `"<name>: <message>"`, as Python's server does.
 */
export type XmlRpcMethod = (...params: XmlRpcValue[]) => unknown;

/**
 * A method registered with {@linkcode createXmlRpcHandler} together with
 * what `system.methodHelp` and `system.methodSignature` say of it.
 *
 * @example A method with its help and signature
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   createXmlRpcHandler,
 *   decodeMethodResponse,
 *   encodeMethodCall,
 * } from "./xmlrpc.ts";
 *
 * const handler = createXmlRpcHandler({
 *   add: {
 *     handler: (a, b) => Number(a) + Number(b),
 *     help: "Adds two numbers.",
 *     signature: [["int", "int", "int"], ["double", "double", "double"]],
 *   },
 * });
 * const ask = async (method: string, ...params: unknown[]) =>
 *   decodeMethodResponse(
 *     await (await handler(
 *       new Request("http://localhost/", {
 *         method: "POST",
 *         body: encodeMethodCall(method, params),
 *       }),
 *     )).text(),
 *   );
 * assert.equal(await ask("add", 2, 3), 5);
 * assert.equal(await ask("system.methodHelp", "add"), "Adds two numbers.");
 * assert.deepEqual(await ask("system.methodSignature", "add"), [
 *   ["int", "int", "int"],
 *   ["double", "double", "double"],
 * ]);
 * ```
 */
export interface XmlRpcMethodDefinition {
  /** The method. */
  handler: XmlRpcMethod;
  /**
   * What `system.methodHelp` answers for it.
   *
   * @default {""}
   */
  help?: string;
  /**
   * What `system.methodSignature` answers for it: one or more signatures,
   * each `[returnType, ...paramTypes]` with XML-RPC type names (`"int"`,
   * `"string"`, `"struct"`...). Without one, the answer is the string
   * `"signatures not supported"`, as Python's server gives for every method.
   *
   * @default {undefined}
   */
  signature?: string[][];
}

/** Options for {@linkcode createXmlRpcHandler}. */
export interface CreateXmlRpcHandlerOptions {
  /**
   * Largest request body accepted, in bytes; a bigger one is answered with
   * HTTP 413 before it is buffered. `Infinity` for no limit.
   *
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * Deepest nesting of arrays and structs accepted (at most 1000).
   *
   * @default {64}
   */
  maxDepth?: number;
  /**
   * Deadline for receiving the request body, in milliseconds, from the
   * moment the handler is called (`Infinity` for none). A client that sends
   * it slower (or stops halfway) is answered with HTTP 408 and
   * `connection: close`, and what it sent is dropped: it cannot hold the
   * handler. Closing its socket is the HTTP server's part: `serveHttps()`
   * does, after its `requestTimeout`; `Deno.serve` has no such deadline, so
   * put a proxy with one in front of it for untrusted clients. The methods
   * themselves are not bounded by it.
   *
   * @default {30000}
   */
  bodyTimeout?: number;
  /**
   * Serve the introspection methods of Python's
   * `register_introspection_functions()`: `system.listMethods` (every name,
   * sorted, these included), `system.methodHelp(name)` (the `help` of an
   * {@linkcode XmlRpcMethodDefinition}, `""` when none) and
   * `system.methodSignature(name)` (its `signature`, or the string
   * `"signatures not supported"` as Python answers). Unlike Python, which
   * answers `""` and `"signatures not supported"` for a name it does not
   * know, both answer an unknown name with fault -32601, so a typo is
   * seen. A method you register under one of these names is served
   * instead.
   *
   * @default {true}
   */
  introspection?: boolean;
  /**
   * Serve `system.multicall` as Python's `register_multicall_functions()`
   * does: its one parameter is an array of `{ methodName, params }` structs;
   * the calls run one after the other, and the answer is an array with, per
   * call, a one-element array holding its result or a
   * `{ faultCode, faultString }` struct (a failing call does not stop the
   * others). A call that is itself `system.multicall` is refused with fault
   * -32600, a malformed one with -32602, an unknown method with -32601, all
   * per call. Off by default, as in Python: one request then runs up to
   * `maxMulticalls` methods, which a limit counting requests (a proxy's, a
   * rate limiter's) does not see.
   *
   * @default {false}
   */
  multicall?: boolean;
  /**
   * Most calls in one `system.multicall`; a longer list is refused whole
   * with fault -32602. `Infinity` for no limit (`maxBodySize` still bounds
   * the request).
   *
   * @default {100}
   */
  maxMulticalls?: number;
  /**
   * Called for logging with every error a method throws that is not an
   * {@linkcode XmlRpcFault} and every result that cannot be encoded (phase
   * `"method"`, the client gets a fault), and with a failure to read the
   * request (phase `"request"`: the connection failed; the handler then
   * rejects with that error, for the HTTP server to close the
   * connection). Refusals the client caused (405, 408, 413, malformed
   * XML-RPC, an unknown method) are answered, not reported. A hook that
   * throws is ignored: the client still gets its answer.
   *
   * @default {undefined}
   */
  onError?: (error: unknown, info: XmlRpcErrorInfo) => void;
}

/**
 * What {@linkcode createXmlRpcHandler}'s `onError` hook is told besides the
 * error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createXmlRpcHandler, encodeMethodCall } from "./xmlrpc.ts";
 *
 * const seen: string[] = [];
 * const handler = createXmlRpcHandler({
 *   fail() {
 *     throw new Error("bug");
 *   },
 * }, { onError: (_error, info) => seen.push(`${info.phase} ${info.method}`) });
 * await handler(
 *   new Request("http://localhost/", {
 *     method: "POST",
 *     body: encodeMethodCall("fail"),
 *   }),
 * );
 * assert.deepEqual(seen, ["method fail"]);
 * ```
 */
export interface XmlRpcErrorInfo extends ErrorInfo {
  /**
   * `"method"`: a method threw, or its result could not be encoded;
   * `"request"`: the request could not be read.
   */
  readonly phase: "method" | "request";
  /**
   * The method called, in phase `"method"` (inside `system.multicall`, the
   * method of the call that failed).
   */
  readonly method?: string;
}

/**
 * Creates a `Request` -> `Response` handler serving `methods` over XML-RPC:
 * give it to `Deno.serve`, or to an HTTPS server that requires client
 * certificates (see `examples/kv_server.ts`).
 *
 * Only `POST` is served (else HTTP 405). A body over `maxBodySize` is
 * answered with HTTP 413 without being buffered, one that has not arrived
 * within `bodyTimeout` with HTTP 408; any other refusal (not
 * XML-RPC, a DOCTYPE, a disallowed entity, nesting over `maxDepth`, an
 * out-of-range number) with fault -32700; an unknown method with fault
 * -32601; an error thrown by a method with its {@linkcode XmlRpcFault}, or
 * fault 1 carrying `"<name>: <message>"` (as Python's `SimpleXMLRPCServer`
 * does, so do not put secrets in error messages); a result that cannot be
 * encoded with fault -32603. With `multicall`, `system.multicall` answers
 * each of its calls on its own, by the same rules.
 *
 * @param methods The methods, by name (own properties only): a function,
 * or an {@linkcode XmlRpcMethodDefinition} with its help and signature.
 * @param options Limits and hooks.
 * @returns The handler.
 * @throws {RangeError} When `maxBodySize` or `maxMulticalls` is not a
 * whole number of at least 1 (or `Infinity`), `maxDepth` not one from 1
 * to 1000, or `bodyTimeout` is not above 0.
 * @throws {TypeError} When a method is not a function or a valid
 * {@linkcode XmlRpcMethodDefinition}, `system.multicall` is registered
 * while `multicall` is on, or a number option is not a number.
 *
 * @example Serve two methods
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   createXmlRpcHandler,
 *   decodeMethodResponse,
 *   encodeMethodCall,
 * } from "./xmlrpc.ts";
 *
 * const handler = createXmlRpcHandler({
 *   echo: (value) => value,
 *   now: () => new Date(),
 * });
 * const response = await handler(
 *   new Request("http://localhost/", {
 *     method: "POST",
 *     body: encodeMethodCall("echo", [[1, "a", null]]),
 *   }),
 * );
 * assert.deepEqual(decodeMethodResponse(await response.text()), [1, "a", null]);
 * ```
 *
 * @example Serve system.multicall: a result or a fault per call
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   createXmlRpcHandler,
 *   decodeMethodResponse,
 *   encodeMethodCall,
 * } from "./xmlrpc.ts";
 *
 * const handler = createXmlRpcHandler({
 *   add: (a, b) => Number(a) + Number(b),
 * }, { multicall: true, maxMulticalls: 10 });
 * const response = await handler(
 *   new Request("http://localhost/", {
 *     method: "POST",
 *     body: encodeMethodCall("system.multicall", [[
 *       { methodName: "add", params: [2, 3] },
 *       { methodName: "nosuch", params: [] },
 *     ]]),
 *   }),
 * );
 * assert.deepEqual(decodeMethodResponse(await response.text()), [
 *   [5],
 *   { faultCode: -32601, faultString: 'Cannot call "nosuch": no such method' },
 * ]);
 * ```
 */
export function createXmlRpcHandler(
  methods: Record<string, XmlRpcMethod | XmlRpcMethodDefinition>,
  options?: CreateXmlRpcHandlerOptions,
): (request: Request) => Promise<Response> {
  return xmlRpcHandler(methods, options ?? {});
}

/** Options for {@linkcode createXmlRpcClient}. */
export interface CreateXmlRpcClientOptions {
  /**
   * PEM certificates trusted to sign the server's certificate, in addition
   * to Deno's default roots (its bundled Mozilla roots, or the system store
   * with `DENO_TLS_CA_STORE=system`); for a development CA from
   * `deno task certs`. Give this or `caFile`.
   *
   * @default {[]}
   */
  caCerts?: string[];
  /**
   * Path of a PEM file of CA certificates, read when the client is created
   * (needs `--allow-read`), used as `caCerts` is. Give this or `caCerts`.
   *
   * @default {undefined}
   */
  caFile?: string;
  /**
   * PEM client certificate chain to present (mutual TLS); needs `key` (or
   * `keyFile`). Give this or `certFile`.
   *
   * @default {undefined}
   */
  cert?: string;
  /**
   * Path of the PEM client certificate chain, read when the client is
   * created. Give this or `cert`.
   *
   * @default {undefined}
   */
  certFile?: string;
  /**
   * PEM private key of the client certificate. Give this or `keyFile`.
   *
   * @default {undefined}
   */
  key?: string;
  /**
   * Path of the PEM private key of the client certificate, read when the
   * client is created. Give this or `key`.
   *
   * @default {undefined}
   */
  keyFile?: string;
  /**
   * Headers sent with every call (an API token, a tracing id). Those the
   * client sets itself are refused with a `TypeError`: `host`,
   * `content-length`, `content-type`, `transfer-encoding`, `connection`,
   * `keep-alive`, `upgrade`, `te`, `trailer`, `expect`; so is
   * `authorization` together with basic auth. Their values never appear in
   * an error.
   *
   * @default {undefined}
   */
  headers?: HeadersInit;
  /**
   * Credentials for HTTP basic auth, sent with every call (over `https://`
   * only, unless you accept them crossing the network in clear). A user
   * name and password in the URL (`https://user:pass@host/`, as Python's
   * `ServerProxy` takes them) are taken out of it and used the same way;
   * give them in one place only. Neither ever appears in an error, nor in
   * the client's `url`.
   *
   * @default {undefined}
   */
  basicAuth?: { username: string; password: string };
  /**
   * Deadline for each call, in milliseconds (connect, send, answer); a
   * call's own `timeout` replaces it.
   *
   * @default {10000}
   */
  timeout?: number;
  /**
   * Aborts every call in flight and every later one (a call's own `signal`
   * aborts just that call).
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Largest response body accepted, in bytes; `Infinity` for no limit.
   *
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * Deepest nesting of arrays and structs accepted in a response (at most
   * 1000).
   *
   * @default {64}
   */
  maxDepth?: number;
}

/** Options of one call: {@linkcode XmlRpcClient.invoke} and `multicall`. */
export interface XmlRpcCallOptions {
  /**
   * Deadline for this call, in milliseconds (`Infinity` for none); replaces
   * the client's `timeout`.
   *
   * @default {the client's timeout}
   */
  timeout?: number;
  /**
   * Aborts this call (the client's `signal` still applies too).
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * An XML-RPC client from {@linkcode createXmlRpcClient}. It keeps its
 * connections alive between calls; close it (or `await using` it) when
 * done.
 *
 * Every call rejects with: an {@linkcode XmlRpcFault} when the server
 * answers a fault; a {@linkcode ProtocolError} when it answers something
 * that is not XML-RPC, or an HTTP status other than 200 (a redirect is
 * not followed, as Python's `ServerProxy` does not: the credentials stay
 * with the server you named); a `DOMException`
 * `TimeoutError` after the timeout, or a signal's reason; a
 * `Deno.errors.ConnectionRefused` when nothing listens there, and a
 * `TypeError` for another failure to reach the server (a name that does
 * not resolve, a TLS failure), each naming the URL (without user name or
 * password) and the cause.
 */
export interface XmlRpcClient extends AsyncDisposable, Disposable {
  /** The server's URL, without the user name and password it may carry. */
  readonly url: URL;
  /**
   * Calls `method` with `params`, under the client's `timeout` and
   * `signal` (for a deadline or a signal of this call's own, use
   * {@linkcode XmlRpcClient.invoke}).
   *
   * @param method The method name.
   * @param params The parameters.
   * @returns The value the server returned.
   * @throws {XmlRpcFault} When the server answers a fault.
   * @throws {ProtocolError} When the server answers something that is not
   * XML-RPC, or an HTTP error status.
   * @throws {DOMException} `TimeoutError` after `timeout`, or the signal's
   * reason.
   * @throws {Deno.errors.ConnectionRefused} When nothing listens there.
   */
  call(method: string, ...params: unknown[]): Promise<XmlRpcValue>;
  /**
   * Calls `method` with the parameters as an array, with this call's own
   * deadline and signal.
   *
   * @param method The method name.
   * @param params The parameters.
   * @param options This call's `timeout` and `signal`.
   * @returns The value the server returned.
   * @throws {XmlRpcFault} When the server answers a fault.
   * @throws {DOMException} `TimeoutError` after the timeout, or a signal's
   * reason.
   */
  invoke(
    method: string,
    params?: readonly unknown[],
    options?: XmlRpcCallOptions,
  ): Promise<XmlRpcValue>;
  /**
   * Sends several calls in one `system.multicall` request (Python's
   * `xmlrpc.client.MultiCall`; the server must offer it, as
   * `createXmlRpcHandler(methods, { multicall: true })` and Python's
   * `register_multicall_functions()` do). The server runs them in order.
   *
   * @param calls The calls, each `{ method, params }` (an
   * {@linkcode XmlRpcCall}; `params` defaults to none).
   * @param options The request's `timeout` and `signal`.
   * @returns One entry per call, in order: its value, or the
   * {@linkcode XmlRpcFault} it ended with (returned, not thrown: the other
   * calls' values are still there; test with `instanceof XmlRpcFault`).
   * @throws {XmlRpcFault} When the server refuses the whole request (fault
   * -32601 from a server without `system.multicall`; -32602 for more calls
   * than it accepts).
   * @throws {ProtocolError} When the answer is not one entry per call.
   * @throws {TypeError} When a call has no valid method name or its
   * `params` is not an array.
   */
  multicall(
    calls: readonly { method: string; params?: readonly unknown[] }[],
    options?: XmlRpcCallOptions,
  ): Promise<(XmlRpcValue | XmlRpcFault)[]>;
  /** Closes the pooled connections. */
  close(): void;
}

/**
 * Creates an XML-RPC client for `url` on `fetch`, with its own connection
 * pool (`Deno.createHttpClient`): calls reuse kept-alive connections, and
 * `caCerts`/`caFile`, `cert`/`certFile` and `key`/`keyFile` set the
 * trusted CAs and the client certificate for mutual TLS.
 *
 * @param url The server's URL (`https://` or `http://`); a user name and
 * password in it become basic auth (see `basicAuth`).
 * @param options TLS material, headers, credentials, deadline, signal and
 * limits.
 * @returns The client; close it when done.
 * @throws {TypeError} When `url` is not a valid http(s) URL, only one of
 * the certificate and its key is given, a PEM option does not hold PEM
 * text (one that looks like a file path is named as such, with the `*File`
 * option to use), both a PEM option and its `*File` are given, a `*File`
 * is not a regular file (a named pipe would block the synchronous read),
 * `headers` sets a header the client controls or holds an invalid one, or
 * the credentials are given twice.
 * @throws {Deno.errors.NotFound} When a `*File` does not exist.
 * @throws {RangeError} When `timeout` or a limit is out of range.
 *
 * @example Call a server, catch a fault
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   createXmlRpcClient,
 *   createXmlRpcHandler,
 *   XmlRpcFault,
 * } from "./xmlrpc.ts";
 *
 * const store = new Map<string, unknown>();
 * await using server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   createXmlRpcHandler({
 *     get(key) {
 *       if (!store.has(String(key))) {
 *         throw new XmlRpcFault(1, `KeyError: '${key}'`);
 *       }
 *       return store.get(String(key));
 *     },
 *   }),
 * );
 * await using client = createXmlRpcClient(`http://127.0.0.1:${server.addr.port}/`, {
 *   timeout: 5000,
 * });
 * await assert.rejects(client.call("get", "missing"), (error) => {
 *   assert.ok(error instanceof XmlRpcFault);
 *   assert.equal(error.faultString, "KeyError: 'missing'");
 *   return true;
 * });
 * ```
 *
 * @example Headers, basic auth, a per-call deadline, a multicall
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   createXmlRpcClient,
 *   createXmlRpcHandler,
 *   XmlRpcFault,
 * } from "./xmlrpc.ts";
 *
 * const handler = createXmlRpcHandler({
 *   add: (a, b) => Number(a) + Number(b),
 * }, { multicall: true });
 * await using server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   (request) =>
 *     request.headers.get("authorization") === `Basic ${btoa("ann:s3cret")}` &&
 *       request.headers.get("x-trace") === "42"
 *       ? handler(request)
 *       : new Response("who are you?", { status: 401 }),
 * );
 * await using client = createXmlRpcClient(
 *   `http://127.0.0.1:${server.addr.port}/`,
 *   {
 *     basicAuth: { username: "ann", password: "s3cret" },
 *     headers: { "x-trace": "42" },
 *   },
 * );
 * assert.equal(await client.invoke("add", [2, 3], { timeout: 2000 }), 5);
 * const [sum, missing] = await client.multicall([
 *   { method: "add", params: [1, 1] },
 *   { method: "nosuch" },
 * ]);
 * assert.equal(sum, 2);
 * assert.ok(missing instanceof XmlRpcFault);
 * assert.equal(missing.faultCode, -32601);
 * ```
 */
export function createXmlRpcClient(
  url: string | URL,
  options?: CreateXmlRpcClientOptions,
): XmlRpcClient {
  return openClient(url, options === undefined ? {} : options);
}
