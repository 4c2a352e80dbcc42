"""Drive the XML-RPC key-value store the way the Cookbook recipe's client does.

Usage: kv_xmlrpc_client.py PORT CA_FILE CERT_FILE|- KEY_FILE|- MODE

MODE "full" runs every store method with every value type through
xmlrpc.client.ServerProxy(allow_none=True) and prints one JSON object with
what came back; MODE "probe" makes one call and prints whether it worked or
which error it raised. Works on Python 3.6 and later.
"""
import datetime
import json
import ssl
import sys
import xmlrpc.client


def proxy(port, ca_file, cert_file, key_file):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if cert_file != "-":
        context.load_cert_chain(cert_file, key_file)
    return xmlrpc.client.ServerProxy(
        "https://localhost:%d" % port, allow_none=True, context=context
    )


def plain(value):
    """Turns what ServerProxy returns into JSON-friendly values, tagged."""
    if isinstance(value, xmlrpc.client.Binary):
        return {"binary": list(value.data)}
    if isinstance(value, xmlrpc.client.DateTime):
        return {"datetime": value.value}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def full(server):
    report = {"checks": {}, "values": {}}
    values = {
        "string": "h\u00e9llo <b>&amp;</b> \u2603 \U0001F600",
        "empty": "",
        "int": -2147483648,
        "double": 2.5e-300,
        "true": True,
        "none": None,
        "list": [1, "two", [3.5, None], {"k": False}],
        "dict": {"name": "alice", "tags": ["a", "b"], "nested": {"x": 1}},
        "binary": xmlrpc.client.Binary(bytes(range(256))),
        "bytes": b"\x00\xff raw bytes",
        "date": datetime.datetime(2024, 2, 29, 23, 59, 58),
    }
    for name, value in values.items():
        if server.set(name, value) is not None:
            report["checks"]["set returns None"] = False
    for name in values:
        report["values"][name] = plain(server.get(name))
    report["checks"]["get string"] = server.get("string") == values["string"]
    report["checks"]["get list"] = server.get("list") == values["list"]
    report["checks"]["get dict"] = server.get("dict") == values["dict"]
    report["checks"]["get binary"] = server.get("binary").data == bytes(range(256))
    report["checks"]["get bytes"] = server.get("bytes").data == values["bytes"]
    report["checks"]["get date"] = server.get("date").value == "20240229T23:59:58"
    report["checks"]["get none"] = server.get("none") is None
    report["checks"]["exists"] = server.exists("dict") is True
    report["checks"]["exists missing"] = server.exists("missing") is False
    report["keys"] = server.keys()
    report["checks"]["delete returns None"] = server.delete("dict") is None
    report["checks"]["deleted"] = server.exists("dict") is False
    try:
        server.get("missing")
        report["missing"] = None
    except xmlrpc.client.Fault as fault:
        report["missing"] = {"code": fault.faultCode, "string": fault.faultString}
    try:
        server.delete("missing")
        report["delete missing"] = None
    except xmlrpc.client.Fault as fault:
        report["delete missing"] = {
            "code": fault.faultCode,
            "string": fault.faultString,
        }
    report["methods"] = server.system.listMethods()
    return report


def probe(server):
    try:
        return {"ok": True, "result": server.exists("anything")}
    except xmlrpc.client.ProtocolError as error:
        return {"ok": False, "error": "ProtocolError", "status": error.errcode,
                "message": error.errmsg}
    except Exception as error:  # the TLS refusal: SSLError, reset, EOF
        return {"ok": False, "error": type(error).__name__, "message": str(error)}


def main():
    port, ca_file, cert_file, key_file, mode = sys.argv[1:6]
    server = proxy(int(port), ca_file, cert_file, key_file)
    report = full(server) if mode == "full" else probe(server)
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
