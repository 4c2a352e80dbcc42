"""Python's xmlrpc as the reference peer of connauth's xmlrpc.ts.

Usage:
  xmlrpc_peer.py server
      SimpleXMLRPCServer on 127.0.0.1, a free port, plain HTTP, with
      register_introspection_functions() and register_multicall_functions();
      prints "listening PORT" once ready, then serves until killed.
  xmlrpc_peer.py client PORT CA_FILE
      ServerProxy (and MultiCall) against https://localhost:PORT/ trusting
      CA_FILE; calls the methods tests/xmlrpc_interop_test.ts serves and
      prints one JSON object with what came back (integers as their repr, so
      no precision is lost on the way to JavaScript).
"""
import json
import ssl
import sys
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCServer


def serve():
    server = SimpleXMLRPCServer(
        ("127.0.0.1", 0), allow_none=True, logRequests=False
    )
    server.register_introspection_functions()
    server.register_multicall_functions()

    def echo(value):
        """Returns its argument."""
        return value

    def kind(value):
        """Names the Python type of its argument, and its repr."""
        return "%s %r" % (type(value).__name__, value)

    def add(a, b):
        """Adds two numbers."""
        return a + b

    def fail(message):
        raise ValueError(message)

    def big():
        return 2 ** 40  # beyond int32: Python refuses to marshal it

    for function in (echo, kind, add, fail, big):
        server.register_function(function)
    print("listening %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def outcome(thunk):
    """{"ok": repr} or {"fault": [code, string]} or {"error": repr}."""
    try:
        value = thunk()
        return {"ok": "%s %r" % (type(value).__name__, value)}
    except xmlrpc.client.Fault as fault:
        return {"fault": [fault.faultCode, fault.faultString]}
    except Exception as error:  # noqa: BLE001 - reported to the test
        return {"error": "%s: %s" % (type(error).__name__, error)}


def client(port, ca_file):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    proxy = xmlrpc.client.ServerProxy(
        "https://localhost:%d/" % port, allow_none=True, context=context
    )
    report = {}
    report["bigints"] = outcome(proxy.bigints)
    report["echo 3.0"] = outcome(lambda: proxy.echo(3.0))
    report["echo 2.5"] = outcome(lambda: proxy.echo(2.5))
    report["double 3.0"] = outcome(lambda: proxy.double(3.0))
    report["i8 too big"] = outcome(lambda: proxy.echo(2 ** 40))

    multi = xmlrpc.client.MultiCall(proxy)
    multi.add(2, 3)
    multi.fail("no")
    multi.nosuch()
    multi.echo(["x", None])
    multi.system.multicall([])
    results = []
    iterator = multi()
    for index in range(5):
        results.append(outcome(lambda: iterator[index]))
    report["multicall"] = results

    report["listMethods"] = proxy.system.listMethods()
    report["methodHelp add"] = proxy.system.methodHelp("add")
    report["methodHelp echo"] = proxy.system.methodHelp("echo")
    report["methodSignature add"] = proxy.system.methodSignature("add")
    report["methodSignature echo"] = proxy.system.methodSignature("echo")
    report["methodHelp nosuch"] = outcome(
        lambda: proxy.system.methodHelp("nosuch")
    )
    print(json.dumps(report, sort_keys=True))


def main():
    if sys.argv[1] == "server":
        serve()
    else:
        client(int(sys.argv[2]), sys.argv[3])


if __name__ == "__main__":
    main()
