// XML-RPC against Python's xmlrpc, both ways (tests/interop/xmlrpc_peer.py):
// Python's ServerProxy and MultiCall against createXmlRpcHandler() served
// over HTTPS (trusting our development CA), and createXmlRpcClient() against
// Python's SimpleXMLRPCServer with multicall and introspection registered.
// <i8>, XmlRpcDouble, system.multicall and the introspection methods.
import assert from "node:assert/strict";
import { generateCertificates } from "../certs.ts";
import { serveHttps } from "../https.ts";
import {
  createXmlRpcClient,
  createXmlRpcHandler,
  XmlRpcDouble,
  XmlRpcFault,
} from "../xmlrpc.ts";
import {
  findPython,
  interopScript,
  lines,
  peerTest,
  runCommand,
  spawn,
  within,
} from "./_helpers.ts";

const PEER = interopScript("xmlrpc_peer.py");

/** The methods Python's client calls (see xmlrpc_peer.py's client()). */
const methods = createXmlRpcHandler({
  bigints: () => [2n ** 40n, 2n ** 62n, -(2n ** 63n), 7n, 2 ** 40],
  echo: (value) => value,
  double: (value) => new XmlRpcDouble(Number(value)),
  add: {
    handler: (a, b) => Number(a) + Number(b),
    help: "Adds two numbers.",
    signature: [["int", "int", "int"]],
  },
  fail(message) {
    throw new Error(String(message));
  },
}, { multicall: true });

for (const version of ["3.12", "3.13"]) {
  peerTest(
    `Python ${version} ServerProxy and MultiCall read our <i8>, multicall and introspection over HTTPS`,
    { label: `python${version}`, path: findPython(version) },
    async (python) => {
      const { ca, server } = await generateCertificates();
      const dir = await Deno.makeTempDir({ prefix: "connauth-xmlrpc-" });
      try {
        await Deno.writeTextFile(`${dir}/ca.pem`, ca.cert);
        await using https = await serveHttps(
          { cert: server.cert, key: server.key },
          (request) => methods(request),
        );
        const output = await runCommand(python, [
          PEER,
          "client",
          String(https.addr.port),
          `${dir}/ca.pem`,
        ]);
        assert.equal(output.code, 0, `python failed:\n${output.stderr}`);
        const report = JSON.parse(output.stdout);
        assert.deepEqual(report, {
          // <i8> read as int; a number beyond 32 bits stays a double.
          bigints: {
            ok:
              "list [1099511627776, 4611686018427387904, -9223372036854775808, 7, 1099511627776.0]",
          },
          // A whole double comes back as an int (documented); XmlRpcDouble
          // keeps it a float.
          "echo 3.0": { ok: "int 3" },
          "echo 2.5": { ok: "float 2.5" },
          "double 3.0": { ok: "float 3.0" },
          // Python's marshaller refuses to send an int beyond 32 bits.
          "i8 too big": { error: "OverflowError: int exceeds XML-RPC limits" },
          multicall: [
            { ok: "int 5" },
            { fault: [1, "Error: no"] },
            { fault: [-32601, 'Cannot call "nosuch": no such method'] },
            { ok: "list ['x', None]" },
            {
              fault: [
                -32600,
                "Cannot run call 5 of system.multicall: it is system.multicall again; nesting is refused",
              ],
            },
          ],
          listMethods: [
            "add",
            "bigints",
            "double",
            "echo",
            "fail",
            "system.listMethods",
            "system.methodHelp",
            "system.methodSignature",
            "system.multicall",
          ],
          "methodHelp add": "Adds two numbers.",
          "methodHelp echo": "",
          "methodSignature add": [["int", "int", "int"]],
          "methodSignature echo": "signatures not supported",
          "methodHelp nosuch": {
            fault: [-32601, 'Cannot describe "nosuch": no such method'],
          },
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );

  peerTest(
    `createXmlRpcClient() against Python ${version} SimpleXMLRPCServer: <i8>, doubles, multicall, introspection`,
    { label: `python${version}`, path: findPython(version) },
    async (python) => {
      const child = spawn(python, [PEER, "server"]);
      child.stdin.close();
      const stdout = lines(child.stdout);
      try {
        const first = await within(stdout.next(), 10_000, "python's start");
        const port = Number(/^listening (\d+)$/.exec(first.value ?? "")?.[1]);
        assert.ok(port > 0, `no port in ${JSON.stringify(first.value)}`);
        await using client = createXmlRpcClient(`http://127.0.0.1:${port}/`, {
          timeout: 10_000,
        });
        // Python reads our <i8> as an int.
        assert.equal(await client.call("kind", 2n ** 40n), "int 1099511627776");
        assert.equal(
          await client.call("kind", -(2n ** 63n)),
          "int -9223372036854775808",
        );
        assert.equal(await client.call("kind", 7n), "int 7");
        assert.equal(
          await client.call("kind", new XmlRpcDouble(3)),
          "float 3.0",
        );
        assert.equal(await client.call("kind", 3), "int 3");
        assert.equal(await client.call("kind", null), "NoneType None");
        assert.equal(await client.call("echo", 2.5), 2.5);
        assert.equal(await client.call("echo", 2 ** 31), 2 ** 31);
        // And refuses to answer an int beyond 32 bits.
        await assert.rejects(client.call("big"), (error) => {
          assert.ok(error instanceof XmlRpcFault);
          assert.equal(error.faultCode, 1);
          assert.match(
            error.faultString,
            /OverflowError.*int exceeds XML-RPC limits/,
          );
          return true;
        });
        const results = await client.multicall([
          { method: "add", params: [2, 3] },
          { method: "fail", params: ["x"] },
          { method: "nosuch", params: [] },
          { method: "echo", params: [[1, "a", null]] },
        ]);
        assert.equal(results.length, 4);
        assert.equal(results[0], 5);
        assert.ok(results[1] instanceof XmlRpcFault);
        assert.equal(results[1].faultCode, 1);
        assert.equal(results[1].faultString, "<class 'ValueError'>:x");
        assert.ok(results[2] instanceof XmlRpcFault);
        assert.match(
          results[2].faultString,
          /method "nosuch" is not supported/,
        );
        assert.deepEqual(results[3], [1, "a", null]);
        const names = await client.call("system.listMethods");
        assert.ok(Array.isArray(names));
        for (const name of ["add", "kind", "system.multicall"]) {
          assert.ok(names.includes(name), `${name} in ${names}`);
        }
        assert.equal(
          await client.call("system.methodHelp", "add"),
          "Adds two numbers.",
        );
        assert.equal(
          await client.call("system.methodSignature", "add"),
          "signatures not supported",
        );
      } finally {
        child.kill("SIGTERM");
        await child.status;
        await child.stderr.cancel();
        await stdout.return(undefined);
      }
    },
  );
}
