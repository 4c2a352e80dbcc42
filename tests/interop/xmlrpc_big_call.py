"""Send an XML-RPC call with one oversized argument, as a Python user would.

Usage: xmlrpc_big_call.py PORT CA_FILE SIZE COUNT

Makes COUNT calls of set("big", "x" * SIZE) through
xmlrpc.client.ServerProxy over HTTPS (the server verified against CA_FILE),
each on a fresh proxy, and prints one JSON list with how each call ended:
{"ok": true} or {"error": "ProtocolError", "status": 413} or
{"error": "ConnectionResetError", "message": "..."}. Works on Python 3.6
and later.
"""
import json
import ssl
import sys
import xmlrpc.client


def call(port, context, size):
    proxy = xmlrpc.client.ServerProxy(
        "https://localhost:%d/" % port, allow_none=True, context=context
    )
    try:
        proxy.set("big", "x" * size)
        return {"ok": True}
    except xmlrpc.client.ProtocolError as error:
        return {"error": "ProtocolError", "status": error.errcode}
    except Exception as error:  # a reset, an EOF: what the issue saw
        return {"error": type(error).__name__, "message": str(error)}
    finally:
        proxy("close")()


def main():
    port, ca_file, size, count = sys.argv[1:5]
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    outcomes = [call(int(port), context, int(size)) for _ in range(int(count))]
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
