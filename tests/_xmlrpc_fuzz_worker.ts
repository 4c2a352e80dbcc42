// The worker side of the random-mutation tests in xmlrpc_test.ts: decodes
// (or handles) one document per message and answers how it went and how
// long it took. In a worker, a decoder that hangs is terminated by the test
// and reported with the document, instead of freezing the whole run.
import { ProtocolError } from "../errors.ts";
import {
  createXmlRpcHandler,
  decodeMethodCall,
  decodeMethodResponse,
  XmlRpcFault,
} from "../xmlrpc.ts";

/** One document to try. */
export interface FuzzJob {
  /** `decode`: decodeMethodCall(); `handle`: POST it to an createXmlRpcHandler. */
  kind: "decode" | "handle";
  doc: string;
}

/** What became of one {@linkcode FuzzJob}. */
export interface FuzzResult {
  /** Time spent on the document, in ms, measured in the worker. */
  ms: number;
  /**
   * `accepted`: decoded, or the handler answered a result; `refused`: a
   * ProtocolError, or the handler answered a fault; `unexpected`: anything
   * else (another exception, a non-200 status, an answer that is not
   * XML-RPC).
   */
  outcome: "accepted" | "refused" | "unexpected";
  /** The refusal's message, the fault code, or what was unexpected. */
  detail: string;
}

const handler = createXmlRpcHandler({
  set: () => null,
  get: (value) => value ?? null,
  m: (...params) => params,
}, { multicall: true });

async function run(job: FuzzJob): Promise<Omit<FuzzResult, "ms">> {
  if (job.kind === "decode") {
    try {
      decodeMethodCall(job.doc);
      return { outcome: "accepted", detail: "" };
    } catch (error) {
      return error instanceof ProtocolError
        ? { outcome: "refused", detail: error.message }
        : { outcome: "unexpected", detail: String(error) };
    }
  }
  let response: Response;
  try {
    response = await handler(
      new Request("http://localhost/", { method: "POST", body: job.doc }),
    );
  } catch (error) {
    return { outcome: "unexpected", detail: `handler threw ${error}` };
  }
  if (response.status !== 200) {
    await response.body?.cancel();
    return { outcome: "unexpected", detail: `HTTP ${response.status}` };
  }
  try {
    decodeMethodResponse(await response.text());
    return { outcome: "accepted", detail: "" };
  } catch (error) {
    return error instanceof XmlRpcFault
      ? { outcome: "refused", detail: String(error.faultCode) }
      : { outcome: "unexpected", detail: `answer: ${error}` };
  }
}

const port = self as unknown as {
  onmessage: ((event: MessageEvent<FuzzJob>) => void) | null;
  postMessage(result: FuzzResult): void;
};
port.onmessage = async ({ data }) => {
  const start = performance.now();
  const result = await run(data);
  port.postMessage({ ...result, ms: performance.now() - start });
};
