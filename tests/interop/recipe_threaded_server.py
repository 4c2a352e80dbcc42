"""The Cookbook echo server with HMAC client authentication, on
socketserver.ThreadingTCPServer: one thread per client.

Written for connauth's benchmark from the recipe's description and the
CPython socketserver documentation: a StreamRequestHandler subclass that
sends 32 random bytes, reads the HMAC digest, compares it in constant time,
then echoes until the client closes.

usage: CONNAUTH_SECRET=... recipe_threaded_server.py [PORT [TIMEOUT_S]]
  Listens on 127.0.0.1 (PORT 0 or absent: an OS-chosen port), prints
  "port N" and serves until SIGTERM/SIGINT. HMAC-SHA-256.

Differences from the recipe, for a fair comparison: the listen backlog
(request_queue_size) is socket.SOMAXCONN instead of 5, and each client has
a socket timeout (default 10 s, like serve()'s handshake deadline).
"""
import hmac
import os
import signal
import socket
import socketserver
import sys

KEY = b""
TIMEOUT = 10.0


class EchoHandler(socketserver.BaseRequestHandler):
    def recv_exactly(self, count):
        data = b""
        while len(data) < count:
            chunk = self.request.recv(count - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def handle(self):
        self.request.settimeout(TIMEOUT)
        try:
            challenge = os.urandom(32)
            self.request.sendall(challenge)
            expected = hmac.new(KEY, challenge, "sha256").digest()
            if not hmac.compare_digest(expected, self.recv_exactly(len(expected))):
                return
            while True:
                data = self.request.recv(8192)
                if not data:
                    return
                self.request.sendall(data)
        except OSError:
            pass  # timeout, reset


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN


def main():
    global KEY, TIMEOUT
    KEY = os.environ["CONNAUTH_SECRET"].encode("utf-8")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    TIMEOUT = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server(("127.0.0.1", port), EchoHandler) as server:
        print("port %d" % server.server_address[1], flush=True)
        try:
            server.serve_forever()
        except (KeyboardInterrupt, SystemExit):
            pass


if __name__ == "__main__":
    main()
