"""The Cookbook's key-value XML-RPC server (recipe 11.6) over TLS (11.10).

Usage: kv_xmlrpc_server.py PORT SERVER_CERT SERVER_KEY CA_FILE [--keep-alive]

Serves get/set/delete/exists/keys from a dict with SimpleXMLRPCServer,
allow_none=True, its socket wrapped in TLS that requires a client
certificate signed by CA_FILE. Prints "listening PORT" once ready. With
--keep-alive the handler speaks HTTP/1.1 so one client connection carries
many calls (the recipe's default, HTTP/1.0, reconnects for every call).
Used by bench/kv_compare.ts as the baseline.
"""
import ssl
import sys
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer


class KeyValueServer:
    _rpc_methods_ = ["get", "set", "delete", "exists", "keys"]

    def __init__(self, address, keep_alive):
        self._data = {}
        handler = SimpleXMLRPCRequestHandler
        if keep_alive:
            class KeepAliveHandler(SimpleXMLRPCRequestHandler):
                protocol_version = "HTTP/1.1"
            handler = KeepAliveHandler
        self._serv = SimpleXMLRPCServer(
            address, requestHandler=handler, allow_none=True, logRequests=False
        )
        for name in self._rpc_methods_:
            self._serv.register_function(getattr(self, name))

    def get(self, name):
        return self._data[name]

    def set(self, name, value):
        self._data[name] = value

    def delete(self, name):
        del self._data[name]

    def exists(self, name):
        return name in self._data

    def keys(self):
        return list(self._data)


def main():
    port, cert, key, ca = sys.argv[1:5]
    keep_alive = "--keep-alive" in sys.argv[5:]
    kv = KeyValueServer(("127.0.0.1", int(port)), keep_alive)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    kv._serv.socket = context.wrap_socket(kv._serv.socket, server_side=True)
    print("listening %d" % kv._serv.server_address[1], flush=True)
    try:
        kv._serv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
