// Private: the method table behind createXmlRpcHandler() in xmlrpc.ts: the
// registrations checked (a function, or a definition with its help and
// signatures) and the `system.*` methods Python's SimpleXMLRPCServer offers
// added to them: the introspection trio (`system.listMethods`,
// `system.methodHelp`, `system.methodSignature`) and the checks of a
// `system.multicall` request (the handler runs its calls). xmlrpc.ts
// imports this file through _xmlrpc_handler.ts: what comes from it
// (XmlRpcFault, XmlRpcFaultCode) is used only inside functions.

import { quote } from "./_xmlrpc_rules.ts";
import type { MulticallAnswer } from "./_xmlrpc_encode.ts";
import {
  type XmlRpcCall,
  XmlRpcFault,
  XmlRpcFaultCode,
  type XmlRpcMethod,
  type XmlRpcMethodDefinition,
  type XmlRpcStruct,
  type XmlRpcValue,
} from "./xmlrpc.ts";

/** The name of the multicall method. */
export const MULTICALL = "system.multicall";

/** What Python's `system.methodSignature` answers for a method without. */
export const NO_SIGNATURE = "signatures not supported";

/** A registered method, as the handler dispatches it. */
export interface MethodEntry {
  /** The method; null for `system.multicall`, which the handler runs. */
  readonly fn: XmlRpcMethod | null;
  /** Its help text ("" when none was given). */
  readonly help: string;
  /** Its signatures, each `[returnType, ...paramTypes]`; null when none. */
  readonly signature: readonly (readonly string[])[] | null;
}

function checkDefinition(
  name: string,
  entry: XmlRpcMethod | XmlRpcMethodDefinition,
): MethodEntry {
  const cannot = `Cannot register the method ${quote(name)}`;
  if (typeof entry === "function") {
    return { fn: entry, help: "", signature: null };
  }
  if (typeof entry !== "object" || entry === null) {
    throw new TypeError(
      `${cannot}: expected a function or { handler, help?, signature? }, got ${
        entry === null ? "null" : typeof entry
      }`,
    );
  }
  const { handler, help, signature } = entry;
  if (typeof handler !== "function") {
    throw new TypeError(
      `${cannot}: its handler must be a function, got ${typeof handler}`,
    );
  }
  if (help !== undefined && typeof help !== "string") {
    throw new TypeError(`${cannot}: help must be a string, got ${typeof help}`);
  }
  if (
    signature !== undefined &&
    (!Array.isArray(signature) || signature.length === 0 ||
      !signature.every((types) =>
        Array.isArray(types) && types.length > 0 &&
        types.every((type) => typeof type === "string" && type !== "")
      ))
  ) {
    throw new TypeError(
      `${cannot}: signature must be a non-empty array of [returnType, ...paramTypes] arrays of type names, such as [["int", "int", "int"]]`,
    );
  }
  return {
    fn: handler,
    help: help ?? "",
    signature: signature?.map((types) => [...types]) ?? null,
  };
}

/** The one parameter of the introspection methods: a registered name. */
function methodName(
  table: Map<string, MethodEntry>,
  params: XmlRpcValue[],
  system: string,
): MethodEntry {
  const [name] = params;
  if (params.length !== 1 || typeof name !== "string") {
    throw new XmlRpcFault(
      XmlRpcFaultCode.INVALID_PARAMS,
      `Cannot call ${quote(system)}: expected one string, a method name`,
    );
  }
  const entry = table.get(name);
  if (entry === undefined) {
    throw new XmlRpcFault(
      XmlRpcFaultCode.METHOD_NOT_FOUND,
      `Cannot describe ${quote(name)}: no such method`,
    );
  }
  return entry;
}

/**
 * The table of `methods` (own properties), plus the introspection methods
 * and `system.multicall` when enabled; a name the caller registered is
 * never replaced, except that registering `system.multicall` while
 * `multicall` is on is refused (which of the two runs would be a guess).
 *
 * @throws {TypeError} When a registration is not a function or a valid
 * definition.
 */
export function methodTable(
  methods: Record<string, XmlRpcMethod | XmlRpcMethodDefinition>,
  options: { introspection: boolean; multicall: boolean },
): Map<string, MethodEntry> {
  const table = new Map<string, MethodEntry>();
  for (const [name, entry] of Object.entries(methods)) {
    table.set(name, checkDefinition(name, entry));
  }
  const add = (name: string, entry: MethodEntry) => {
    if (!table.has(name)) table.set(name, entry);
  };
  if (options.multicall) {
    if (table.has(MULTICALL)) {
      throw new TypeError(
        `Cannot register the method "${MULTICALL}": the handler serves it itself with multicall: true; drop yours or set multicall: false`,
      );
    }
    table.set(MULTICALL, {
      fn: null,
      help:
        "system.multicall([{methodName, params}, ...]) => [[result], {faultCode, faultString}, ...]\n\n" +
        "Runs several calls in one request, in order; each result comes back in a one-element array, each fault as a fault struct.",
      signature: [["array", "array"]],
    });
  }
  if (options.introspection) {
    add("system.listMethods", {
      fn: () => [...table.keys()].sort(),
      help:
        "system.listMethods() => ['add', 'system.listMethods', ...]\n\nReturns the names of the methods this server offers, sorted.",
      signature: [["array"]],
    });
    add("system.methodHelp", {
      fn: (...params) => methodName(table, params, "system.methodHelp").help,
      help:
        "system.methodHelp('add') => 'Adds two numbers.'\n\nReturns the help text of a method (\"\" when it has none).",
      signature: [["string", "string"]],
    });
    add("system.methodSignature", {
      fn: (...params) =>
        methodName(table, params, "system.methodSignature").signature ??
          NO_SIGNATURE,
      help:
        `system.methodSignature('add') => [['int', 'int', 'int']]\n\nReturns the signatures of a method, each [returnType, ...paramTypes], or "${NO_SIGNATURE}" when it declares none.`,
      signature: [["array", "string"], ["string", "string"]],
    });
  }
  return table;
}

/** A call of a multicall: to run, or refused already with its answer. */
export type MulticallItem = XmlRpcCall | { refused: MulticallAnswer };

/**
 * The calls of a `system.multicall` request, each checked: a struct with a
 * string `methodName` and an array `params`, not itself `system.multicall`
 * (nesting is refused: it would multiply the limit).
 *
 * @throws {XmlRpcFault} -32602 when the request is not one array, or holds
 * more than `maxCalls` calls.
 */
export function multicallItems(
  params: XmlRpcValue[],
  maxCalls: number,
): MulticallItem[] {
  const [list] = params;
  if (params.length !== 1 || !Array.isArray(list)) {
    throw new XmlRpcFault(
      XmlRpcFaultCode.INVALID_PARAMS,
      `Cannot run ${MULTICALL}: expected one parameter, an array of {methodName, params} structs`,
    );
  }
  if (list.length > maxCalls) {
    throw new XmlRpcFault(
      XmlRpcFaultCode.INVALID_PARAMS,
      `Cannot run ${MULTICALL}: ${list.length} calls, over the limit of ${maxCalls} (maxMulticalls); split them`,
    );
  }
  return list.map((item, index): MulticallItem => {
    const call: XmlRpcStruct = item !== null && typeof item === "object" &&
        !Array.isArray(item) && !(item instanceof Date) &&
        !(item instanceof Uint8Array)
      ? item
      : {};
    const { methodName, params } = call;
    if (typeof methodName !== "string" || !Array.isArray(params)) {
      return {
        refused: {
          faultCode: XmlRpcFaultCode.INVALID_PARAMS,
          faultString: `Cannot run call ${
            index + 1
          } of ${MULTICALL}: expected a struct with a string methodName and an array params`,
        },
      };
    }
    if (methodName === MULTICALL) {
      return {
        refused: {
          faultCode: XmlRpcFaultCode.INVALID_XMLRPC,
          faultString: `Cannot run call ${
            index + 1
          } of ${MULTICALL}: it is ${MULTICALL} again; nesting is refused`,
        },
      };
    }
    return { method: methodName, params };
  });
}
